"""Activations room: where model activations come from and how every consumer reads them.

``model`` loads the model (bundled SmolLM2 by default, offline) and checks hook names, ``text`` is the pinned
default corpus and the tokenizer helpers, ``store`` the on-disk :class:`ActivationStore` (shards + meta, resumable),
``collect`` runs the model over token contexts into a store (or into memory), and ``batches`` is the one way every
consumer reads activations back (:func:`iter_acts` over a tensor, a store or any :class:`Activations`). A new text
source goes in ``text``, a new model family in ``model``, a new on-disk layout in ``store``.

Public names: load_model, collect_activations, collect_corpus, activations_in_memory, hook_activations,
ActivationStore, Activations, iter_acts, StoreRows, default_corpus, corpus_contexts, text_source, split_documents,
tokenize_contexts. They load on first use, so ``featgraph.activations.text`` (stdlib only) stays free of torch.
"""

from __future__ import annotations

from featgraph import lazy_getattr

__all__ = [
    "DEFAULT_MODEL", "ActivationStore", "Document", "activations_in_memory", "collect_activations", "collect_corpus",
    "corpus_contexts", "default_corpus", "hook_activations", "load_model", "split_documents", "text_source",
    "tokenize_contexts", "Activations", "ActivationsLike", "StoreRows", "iter_acts", "n_rows",
]
_BATCHES = {"Activations", "ActivationsLike", "StoreRows", "iter_acts", "n_rows"}

__getattr__ = lazy_getattr(__name__, {name: "batches" if name in _BATCHES else "collect" for name in __all__})
