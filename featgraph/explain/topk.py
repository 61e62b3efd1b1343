"""Per-feature top-k activating contexts, kept while streaming over an activation store.

Each batch the pass hands over holds whole contexts (``rows_per_context`` store rows each, in store order). For
every feature a context counts once, at its max-activating position (the first one on a tie), so the k examples
of a feature come from k distinct contexts. The order is total and deterministic: activation descending, then
context ascending (then position ascending, which is unique within a context once the first max is taken).

Why it is exact with bounded memory: the state is ``[F, k]`` (value, context, position) plus each example's window
of activations ``[F, k, L]``, whatever the store size. Per batch, the per-context maxima ``[contexts, F]`` are one
reduction; only the (context, feature) pairs that beat the feature's current k-th value and are among the batch's
own top k for that feature can enter, so positions and windows are gathered for those candidates alone (at most
about F x k per batch, few once the top-k fill up), and only the features with candidates are re-ranked. A
candidate that merely ties the k-th value stays out: the kept context is older, and older contexts win ties. The
window activations come from the batch's own encoded activations (a context never straddles two batches): they are
the very numbers the ranking used, so no second pass over the store is needed.

The bookkeeping is numpy on one thread: these are small reductions and gathers, which torch's thread pool runs
several times slower than numpy on a machine whose cores are busy (measured in benchmarks/bench_explain.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np

CHUNK = 1 << 15  # candidates whose context columns are gathered at once


@dataclasses.dataclass
class TopExamples:
    """The final top-k of every feature: arrays ``[F, k]`` sorted by rank; an unused slot has ``value <= 0``."""

    values: np.ndarray  #: float32 activation at the max position
    contexts: np.ndarray  #: int64 context index in the store
    positions: np.ndarray  #: int64 store position within the context (0 = the first stored row of the context)
    windows: np.ndarray  #: float32 ``[F, k, before + 1 + after]``: the feature's activation around the max
    before: int
    after: int


class TopContexts:
    """Streaming top-k distinct contexts per feature; :meth:`update` once per batch, :meth:`result` at the end."""

    def __init__(self, n_features: int, k: int, rows_per_context: int, before: int, after: int):
        self.F, self.k, self.rpc = n_features, k, rows_per_context
        self.before, self.after = before, after
        self.offsets = np.arange(-before, after + 1)
        self.values = np.full((n_features, k), -np.inf, dtype=np.float32)
        self.contexts = np.full((n_features, k), -1, dtype=np.int64)
        self.positions = np.zeros((n_features, k), dtype=np.int64)
        self.windows = np.zeros((n_features, k, self.offsets.size), dtype=np.float32)

    def update(self, acts: np.ndarray, first_context: int) -> None:
        """Merge a batch: ``acts`` float32 ``[n_contexts * rows_per_context, F]`` (C order), its contexts numbered
        from ``first_context``."""
        n_ctx = acts.shape[0] // self.rpc
        assert n_ctx * self.rpc == acts.shape[0] and acts.shape[1] == self.F
        per_ctx = acts.reshape(n_ctx, self.rpc, self.F)
        best = per_ctx.max(axis=1)  # [n_ctx, F]
        enter = best > np.maximum(self.values[:, -1], 0)  # beat the k-th kept value (and fire at all)
        if n_ctx > self.k:  # and be among the batch's own top k (ties at its k-th value all pass): bounds the work
            enter &= best >= np.partition(best, n_ctx - self.k, axis=0)[n_ctx - self.k]
        ci, fi = np.nonzero(enter)
        if ci.size == 0:
            return
        pos = np.empty(ci.size, dtype=np.int64)
        win = np.empty((ci.size, self.offsets.size), dtype=np.float32)
        for lo in range(0, ci.size, CHUNK):  # [chunk, rpc] gathered at a time: memory bounded at any batch size
            c, f = ci[lo:lo + CHUNK], fi[lo:lo + CHUNK]
            cols = per_ctx[c, :, f]  # each candidate's activations over its context, [chunk, rpc]
            pos[lo:lo + CHUNK] = (cols == best[c, f][:, None]).argmax(axis=1)  # the first position of the max
            p = pos[lo:lo + CHUNK, None] + self.offsets
            win[lo:lo + CHUNK] = cols[np.arange(c.size)[:, None], p.clip(0, self.rpc - 1)] * ((p >= 0) & (p < self.rpc))
        self._merge(fi, best[ci, fi], ci + first_context, pos, win)

    def _merge(self, fi: np.ndarray, v: np.ndarray, ctx: np.ndarray, pos: np.ndarray, win: np.ndarray) -> None:
        """Re-rank the features that have candidates: kept entries and candidates sorted by (feature, activation
        desc, context asc); each feature's first k are kept."""
        aff = np.unique(fi)
        k = self.k
        all_f = np.concatenate([np.repeat(aff, k), fi])
        all_v = np.concatenate([self.values[aff].ravel(), v])
        all_c = np.concatenate([self.contexts[aff].ravel(), ctx])
        order = np.lexsort((all_c, -all_v, all_f))
        sorted_f = all_f[order]
        rank = np.arange(order.size) - np.searchsorted(sorted_f, sorted_f, side="left")
        keep = order[rank < k]  # exactly k per affected feature (each has k kept slots), in (feature, rank) order
        all_p = np.concatenate([self.positions[aff].ravel(), pos])
        all_w = np.concatenate([self.windows[aff].reshape(-1, self.offsets.size), win])
        self.values[aff] = all_v[keep].reshape(-1, k)
        self.contexts[aff] = all_c[keep].reshape(-1, k)
        self.positions[aff] = all_p[keep].reshape(-1, k)
        self.windows[aff] = all_w[keep].reshape(-1, k, self.offsets.size)

    def result(self) -> TopExamples:
        return TopExamples(self.values, self.contexts, self.positions, self.windows, self.before, self.after)
