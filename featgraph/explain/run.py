"""``featgraph explain``'s library entry point: config in, folder out; and :func:`explain_sae`, the one pass.

:func:`explain_sae` reads the store once, in order, in batches of whole contexts (a context never straddles two
batches, so each one's max position and window are found inside one batch). Each batch is encoded once; from that
one ``[rows, F]`` activation tensor, :class:`~featgraph.explain.topk.TopContexts` keeps every feature's top-k
distinct contexts with their windows and :class:`~featgraph.explain.stats.TokenStats` the sparse (feature, token)
counts and sums. Memory: one batch's activations plus ``F * k * window`` floats plus the distinct (feature, token)
pairs, never tokens x features for the store.

:func:`run_explain` checks ``--out`` against every input before loading anything, refuses a store whose rows cannot
be mapped back to token contexts (no ``tokens.npy``, rows that are not whole contexts) or whose d_in is not the
SAEs', loads the tokenizer before the pass (a missing one fails in seconds), runs the pass per SAE (width order,
ties by name, as a ladder) and writes feature_stats.parquet, examples.parquet, summary.json and config.json
atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from featgraph.activations.store import META_NAME, TOKENS_NAME, ActivationStore
from featgraph.errors import ConfigError, SaeFormatError
from featgraph.explain.config import ExplainConfig
from featgraph.explain.labels import LABEL_TOKENS, MAX_TOKEN_CHARS
from featgraph.explain.stats import FeatureStats, TokenStats
from featgraph.explain.tables import examples_table, stats_table
from featgraph.explain.tokens import Decoder, store_decoder
from featgraph.explain.topk import TopContexts, TopExamples
from featgraph.io.arrays import read_npy
from featgraph.io.files import write_json_into
from featgraph.io.output import check_output, open_output

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StoreLayout:
    """How a store's rows map back to its token contexts: row ``r`` is token ``first + r % rows_per_context`` of
    context ``r // rows_per_context``."""

    first: int  #: 1 when BOS was left out of the store, else 0
    rows_per_context: int
    n_contexts: int  #: contexts whose rows the store holds
    tokens: np.ndarray  #: int32 ``[n_contexts_in_tokens_npy, context_size]``, memory-mapped


def store_layout(store: ActivationStore) -> StoreLayout:
    meta = store.meta
    first = int(meta["exclude_bos"])
    rpc = meta["context_size"] - first
    n_ctx, rest = divmod(store.n_tokens, rpc) if rpc > 0 else (0, store.n_tokens)
    if rpc < 1 or rest or n_ctx > meta["n_contexts"]:
        raise SaeFormatError(
            f"{store.folder}: its {store.n_tokens} rows are not whole contexts of {rpc} rows (context_size "
            f"{meta['context_size']}, exclude_bos {meta['exclude_bos']}, {meta['n_contexts']} contexts in "
            f"{TOKENS_NAME}): explain cannot map rows back to tokens")
    tokens = read_npy(store.folder / TOKENS_NAME, shape=(meta["n_contexts"], meta["context_size"]),
                      dtype=np.int32, mmap=True)
    if n_ctx and int(tokens[:n_ctx].min()) < 0:  # one streaming scan of int32 ids; a negative id names no token
        bad = np.argwhere(np.asarray(tokens[:n_ctx]) < 0)[0]
        raise SaeFormatError(f"{store.folder / TOKENS_NAME}: negative token id {int(tokens[bad[0], bad[1]])} at "
                             f"context {int(bad[0])}, position {int(bad[1])}")
    return StoreLayout(first, rpc, n_ctx, tokens)


def open_store(folder: str | os.PathLike[str], n_tokens: int | None = None) -> tuple[ActivationStore, StoreLayout]:
    """The store and its layout; a store without token ids is refused naming it (checked first: the store reader
    would only say that a file is missing). ``n_tokens``: the layout covers only the contexts holding the first
    ``n_tokens`` rows (whole contexts: ``ceil(n_tokens / rows_per_context)``, at most the store's)."""
    folder = Path(folder)
    if os.path.lexists(folder / META_NAME) and not os.path.lexists(folder / TOKENS_NAME):
        raise SaeFormatError(f"{folder}: the store has no token ids ({TOKENS_NAME}); explain needs the contexts "
                             "the activations came from (featgraph collect stores them)")
    store = ActivationStore(folder)
    layout = store_layout(store)
    if n_tokens is not None:
        layout = dataclasses.replace(layout, n_contexts=min(layout.n_contexts, -(-n_tokens // layout.rows_per_context)))
    return store, layout


def check_explainable(store: ActivationStore, layout: StoreLayout, saes: Sequence[tuple[int, str]],
                      tokenizer: str | None) -> str:
    """Refuse, in seconds and before any slow work, a store explain cannot use for ``saes`` (``(d_in, what)``
    pairs, ``what`` naming the SAE in the message): a d_in other than the store's, no activations, or a tokenizer
    that does not load. Returns the tokenizer's name (``--tokenizer`` or the store's model). Used by ``report
    --explain`` and ``atlas --acts`` before their matching and stitching passes."""
    for d_in, what in saes:
        store.check_d_in(d_in, what)
    if layout.n_contexts == 0:
        raise ConfigError(f"{store.folder}: the store holds no activations")
    return store_decoder(tokenizer, store.meta["model"], str(store.folder))[1]


@dataclasses.dataclass
class SaeExplanation:
    """One SAE's pass: its top-k examples, token statistics, per-feature max and the tokens seen."""

    top: TopExamples
    stats: FeatureStats
    max_act: np.ndarray
    n_tokens: int


@torch.no_grad()
def explain_sae(sae: Any, store: ActivationStore, layout: StoreLayout, *, k: int = 20, window: int = 16,
                top_tokens: int = 10, batch_size: int = 4096, progress: bool = False,
                desc: str = "explain") -> SaeExplanation:
    """One streaming encode pass of ``sae`` over ``store`` (see the module docstring)."""
    rpc, F = layout.rows_per_context, sae.n_features
    per_batch = max(1, batch_size // rpc)  # whole contexts; at least one even when batch_size < a context
    top = TopContexts(F, k, rpc, before=window, after=window // 4)
    stats = TokenStats(F)
    dtype = sae.W_enc.dtype
    bar = tqdm(total=layout.n_contexts * rpc, unit="tok", disable=not progress, desc=desc)
    for c0 in range(0, layout.n_contexts, per_batch):
        n = min(per_batch, layout.n_contexts - c0)
        x = store.read(n * rpc, c0 * rpc)
        acts = sae.encode(x.to(dtype)).float().contiguous().numpy()
        top.update(acts, c0)
        stats.update(acts, layout.tokens[c0:c0 + n, layout.first:].reshape(-1))
        bar.update(n * rpc)
    bar.close()
    result = top.result()
    max_act = np.where(result.values[:, 0] > 0, result.values[:, 0], 0).astype(np.float32)
    return SaeExplanation(result, stats.result(top_tokens), max_act, layout.n_contexts * rpc)


@dataclasses.dataclass
class ExplainResult:
    out: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    stats: pl.DataFrame  #: feature_stats.parquet's rows
    examples: pl.DataFrame  #: examples.parquet's rows


class _Strings:
    """Token id -> string through a :data:`Decoder`, each id decoded once for the whole run."""

    def __init__(self, decode: Decoder):
        self.decode, self.cache = decode, {}

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        uniq, inverse = np.unique(ids, return_inverse=True)
        new = [int(i) for i in uniq.tolist() if int(i) not in self.cache]
        if new:
            self.cache.update(self.decode(new))
        table = np.array([self.cache[int(i)] for i in uniq.tolist()] or [""], dtype=object)
        return table[inverse.reshape(-1)] if ids.size else np.array([], dtype=object)


def load_explain_saes(cfg: ExplainConfig, inputs: list[str]) -> tuple[list, list[str], list[Path]]:
    """The SAEs in ladder order (width, then name), their names and paths; ``--out`` checked against the resolved
    paths (hub-cache folders included) before any weights load."""
    from featgraph.hub import progress_bars
    from featgraph.ladder import expand_sae_paths, load_saes, width_order

    with progress_bars(cfg.progress):
        found = expand_sae_paths(list(cfg.saes))
    inputs += [str(p) for p in found]
    check_output(cfg.out, command=cfg.command, inputs=inputs)
    saes, names = load_saes(found, list(cfg.names), distinct_widths=False)  # a seed control has its ladder's width
    order = width_order([s.n_features for s in saes], names)
    return [saes[i] for i in order], [names[i] for i in order], [found[i] for i in order]


def run_explain(cfg: ExplainConfig, *, decode: Decoder | None = None) -> ExplainResult:
    """``featgraph explain``: every feature of every SAE explained from one pass each over ``cfg.acts``, written to
    ``cfg.out``. ``decode``: token ids -> strings (default: the tokenizer ``cfg.tokenizer`` names, or the store's
    model's)."""
    from featgraph.hub import sources_of
    from featgraph.ladder import LadderEntry

    inputs = cfg.inputs()
    check_output(cfg.out, command=cfg.command, inputs=inputs)  # before loading anything
    store, layout = open_store(cfg.acts, cfg.n_tokens)
    saes, names, paths = load_explain_saes(cfg, inputs)
    for sae, path in zip(saes, paths, strict=True):
        store.check_d_in(sae.d_in, f"the SAE {path}")
    if layout.n_contexts == 0:
        raise ConfigError(f"{store.folder}: the store holds no activations")
    for sae, path in zip(saes, paths, strict=True):
        if sae.cfg.hook_name and sae.cfg.hook_name != store.hook_name:
            log.warning("%s was trained at %s but the store %s holds %s", path, sae.cfg.hook_name, store.folder,
                        store.hook_name)
    tokenizer = "custom"
    if decode is None:
        decode, tokenizer = store_decoder(cfg.tokenizer, store.meta["model"], str(store.folder))
    strings = _Strings(decode)
    stats_parts, example_parts, per_sae = [], [], []
    for sae, name, path in zip(saes, names, paths, strict=True):
        ex = explain_sae(sae, store, layout, k=cfg.k, window=cfg.window, top_tokens=cfg.top_tokens,
                         batch_size=cfg.batch_size, progress=cfg.progress, desc=f"explain {name}")
        stats_parts.append(stats_table(name, ex.n_tokens, ex.stats, ex.max_act, strings))
        example_parts.append(examples_table(name, ex.top, layout.tokens, layout.first, strings))
        entry = LadderEntry(name, path, "", sae.W_dec.detach().float().cpu().numpy())
        per_sae.append({"name": name, "path": str(Path(path).resolve()), "width": sae.n_features,
                        "architecture": sae.cfg.architecture, "hook_name": sae.cfg.hook_name,
                        "fingerprint": entry.fingerprint(), "n_fired": int((ex.stats.n_active > 0).sum()),
                        "n_examples": int(example_parts[-1].height)})
    stats_df, examples_df = pl.concat(stats_parts), pl.concat(example_parts)
    n_tokens = layout.n_contexts * layout.rows_per_context
    summary = {
        "saes": per_sae,
        "store": {"folder": str(store.folder.resolve()), "model": store.meta["model"], "hook_name": store.hook_name,
                  "tokens_sha256": store.meta["tokens_sha256"], "n_tokens": n_tokens,
                  "n_tokens_in_store": store.n_tokens, "n_contexts": layout.n_contexts,
                  "context_size": store.meta["context_size"], "exclude_bos": bool(layout.first)},
        "k": cfg.k, "window": {"before": cfg.window, "after": cfg.window // 4}, "top_tokens": cfg.top_tokens,
        "tokenizer": tokenizer,
        "label_rule": f"top {LABEL_TOKENS} tokens by summed activation, stripped, escaped, cut to "
                      f"{MAX_TOKEN_CHARS} chars, repeats dropped, joined by '|' (featgraph.explain.labels)",
    }
    # n_tokens: the rows read, whole contexts; as a limit it reproduces this run (the limit given: n_tokens_limit)
    config = cfg.to_json(n_tokens=n_tokens, n_tokens_limit=cfg.n_tokens, tokenizer_used=tokenizer)
    summary["config"] = config
    sources = sources_of(paths)
    if sources is not None:  # SAEs named by release/hf://: their hub provenance, as every command records it
        summary["sources"] = config["sources"] = sources
    from featgraph.tables import write_parquet

    with open_output(cfg.out, command=cfg.command, inputs=inputs + [str(p) for p in paths]) as tmp:
        write_parquet(stats_df, tmp / "feature_stats.parquet")
        write_parquet(examples_df, tmp / "examples.parquet")
        write_json_into(tmp / "summary.json", summary)
        write_json_into(tmp / "config.json", config)
    return ExplainResult(Path(cfg.out), summary, config, stats_df, examples_df)
