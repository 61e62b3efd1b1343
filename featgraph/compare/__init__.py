"""Compare room: two SAEs' features compared beyond the decoder-cos edges of :mod:`featgraph.matching`.

``assignment`` is the exact one-to-one assignment maximising the total decoder cos (certified, sparse; ``solver``
holds the solver), ``act_similarity`` the activation-side similarities (Jaccard, Pearson, masked cos) of all pairs
from one pass over an activation store, and how they agree with the decoder side.

Public names: assign, assign_dense, Assignment, activation_similarity, ActSimAccumulator,
decoder_vs_activation. Modules load on first use.
"""

from __future__ import annotations

from featgraph import lazy_getattr

_EXPORTS = {
    "Assignment": "assignment", "assign": "assignment", "assign_dense": "assignment",
    "ActSimAccumulator": "act_similarity", "activation_similarity": "act_similarity",
    "decoder_vs_activation": "act_similarity",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
