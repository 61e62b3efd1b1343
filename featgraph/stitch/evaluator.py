"""Evaluating the SAEs a stitch analysis compares: the rows of its points and comparison tables.

:class:`Evaluator` lives here, beside the analyses that use it, rather than in :mod:`featgraph.training.evaluate`: it is
stitch's policy over evaluate's metrics (one set of activations and one set of CE contexts for every SAE of a
report, results cached per SAE, CE only at the path steps asked for), and evaluate stays the plain metric
library that eval and train use. The pair pipeline does not call it for reconstruction: the pair's own MSE, L0
and explained variance come from the streaming pass (:mod:`featgraph.stitch.stream`); only CE (a model forward
per SAE) and the Frankenstein stages go through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import torch

from featgraph.sae import Sae
from featgraph.stitch.batches import ActivationsLike
from featgraph.tables import POINT_COLUMNS

CE_COLUMNS = ("ce_recovered_zero", "ce_recovered_mean")


class Evaluator:
    """Evaluates SAEs on fixed activations and, when ``model`` and ``tokens`` are given, CE recovered."""

    def __init__(
        self,
        acts: ActivationsLike,
        *,
        model: Any = None,
        tokens: torch.Tensor | None = None,
        hook_name: str | None = None,
        model_batch_size: int = 8,
        bootstrap: bool = True,
    ):
        self.acts, self.model, self.tokens, self.hook_name = acts, model, tokens, hook_name
        self.model_batch_size = model_batch_size
        #: name -> (SSE per context, tokens per context) from each row's evaluation pass, for the bootstrap of a
        #: comparison (featgraph.stitch.bootstrap.comparison_intervals); kept only with ``bootstrap``
        self.per_context: dict[str, tuple] = {}
        self.context_rows, self.context_phase, self.context_unit = (None, 0, "")
        if bootstrap:
            from featgraph.stitch.bootstrap import context_layout

            self.context_rows, self.context_phase, self.context_unit = context_layout(acts)
        self._baselines: dict[str, Any] | None = None
        self._rows: dict[tuple[str, int], tuple[Sae, dict[str, Any]]] = {}
        self._ce: dict[int, tuple[Sae, dict[str, float]]] = {}

    @property
    def has_ce(self) -> bool:
        return self.model is not None and self.tokens is not None and len(self.tokens) > 0

    def _hook(self, sae: Sae) -> str | None:
        return self.hook_name or sae.cfg.hook_name

    def baselines(self, sae: Sae) -> dict[str, Any]:
        if self._baselines is None:
            from featgraph.training.evaluate import ce_baselines

            self._baselines = ce_baselines(self.model, self.tokens, self._hook(sae), batch_size=self.model_batch_size)
        return self._baselines

    def row(self, sae: Sae, name: str) -> dict[str, Any]:
        """evaluate_sae's row (reconstruction on ``acts``, CE when a model is given); cached per (name, SAE
        object), so a ladder SAE is evaluated once per report. Health is left out: no stitch table shows it."""
        key = (name, id(sae))
        if key not in self._rows:
            from featgraph.training.evaluate import evaluate_sae

            kw = {"model": self.model, "tokens": self.tokens, "baselines": self.baselines(sae)} if self.has_ce else {}
            row = evaluate_sae(sae, acts=self.acts, hook_name=self._hook(sae), name=name,
                               model_batch_size=self.model_batch_size, health=False, context_rows=self.context_rows,
                               context_phase=self.context_phase, **kw)
            if self.context_rows:  # arrays stay out of the tables
                self.per_context[name] = (row.pop("sse_per_context"), row.pop("n_per_context"))
            self._rows[key] = (sae, row)  # holding sae keeps its id from being reused
            self._ce.setdefault(id(sae), (sae, {c: row[c] for c in CE_COLUMNS}))
        return dict(self._rows[key][1])

    def ce(self, sae: Sae) -> dict[str, float]:
        """CE loss recovered, zero- and mean-ablated (NaN without a model); cached per SAE object."""
        if id(sae) not in self._ce:
            vals = {c: float("nan") for c in CE_COLUMNS}
            if self.has_ce:
                from featgraph.training.evaluate import ce_metrics

                m = ce_metrics(sae, self.model, self.tokens, self._hook(sae), batch_size=self.model_batch_size,
                               baselines=self.baselines(sae))
                vals = {c: float(m[c]) for c in CE_COLUMNS}
            self._ce[id(sae)] = (sae, vals)
        return dict(self._ce[id(sae)][1])

    def ce_recovered(self, sae: Sae) -> float:
        """CE loss recovered from zero ablation (the post's first CE column)."""
        return self.ce(sae)["ce_recovered_zero"]


def points_table(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """The points table (one row per SAE, :data:`POINT_COLUMNS`)."""
    return pl.DataFrame([{c: r[c] for c in POINT_COLUMNS} for r in rows])
