"""Atlas room: many SAEs at once. A collection (manifest or folder tree) becomes a plan of pairs (adjacent widths:
families; adjacent layers: flow; equal widths across seeds: compare) run through an engine (in-process, or Ray),
written as per-pair Parquet tables, flow chains, one graph of everything and a summary; a rerun reuses every pair
whose SAEs did not change.

``collection`` reads and checks the manifest, ``plan`` derives the pairs and their row blocks, ``work`` is what one
task computes, ``engines`` runs tasks (in-process or on Ray), ``tables`` / ``flow`` / ``network`` write the
results, ``run`` puts it together, ``config`` is the command's config.

``featgraph.atlas(cfg)`` runs it: this package is callable (``featgraph.atlas(cfg)`` = :func:`run_atlas`), because
the room and the Python API share the name the issue gave both. Public names: run_atlas, AtlasConfig, AtlasResult,
read_collection, Collection, SaeSpec, make_plan, Pair, PARTS. Modules load on first use.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from featgraph import lazy_getattr

_EXPORTS = {
    "run_atlas": "run", "AtlasResult": "run", "AtlasConfig": "config",
    "read_collection": "collection", "Collection": "collection", "SaeSpec": "collection",
    "make_plan": "plan", "Pair": "plan", "PARTS": "plan",
}
__all__ = sorted(_EXPORTS)

_lazy = lazy_getattr(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "atlas":  # featgraph's lazy export of "atlas" resolves to this (callable) package itself
        return sys.modules[__name__]
    return _lazy(name)


class _CallableModule(types.ModuleType):
    """``featgraph.atlas(cfg)`` runs the atlas: the module's call is :func:`featgraph.atlas.run.run_atlas`."""

    def __call__(self, cfg: Any = None, **kwargs: Any) -> Any:
        from featgraph.atlas.config import AtlasConfig
        from featgraph.atlas.run import run_atlas

        if cfg is None:
            cfg = AtlasConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either an AtlasConfig or its fields as keywords, not both")
        return run_atlas(cfg)


sys.modules[__name__].__class__ = _CallableModule
