"""featgraph: cross-width feature graphs, hybrid and Frankenstein SAEs.

Importing featgraph is cheap: submodules (and torch, faiss, transformer-lens) load on first use of a name.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "FeatgraphError": "errors", "SaeFormatError": "errors", "ShapeMismatchError": "errors",
    "BadWeightsError": "errors", "ConfigError": "errors", "StaleIndexError": "errors",
    "UnsupportedError": "errors", "HookNameError": "errors",
    "Sae": "sae", "SaeConfig": "sae", "SaeOutput": "sae",
    "Ladder": "ladder", "LadderEntry": "ladder", "load_ladder": "ladder",
    "detect_format": "formats", "load_sae": "formats", "load_decoder": "formats",
    "planted_ladder": "synthetic",
    "SimilarityIndex": "index", "build_ladder_index": "index", "load_ladder_index": "index",
    "PairMatch": "matching", "match_pair": "matching", "match_ladder": "matching", "normalize_rows": "matching",
    "resolve_method_device": "matching",
    "run_families": "families",
    "TrainConfig": "train", "train_ladder": "train", "train_sae": "train",
    "reconstruction_metrics": "evaluate", "ce_metrics": "evaluate", "evaluate_sae": "evaluate",
    "evaluate_ladder": "evaluate",
    "load_model": "activations", "collect_activations": "activations", "ActivationStore": "activations",
    "default_corpus": "activations", "corpus_contexts": "activations",
    "add_features": "stitch.hybrid", "swap_family": "stitch.hybrid",
    "delta_mse_add": "stitch.delta_mse", "delta_mse_swap": "stitch.delta_mse", "two_by_two": "stitch.delta_mse",
    "interpolation_path": "stitch.interpolate", "assemble": "stitch.frankenstein",
    "retrain_decoder": "stitch.frankenstein", "analyze_pair": "stitch.pair", "Evaluator": "stitch.evaluator",
    "run_stitch": "stitch.run", "run_frankenstein": "stitch.run", "run_report": "report.run",
    "StitchConfig": "config", "FrankensteinConfig": "config", "ReportConfig": "config",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"featgraph.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'featgraph' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
