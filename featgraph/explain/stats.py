"""Per-feature firing statistics and top tokens, accumulated sparsely while streaming.

For every (feature, token id) pair with at least one firing the accumulator keeps how many times the feature
fired on that token and its summed activation. A dense ``[F, vocab]`` table would be 4608 x 49152 float64 = 1.8 GB
(900 MB in float32) for one SAE of the bundled ladder, almost all zeros: a feature fires on a few hundred distinct
tokens at most. So the pairs are kept in COO form, keyed ``feature << 32 | token``: each batch's firings are
appended as raw (key, activation) entries, and these are reduced into the table (one stable sort +
``np.add.reduceat``) whenever they outgrow it (amortised O(n log n)). Memory follows the number of distinct pairs,
at most F x (distinct tokens in the store), which stops growing once the store's vocabulary is seen, not with the
store's length.

Everything else is derived from the same pairs at the end, in one fixed order (so byte-identical reruns): the
number of firings of a feature is the sum of its pairs' counts, its summed activation the sum of its pairs' sums.
Ties in the top-token lists go to the smaller token id.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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
    """Sparse (feature, token) counts and activation sums; :meth:`update` per batch, :meth:`result` at the end.

    Each batch appends its raw firings (key, activation); the appended entries are reduced into the table (one
    stable sort, then ``np.add.reduceat``) once they outgrow it. numpy on one thread, as in
    :mod:`featgraph.explain.topk`.
    """

    MERGE_MIN = 1 << 21  # appended entries merged once they exceed max(this, 2 x the merged table)

    def __init__(self, n_features: int):
        self.F = n_features
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros(0, dtype=np.float64)
        self._keys: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._pending = 0

    def update(self, acts: np.ndarray, token_ids: np.ndarray) -> None:
        """``acts`` float32 ``[n, F]`` (C order) and the token id ``[n]`` of each row."""
        flat = acts.reshape(-1)
        idx = np.flatnonzero(flat > 0)
        if idx.size == 0:
            return
        rows, feats = np.divmod(idx, self.F)
        self._keys.append((feats << _SHIFT) | np.asarray(token_ids, dtype=np.int64)[rows])
        self._vals.append(flat[idx])
        self._pending += idx.size
        if self._pending > max(2 * self.keys.size, self.MERGE_MIN):
            self._merge()

    def _merge(self) -> None:
        if not self._keys:
            return
        keys = np.concatenate([self.keys, *self._keys])
        counts = np.concatenate([self.counts, np.ones(self._pending, dtype=np.int64)])
        sums = np.concatenate([self.sums, *(v.astype(np.float64) for v in self._vals)])
        order = np.argsort(keys, kind="stable")  # stable: a fixed summation order, byte-identical reruns
        keys = keys[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        self.keys = keys[starts]
        self.counts = np.add.reduceat(counts[order], starts)
        self.sums = np.add.reduceat(sums[order], starts)
        self._keys, self._vals, self._pending = [], [], 0

    def result(self, top: int) -> FeatureStats:
        """The totals per feature and each feature's ``top`` tokens by count and by summed activation."""
        self._merge()
        keys, counts, sums = self.keys, self.counts, self.sums
        feat = (keys >> _SHIFT).astype(np.int64)
        tok = (keys & ((1 << _SHIFT) - 1)).astype(np.int64)
        n_active = np.bincount(feat, weights=counts, minlength=self.F).round().astype(np.int64)
        act_sum = np.bincount(feat, weights=sums, minlength=self.F)
        by_count = _top_per_feature(feat, tok, counts, top)
        by_sum = _top_per_feature(feat, tok, sums, top)
        return FeatureStats(n_active, act_sum, feat[by_count], tok[by_count], counts[by_count],
                            feat[by_sum], tok[by_sum], sums[by_sum])


def _top_per_feature(feat: np.ndarray, tok: np.ndarray, score: np.ndarray, top: int) -> np.ndarray:
    """Indices of each feature's ``top`` entries by ``score`` descending, then token ascending; grouped by feature
    ascending, ranked within."""
    order = np.lexsort((tok, -score, feat))
    f = feat[order]
    first = np.searchsorted(f, f, side="left")  # where each feature's group starts
    rank = np.arange(f.size) - first
    return order[rank < top]
