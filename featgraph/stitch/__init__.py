"""The stitch room: moving features between SAEs of different widths and measuring what it does.

- :mod:`~featgraph.stitch.hybrid`: hybrid SAEs (add donor features, swap a family), folded so that every moved
  feature fires as in its own SAE;
- :mod:`~featgraph.stitch.delta_mse`: one-pass delta-MSE / delta-L0 of adding or swapping many candidates;
- :mod:`~featgraph.stitch.interpolate`: the path from a small SAE to a larger one (novel features, then families);
- :mod:`~featgraph.stitch.frankenstein`: Frankenstein assembly across a ladder and decoder retraining;
- :mod:`~featgraph.stitch.stream`: the single pass over the activations behind a pair's analyses;
- :mod:`~featgraph.stitch.pair`: :func:`analyze_pair`, every table and figure of one pair;
- :mod:`~featgraph.stitch.evaluator`: SAE rows (MSE, L0, CE recovered) for the points and comparison tables;
- :mod:`~featgraph.stitch.figures`: the post's figures (matplotlib, no pyplot);
- :mod:`~featgraph.stitch.batches`: the activation batches every analysis reads (streamed from a store);
- :mod:`~featgraph.stitch.run`: :func:`run_stitch` and :func:`run_frankenstein`, the commands' entry points.

The HTML page is :mod:`featgraph.report`. Names load lazily, so importing this package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "add_features": "hybrid", "swap_family": "hybrid", "check_stitchable": "hybrid",
    "delta_mse_add": "delta_mse", "delta_mse_swap": "delta_mse", "delta_mse_groups": "delta_mse",
    "two_by_two": "delta_mse",
    "plan_interpolation": "interpolate", "interpolation_path": "interpolate", "path_sae": "interpolate",
    "assemble": "frankenstein", "retrain_decoder": "frankenstein", "analyze_frankenstein": "frankenstein",
    "FrankensteinAnalysis": "frankenstein",
    "stream_pair": "stream", "PairMoments": "stream",
    "analyze_pair": "pair", "PairAnalysis": "pair",
    "Evaluator": "evaluator",
    "run_stitch": "run", "run_frankenstein": "run", "StitchResult": "run", "FrankensteinResult": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
