"""Per-feature firing statistics and top tokens, accumulated sparsely while streaming.

For every (feature, token id) pair with at least one firing the accumulator keeps how many times the feature
fired on that token and its summed activation. A dense ``[F, vocab]`` table would be 4608 x 49152 float64 = 1.8 GB
(900 MB in float32) for one SAE of the bundled ladder, almost all zeros: a feature fires on a few hundred distinct
tokens at most. So the pairs are kept in COO form, keyed ``feature << 32 | token``: each batch's firings are reduced
to their distinct keys (``torch.unique`` + ``bincount``/``index_add``), appended, and the appended parts are merged
whenever they outgrow the merged table (amortised O(n log n)). Memory follows the number of distinct pairs, which
is at most F x (distinct tokens in the store) and stops growing once the store's vocabulary is seen, not the store
length.

Everything else is derived from the same pairs at the end, in one fixed order (so byte-identical reruns): the
number of firings of a feature is the sum of its pairs' counts, its summed activation the sum of its pairs' sums.
Ties in the top-token lists go to the smaller token id.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

_SHIFT = 32  # token ids are < 2**31 (int32 in the store), features < 2**31: the key fits int64


@dataclasses.dataclass
class FeatureStats:
    """Per-feature results (arrays of length F) and the flat top-token lists (sorted by feature, then rank)."""

    n_active: np.ndarray  #: int64
    act_sum: np.ndarray  #: float64
    count_feature: np.ndarray  #: top tokens by count: feature, token id, count
    count_token: np.ndarray
    count_value: np.ndarray
    sum_feature: np.ndarray  #: top tokens by summed activation: feature, token id, sum
    sum_token: np.ndarray
    sum_value: np.ndarray


class TokenStats:
    """Sparse (feature, token) counts and activation sums; :meth:`update` per batch, :meth:`result` at the end."""

    MERGE_MIN = 1 << 22  # appended entries merged once they exceed max(this, 2 x the merged table)

    def __init__(self, n_features: int):
        self.F = n_features
        self.keys = torch.zeros(0, dtype=torch.int64)
        self.counts = torch.zeros(0, dtype=torch.int64)
        self.sums = torch.zeros(0, dtype=torch.float64)
        self._parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending = 0

    def update(self, acts: torch.Tensor, token_ids: torch.Tensor) -> None:
        """``acts`` ``[n, F]`` and the token id ``[n]`` of each row."""
        rows, feats = (acts > 0).nonzero(as_tuple=True)
        if rows.numel() == 0:
            return
        vals = acts[rows, feats].double()
        keys = (feats.to(torch.int64) << _SHIFT) | token_ids.to(torch.int64)[rows]
        self._add(*_reduce(keys, torch.ones_like(keys), vals))

    def _add(self, keys: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor) -> None:
        self._parts.append((keys, counts, sums))
        self._pending += keys.numel()
        if self._pending > max(2 * self.keys.numel(), self.MERGE_MIN):
            self._merge()

    def _merge(self) -> None:
        if not self._parts:
            return
        parts = [(self.keys, self.counts, self.sums), *self._parts]
        self.keys, self.counts, self.sums = _reduce(*(torch.cat(c) for c in zip(*parts, strict=True)))
        self._parts, self._pending = [], 0

    def result(self, top: int) -> FeatureStats:
        """The totals per feature and each feature's ``top`` tokens by count and by summed activation."""
        self._merge()
        keys, counts, sums = self.keys.numpy(), self.counts.numpy(), self.sums.numpy()
        feat = (keys >> _SHIFT).astype(np.int64)
        tok = (keys & ((1 << _SHIFT) - 1)).astype(np.int64)
        n_active = np.bincount(feat, weights=counts, minlength=self.F).round().astype(np.int64)
        act_sum = np.bincount(feat, weights=sums, minlength=self.F)
        by_count = _top_per_feature(feat, tok, counts, top)
        by_sum = _top_per_feature(feat, tok, sums, top)
        return FeatureStats(n_active, act_sum, feat[by_count], tok[by_count], counts[by_count],
                            feat[by_sum], tok[by_sum], sums[by_sum])


def _reduce(keys: torch.Tensor, counts: torch.Tensor, sums: torch.Tensor):
    """Distinct keys (sorted) with their counts and sums added up."""
    uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    c = torch.zeros(uniq.numel(), dtype=torch.int64).index_add_(0, inverse, counts)
    s = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inverse, sums)
    return uniq, c, s


def _top_per_feature(feat: np.ndarray, tok: np.ndarray, score: np.ndarray, top: int) -> np.ndarray:
    """Indices of each feature's ``top`` entries by ``score`` descending, then token ascending; grouped by feature
    ascending, ranked within."""
    order = np.lexsort((tok, -score, feat))
    f = feat[order]
    first = np.searchsorted(f, f, side="left")  # where each feature's group starts
    rank = np.arange(f.size) - first
    return order[rank < top]
