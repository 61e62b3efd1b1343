"""Compare room: two SAEs' features compared beyond the decoder-cos edges of :mod:`featgraph.matching`, and the
nearest-feature search over a saved index.

``assignment`` is the exact one-to-one assignment maximising the total decoder cos (certified, sparse; ``solver``
holds the solver), ``act_similarity`` the activation-side similarities (Jaccard, Pearson, masked cos) of all pairs
from one pass over an activation store, and how they agree with the decoder side.

``analysis`` puts them together for one pair of SAEs (both directions, assignment, families, activations), ``tables``,
``graph`` and ``figures`` render it, ``run`` is ``featgraph compare`` (config in ``config``), ``neighbors`` is
``featgraph neighbors`` (each with its terminal output).

Public names: assign, assign_dense, Assignment, activation_similarity, ActSimAccumulator, decoder_vs_activation,
CompareConfig, NeighborsConfig, run_compare, compare_units, run_neighbors, top_k_neighbors (``featgraph.neighbors`` is
:func:`featgraph.compare.neighbors.neighbors`). Modules load on first use.
The package itself is callable: ``featgraph.compare(cfg)`` is :func:`featgraph.compare.run.run_compare` (a
:class:`CompareConfig`, or its fields as keywords).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from featgraph import lazy_getattr

_EXPORTS = {
    "Assignment": "assignment", "assign": "assignment", "assign_dense": "assignment",
    "ActSimAccumulator": "act_similarity", "activation_similarity": "act_similarity",
    "decoder_vs_activation": "act_similarity",
    "CompareConfig": "config", "NeighborsConfig": "config", "run_compare": "run", "compare_units": "analysis",
    "run_neighbors": "neighbors", "top_k_neighbors": "neighbors",
}
__all__ = sorted(_EXPORTS)

_lazy = lazy_getattr(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "compare":  # featgraph's lazy export of "compare" resolves to this (callable) package itself
        return sys.modules[__name__]
    return _lazy(name)


class _CallableRoom(types.ModuleType):
    """``featgraph.compare(cfg)`` runs a comparison while ``featgraph.compare.<module>`` stays this package."""

    def __call__(self, cfg: Any = None, /, **fields: Any) -> Any:
        from featgraph.compare.config import CompareConfig
        from featgraph.compare.run import run_compare

        if cfg is None:
            cfg = CompareConfig(**fields)
        elif fields:
            raise TypeError("pass a CompareConfig or its fields as keywords, not both")
        return run_compare(cfg)


sys.modules[__name__].__class__ = _CallableRoom
