"""Compare room: two SAEs' features compared beyond the decoder-cos edges of :mod:`featgraph.matching`.

``assignment`` is the exact one-to-one assignment maximising the total decoder cos (certified, sparse; ``solver``
holds the solver), ``act_similarity`` the activation-side similarities (Jaccard, Pearson, masked cos) of all pairs
from one pass over an activation store, and how they agree with the decoder side.

Public names: assign, assign_dense, Assignment, activation_similarity, ActSimAccumulator,
decoder_vs_activation. Modules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Assignment": "assignment", "assign": "assignment", "assign_dense": "assignment",
    "ActSimAccumulator": "act_similarity", "activation_similarity": "act_similarity",
    "decoder_vs_activation": "act_similarity",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"featgraph.compare.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'featgraph.compare' has no attribute {name!r}")
