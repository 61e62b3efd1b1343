"""Activations of a real model at one hook, written to an on-disk store.

The pieces live in small modules of this package and are re-exported here and by ``featgraph.activations``:

- :mod:`featgraph.activations.model`: :func:`load_model` (bundled SmolLM2 by default, offline), hook-name checks;
- :mod:`featgraph.activations.text`: :func:`default_corpus`, :func:`text_source`, :func:`split_documents`,
  :func:`tokenize_contexts`;
- :mod:`featgraph.activations.store`: :class:`ActivationStore`.

:func:`collect_activations` runs the model over token contexts with ``stop_at_layer`` (blocks after the hook
are skipped) and appends shards to a store, resuming a store left unfinished by a killed run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from featgraph.activations.model import (
    DEFAULT_MODEL,
    bos_token_id,
    check_hook_name,
    load_model,
    model_name,
    stop_layer_for,
)
from featgraph.activations.store import ActivationStore, tokens_fingerprint
from featgraph.activations.text import (
    Document,
    corpus_contexts,
    corpus_contexts_with_provenance,
    default_corpus,
    split_documents,
    text_source,
    tokenize_contexts,
)
from featgraph.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL", "ActivationStore", "Document", "activations_in_memory", "collect_activations", "collect_corpus",
    "collect_hooks", "hooks_activations",
    "corpus_contexts", "default_corpus", "hook_activations",
    "load_model", "split_documents", "text_source", "tokenize_contexts",
]

log = logging.getLogger(__name__)


@torch.no_grad()
def hook_activations(model: Any, tokens: torch.Tensor, hook_name: str) -> torch.Tensor:
    """Activations ``[B, T, d]`` at ``hook_name`` for ``tokens`` ``[B, T]``; later blocks skipped."""
    return hooks_activations(model, tokens, [hook_name])[hook_name]


@torch.no_grad()
def hooks_activations(model: Any, tokens: torch.Tensor, hook_names: list[str]) -> dict[str, torch.Tensor]:
    """Activations ``[B, T, d]`` at each of ``hook_names`` from ONE forward pass, stopped after the deepest."""
    for hook_name in hook_names:
        check_hook_name(model, hook_name)
    stops = [stop_layer_for(model, h) for h in hook_names]
    stop = None if None in stops else max(stops)
    _, cache = model.run_with_cache(tokens, names_filter=list(hook_names), stop_at_layer=stop)
    return {h: cache[h].float() for h in hook_names}


@torch.no_grad()
def activations_in_memory(model: Any, tokens: torch.Tensor, hook_name: str, *, batch_size: int = 8,
                          exclude_bos: bool = True, progress: bool = False) -> torch.Tensor:
    """Activations ``[n_rows, d]`` (float32) of ``tokens`` at ``hook_name``, BOS left out as in a store."""
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    first = int(exclude_bos and bool((tokens[:, 0] == bos_token_id(model)).all()))
    parts = []
    for lo in tqdm(range(0, len(tokens), batch_size), disable=not progress, desc=f"activations {hook_name}"):
        acts = hook_activations(model, tokens[lo:lo + batch_size], hook_name)[:, first:]
        parts.append(acts.reshape(-1, acts.shape[-1]))
    return torch.cat(parts)


def collect_activations(model: Any, tokens: torch.Tensor, hook_name: str, store_dir: str | Path, *,
                        batch_size: int = 8, shard_tokens: int = 2**16, dtype: str = "float16",
                        exclude_bos: bool = True, extra: dict[str, Any] | None = None,
                        progress: bool = True) -> ActivationStore:
    """Write the activations of ``tokens`` ``[n_contexts, T]`` at ``hook_name`` into a store at ``store_dir``.

    With ``exclude_bos`` (the default) position 0 is left out of the store when it holds the BOS id: the BOS
    residual is an attention sink with a norm ~10x the others, and SAEs are not trained on it. If
    ``store_dir`` already holds an unfinished store for the same model, hook and tokens, collection resumes
    after its last shard.
    """
    return collect_hooks(model, tokens, {hook_name: store_dir}, batch_size=batch_size, shard_tokens=shard_tokens,
                         dtype=dtype, exclude_bos=exclude_bos, extra=extra, progress=progress)[hook_name]


def collect_hooks(model: Any, tokens: torch.Tensor, stores: dict[str, str | Path], *, batch_size: int = 8,
                  shard_tokens: int = 2**16, dtype: str = "float16", exclude_bos: bool = True,
                  extra: dict[str, Any] | None = None, progress: bool = True) -> dict[str, ActivationStore]:
    """:func:`collect_activations` at several hooks in ONE forward pass: ``{hook_name: store_dir}`` -> stores.

    Each hook gets its own store (the same tokens, shards and metadata as a one-hook collection of that hook
    would give), and the model runs once per batch up to the deepest hook, so collecting blocks 3, 4 and 5
    costs about what block 5 alone costs. Each store resumes on its own: a run killed between two stores'
    shard writes restarts at the least advanced one and skips the contexts the others already hold.
    """
    if not stores:
        raise ConfigError("collect_hooks needs at least one {hook_name: store_dir}")
    for hook_name in stores:
        check_hook_name(model, hook_name)
    dirs = [Path(d) for d in stores.values()]
    if len(set(dirs)) != len(dirs):
        raise ConfigError(f"each hook needs its own store folder, got {[str(d) for d in dirs]}")
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    if tokens.ndim != 2:
        raise ConfigError(f"tokens must be [n_contexts, context_size], got shape {list(tokens.shape)}")
    name = model_name(model)
    d_in = int(model.cfg.d_model)
    skip_first = exclude_bos and bool((tokens[:, 0] == bos_token_id(model)).all())
    if exclude_bos and not skip_first:
        log.warning("exclude_bos: not every context starts with BOS id %d; keeping position 0",
                    bos_token_id(model))
    opened: dict[str, ActivationStore] = {}
    for hook_name, store_dir in zip(stores, dirs, strict=True):
        opened[hook_name] = _open_or_create(store_dir, model=name, hook_name=hook_name, d_in=d_in, tokens=tokens,
                                            exclude_bos=skip_first, dtype=dtype, extra=extra)
    todo = {h: s for h, s in opened.items() if not s.meta["complete"]}
    if todo:
        _collect_into(model, tokens, todo, skip_first=skip_first, batch_size=batch_size,
                      shard_tokens=shard_tokens, dtype=dtype, progress=progress)
    return opened


def _open_or_create(store_dir: Path, *, model: str, hook_name: str, d_in: int, tokens: torch.Tensor,
                    exclude_bos: bool, dtype: str, extra: dict[str, Any] | None) -> ActivationStore:
    """The store to (re)fill at ``store_dir``: an existing one must hold the same model, hook and tokens."""
    if (store_dir / "meta.json").exists():
        store = ActivationStore(store_dir)
        same = (store.meta["model"], store.meta["hook_name"], store.meta["tokens_sha256"]) == (
            model, hook_name, tokens_fingerprint(tokens.numpy()))
        if not same:
            raise ConfigError(f"{store_dir}: holds a store for another model, hook or token set "
                              f"({store.meta['model']}, {store.meta['hook_name']}); choose a new folder")
        if not store.meta["complete"]:
            log.info("resuming %s at context %d", store_dir, store.meta["contexts_done"])
        return store
    return ActivationStore.create(store_dir, model=model, hook_name=hook_name, d_in=d_in, tokens=tokens,
                                  exclude_bos=exclude_bos, dtype=dtype, extra=extra)


@torch.no_grad()
def _collect_into(model: Any, tokens: torch.Tensor, stores: dict[str, ActivationStore], *, skip_first: bool,
                  batch_size: int, shard_tokens: int, dtype: str, progress: bool) -> None:
    """Run the model once per batch up to the deepest hook and append each hook's rows to its store."""
    hooks = list(stores)
    d_in = int(model.cfg.d_model)
    done = {h: int(s.meta["contexts_done"]) for h, s in stores.items()}
    start = min(done.values())
    rows_per_context = tokens.shape[1] - int(skip_first)
    pending: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    bar = tqdm(total=len(tokens) * tokens.shape[1], initial=start * tokens.shape[1], unit="tok",
               disable=not progress, desc=f"activations {', '.join(hooks)}")
    for lo in range(start, len(tokens), batch_size):
        hi = min(lo + batch_size, len(tokens))
        # one hook goes through hook_activations, the documented one-hook entry point (as before this function)
        cache = ({hooks[0]: hook_activations(model, tokens[lo:hi], hooks[0])} if len(hooks) == 1
                 else hooks_activations(model, tokens[lo:hi], hooks))
        for h in hooks:
            first = max(lo, done[h]) - lo  # contexts this store already holds (resumed ahead of the others)
            if first >= hi - lo:
                continue
            acts = cache[h][first:]
            if skip_first:
                acts = acts[:, 1:]
            pending[h].append(acts.reshape(-1, d_in).to(getattr(torch, dtype)))
            if sum(len(p) for p in pending[h]) >= shard_tokens or hi == len(tokens):
                stores[h].write(torch.cat(pending[h]), contexts_done=hi)
                pending[h] = []
        bar.update((hi - lo) * tokens.shape[1])
    bar.close()
    for store in stores.values():
        assert store.n_tokens == len(tokens) * rows_per_context
        store.mark_complete()


def collect_corpus(store_dir: str | Path, *, model_name_or_path: str | None = None, text_paths=None,
                   hook_name: str = "blocks.3.hook_resid_pre", split: str = "train", n_tokens: int = 1_000_000,
                   context_size: int = 128, seed: int = 0, progress: bool = True,
                   corpus: str = "default") -> ActivationStore:
    """Load the model, take ``n_tokens`` of one side of the document split and collect them at ``hook_name``.

    What ``featgraph collect`` does, and ``featgraph train`` when its store does not exist yet. BOS is left out
    of the store, so each context of ``context_size`` gives ``context_size - 1`` rows.

    ``store_dir`` is checked before the model loads (:func:`featgraph.io.output.check_store_output`: never an
    input, never a folder holding anything but a store, writable). A store is written in place, shard by shard,
    so a killed run leaves either nothing (killed before the store was created) or a resumable store:
    ``meta.json`` records the contexts done, every shard and ``meta.json`` are renamed into place whole, and the
    next run with the same arguments continues after the last recorded shard (a shard renamed but not yet
    recorded is written again; a half-written shard's featgraph temporary is removed).
    """
    from featgraph.io.output import check_store_output

    if n_tokens < 1 or context_size < 2:
        raise ConfigError(f"n_tokens must be >= 1 and context_size >= 2, got {n_tokens} and {context_size}")
    if text_paths and corpus != "default":  # said before the model loads
        raise ConfigError(f"--text and --corpus {corpus} were both given; pass one of them")
    local = [p for p in [model_name_or_path] if p and os.path.exists(p)]  # a hub name is not a path
    check_store_output(store_dir, inputs=[*(text_paths or []), *local])
    if (Path(store_dir) / "meta.json").exists():
        ActivationStore(store_dir)  # a corrupt store to resume fails in one line, before the model loads
    model = load_model(model_name_or_path)
    paths = list(text_paths or []) or None
    tokens, provenance = corpus_contexts_with_provenance(
        model, paths, split=split, context_size=context_size, n_contexts=-(-n_tokens // (context_size - 1)),
        seed=seed, corpus=corpus)
    # provenance (document names, Python version, sha256 of the token ids) lets a re-collection prove it read
    # the same text, or fail naming what differs (text_sources.check_provenance)
    return collect_activations(model, tokens, hook_name, store_dir, progress=progress,
                               extra={"split": split, "text": paths or corpus, "seed": seed,
                                      "provenance": provenance})
