"""Training room: train SAE ladders and measure them.

``trainer`` is the recipe (``TrainConfig``, init, the optimiser step, dead-feature resampling), ``run`` trains a
ladder or one SAE on an activation store (checkpoints, health.json, SAELens copies), ``evaluate`` the post's
metrics (reconstruction, CE loss recovered, L0) and ``health`` the training-health diagnostics (rare/dense
features, rows still at their random init), ``delta_mse`` the one-pass delta-MSE of feature-group edits that
health (removals) and the stitch room (adds, swaps) both use. A change to how SAEs learn goes in ``trainer``; to
what is reported about them, in ``evaluate`` / ``health`` / ``delta_mse``.

Public names: TrainConfig, train_ladder, train_sae, initial_decoder, reconstruction_metrics, ce_metrics,
evaluate_sae, evaluate_ladder, metrics_markdown, sae_health. They load on first use (torch).
"""

from __future__ import annotations

from featgraph import lazy_getattr

_EXPORTS = {
    "TrainConfig": "trainer", "initial_decoder": "trainer", "init_seed": "trainer",
    "geometric_median": "trainer",
    "train_ladder": "run", "train_sae": "run",
    "reconstruction_metrics": "evaluate", "ce_metrics": "evaluate", "evaluate_sae": "evaluate",
    "evaluate_ladder": "evaluate", "metrics_markdown": "evaluate",
    "sae_health": "health",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
