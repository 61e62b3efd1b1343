"""Per-feature top-k activating contexts, kept while streaming over an activation store.

Each batch the pass hands over holds whole contexts (``rows_per_context`` store rows each, in store order). For
every feature a context counts once, at its max-activating position (the first one on a tie), so the k examples
of a feature come from k distinct contexts. The order is total and deterministic: activation descending, then
context ascending (then position ascending, which is unique within a context once the first max is taken).

Why it is exact with bounded memory: the state is ``[F, k]`` (value, context, position) plus each example's window
of activations ``[F, k, L]``, whatever the store size. A batch contributes at most k candidates per feature (its
own top k contexts); the merge is one stable sort over ``[F, k + k]``. Batches arrive in context order, so every
kept context is older than every new one; a stable descending sort therefore breaks ties by context ascending
without comparing contexts. The window activations of a candidate come from the batch's own encoded activations
(a context never straddles two batches): they are the very numbers the ranking used, gathered for at most
``F * k * L`` entries per batch, and no second pass over the store is needed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch


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
        self.offsets = torch.arange(-before, after + 1)
        self.values = torch.full((n_features, k), -torch.inf)
        self.contexts = torch.full((n_features, k), -1, dtype=torch.int64)
        self.positions = torch.zeros((n_features, k), dtype=torch.int64)
        self.windows = torch.zeros((n_features, k, len(self.offsets)))
        self._features = torch.arange(n_features)

    def update(self, acts: torch.Tensor, first_context: int) -> None:
        """Merge a batch: ``acts`` ``[n_contexts * rows_per_context, F]``, its contexts numbered from
        ``first_context``."""
        n_ctx = acts.shape[0] // self.rpc
        assert n_ctx * self.rpc == acts.shape[0] and acts.shape[1] == self.F
        vals, pos = acts.view(n_ctx, self.rpc, self.F).max(dim=1)  # torch.max: the first max position on ties
        vals, pos = vals.T, pos.T  # [F, n_ctx]
        kk = min(self.k, n_ctx)
        order = torch.sort(vals, dim=1, descending=True, stable=True).indices[:, :kk]  # ties: context ascending
        b_vals, b_pos = vals.gather(1, order), pos.gather(1, order)
        b_windows = self._windows(acts, order, b_pos)
        # kept entries first: stable sort keeps them ahead of equal new values (their contexts are older)
        all_vals = torch.cat([self.values, b_vals], dim=1)
        keep = torch.sort(all_vals, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = all_vals.gather(1, keep)
        self.contexts = torch.cat([self.contexts, order + first_context], dim=1).gather(1, keep)
        self.positions = torch.cat([self.positions, b_pos], dim=1).gather(1, keep)
        all_windows = torch.cat([self.windows, b_windows], dim=1)
        self.windows = all_windows.gather(1, keep[:, :, None].expand(-1, -1, all_windows.shape[2]))

    def _windows(self, acts: torch.Tensor, ctx_local: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``[F, kk, L]``: feature f's activation at positions ``pos + offsets`` of its candidate contexts (0 outside
        the context; those slots are cut off when the table is written)."""
        p = pos[:, :, None] + self.offsets  # [F, kk, L]
        inside = (p >= 0) & (p < self.rpc)
        rows = ctx_local[:, :, None] * self.rpc + p.clamp(0, self.rpc - 1)
        flat = rows * self.F + self._features[:, None, None]  # acts is [rows, F], row-major
        return acts.reshape(-1).take(flat) * inside

    def result(self) -> TopExamples:
        return TopExamples(self.values.numpy(), self.contexts.numpy(), self.positions.numpy(),
                           self.windows.numpy(), self.before, self.after)
