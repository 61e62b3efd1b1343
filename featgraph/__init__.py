"""featgraph: cross-width feature graphs, hybrid and Frankenstein SAEs.

Importing featgraph is cheap: submodules (and torch, faiss, transformer-lens) load on first use of a name. The
public names are listed in ``__all__`` and documented in the README ("Python API"); the rooms they come from are
described there too ("Architecture").
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    # errors
    "FeatgraphError": "errors", "SaeFormatError": "errors", "ShapeMismatchError": "errors",
    "BadWeightsError": "errors", "ConfigError": "errors", "StaleIndexError": "errors",
    "UnsupportedError": "errors", "HookNameError": "errors",
    # SAEs, ladders, formats, hub names
    "Sae": "sae", "SaeConfig": "sae", "SaeOutput": "sae",
    "Ladder": "ladder", "LadderEntry": "ladder", "load_ladder": "ladder",
    "detect_format": "formats", "load_sae": "formats", "load_decoder": "formats", "save_saelens": "formats",
    "save_sparsify": "formats", "save_dictionary_learning": "formats", "save_gemmascope": "formats",
    "resolve_sae_name": "hub", "source_of": "hub", "release_sites": "hub",
    "planted_ladder": "synthetic",
    # matching, index, families, graphs, tables
    "SimilarityIndex": "index", "build_ladder_index": "index", "load_ladder_index": "index",
    "PairMatch": "matching", "match_pair": "matching", "match_ladder": "matching", "match_saes": "matching",
    "normalize_rows": "matching", "resolve_method_device": "matching", "is_novel": "matching",
    "run_families": "families",
    "ladder_graph": "graph", "splitting_tree": "graph", "families_from_edges": "graph",
    "read_graphml": "graphml", "write_graphml": "graphml",
    "features_table": "tables", "edges_table": "tables", "families_table": "tables", "read_table": "tables",
    # activations, training, evaluation
    "load_model": "activations", "collect_activations": "activations", "ActivationStore": "activations",
    "default_corpus": "activations", "corpus_contexts": "activations",
    "TrainConfig": "training", "train_ladder": "training", "train_sae": "training",
    "reconstruction_metrics": "training", "ce_metrics": "training", "evaluate_sae": "training",
    "evaluate_ladder": "training",
    # stitching
    "hybrid": "stitch.hybrid", "add_features": "stitch.hybrid", "swap_family": "stitch.hybrid",
    "delta_mse_add": "stitch.delta_mse", "delta_mse_swap": "stitch.delta_mse", "two_by_two": "stitch.delta_mse",
    "interpolation_path": "stitch.interpolate", "assemble": "stitch.frankenstein",
    "retrain_decoder": "stitch.frankenstein", "analyze_pair": "stitch.pair", "Evaluator": "stitch.evaluator",
    # one config and one entry point per command
    "FamiliesConfig": "config", "IndexConfig": "config", "EvalConfig": "config", "CollectConfig": "config",
    "TrainRunConfig": "config", "StitchConfig": "config", "FrankensteinConfig": "config", "ReportConfig": "config",
    "run_index": "commands", "run_eval": "commands", "run_collect": "commands", "run_train": "commands",
    "run_stitch": "stitch.run", "run_frankenstein": "stitch.run", "run_report": "report.run",
    # many SAEs at once: featgraph.atlas(cfg) (the package is callable) = run_atlas(cfg)
    "atlas": "atlas", "run_atlas": "atlas", "AtlasConfig": "atlas",
    # two SAEs compared: featgraph.compare(cfg) (the package is callable) = run_compare(cfg); nearest features
    "compare": "compare", "run_compare": "compare", "CompareConfig": "compare",
    "neighbors": "compare.neighbors", "run_neighbors": "compare", "NeighborsConfig": "compare",
}
__all__ = ["__version__", *_EXPORTS]


def lazy_getattr(package: str, exports: dict[str, str]) -> Any:
    """A module ``__getattr__`` for ``package`` that imports ``package.<exports[name]>`` on first use of ``name``:
    the one way featgraph's packages keep their public names cheap to import (no torch until used)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = _EXPORTS[name]
        attr = "resolve" if name == "resolve_sae_name" else name  # hub.resolve: too generic a name at the top
        return getattr(importlib.import_module(f"featgraph.{module}"), attr)
    raise AttributeError(f"module 'featgraph' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
