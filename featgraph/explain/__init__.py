"""Explain room: what each feature fires on, from one streaming encode pass per SAE over an activation store.

``topk`` keeps every feature's top-k distinct activating contexts with their windows, ``stats`` the sparse
(feature, token) counts and summed activations, ``labels`` the short automatic label (and :func:`read_labels`, what
families, compare and the explorer read), ``tokens`` the tokenizer of the store's model, ``tables`` the two Parquet
schemas, ``run`` the pass (:func:`explain_sae`) and the command (:func:`run_explain`), ``config`` its config.

Public names: ExplainConfig, run_explain, explain_sae, read_labels, make_label. Modules load on first use (reading
labels needs polars only, not torch).
"""

from __future__ import annotations

from featgraph import lazy_getattr

_EXPORTS = {
    "ExplainConfig": "config", "run_explain": "run", "explain_sae": "run", "read_labels": "labels",
    "make_label": "labels",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
