"""The library entry points of ``featgraph stitch`` and ``featgraph frankenstein``: config in, folder out.

Each one checks ``--out`` against every input before loading anything (:mod:`featgraph.io.output`; SAEs named by
release or ``hf://`` are checked again once resolved into the hub cache), loads the SAEs and opens the activation
store (streamed, never read whole), runs the analysis and writes the whole folder atomically with the config as
``config.json``. The CLI commands and ``examples/stitch_smollm2.py`` call these and nothing below them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from featgraph.activations.store import ActivationStore
from featgraph.config import FrankensteinConfig, StitchConfig
from featgraph.io.output import check_output, open_output
from featgraph.stitch.batches import StoreRows
from featgraph.stitch.evaluator import Evaluator
from featgraph.stitch.frankenstein import FrankensteinAnalysis, analyze_frankenstein, write_frankenstein_files
from featgraph.stitch.pair import PairAnalysis, analyze_pair, write_pair_files


@dataclasses.dataclass
class StitchResult:
    out: Path
    analysis: PairAnalysis
    config: dict[str, Any]


@dataclasses.dataclass
class FrankensteinResult:
    out: Path
    analysis: FrankensteinAnalysis
    config: dict[str, Any]


def open_acts(acts_dir: str, n_tokens: int | None = None) -> tuple[StoreRows, ActivationStore]:
    """(the first ``n_tokens`` rows of the store, streamed; the store)."""
    store = ActivationStore(acts_dir)
    return StoreRows(store, n_tokens), store


def make_evaluator(acts: Any, store: ActivationStore, ce_contexts: int, model: Any, hook_name: str | None) -> Evaluator:
    """An Evaluator; with ``ce_contexts > 0`` it loads the model (a name, or ``model`` already loaded) and uses the
    store's first contexts for CE."""
    if ce_contexts <= 0:
        return Evaluator(acts)
    if model is None or isinstance(model, str):
        from featgraph.activations.model import load_model

        model = load_model(model)
    tokens = store.tokens()[:ce_contexts]
    return Evaluator(acts, model=model, tokens=tokens, hook_name=hook_name or store.hook_name)


def split_acts(acts_dir: str, n_tokens: int | None, train_dir: str | None) -> tuple[Any, ActivationStore, Any, str]:
    """(eval acts, store, train acts, description): a separate train store, or the halves of ``acts_dir`` (the
    first evaluates, streamed; the second, a training set shuffled across, is read into memory)."""
    rows, store = open_acts(acts_dir, n_tokens)
    if train_dir is not None:
        return rows, store, ActivationStore(train_dir), f"decoder retrained on {train_dir}"
    half = len(rows) // 2
    note = f"first {half} tokens of --acts evaluate, the remaining train"
    return rows.head(half), store, rows.tail(half).read(), note


def load_ladder_saes(cfg: FrankensteinConfig, inputs: list[str]) -> tuple[list, list[str], list | None]:
    """The SAEs of a frankenstein or report config, sorted by width (ties by name), their names and their hub
    provenance in that order (:func:`featgraph.hub.sources_of`: None when every SAE is local); names resolved into
    the hub cache are inputs too, and ``--out`` is checked against them before any weights load."""
    from featgraph.hub import progress_bars, sources_of
    from featgraph.ladder import expand_sae_paths, load_saes, width_order

    with progress_bars(cfg.progress):
        found = expand_sae_paths(list(cfg.saes))
    inputs += [str(p) for p in found]
    check_output(cfg.out, command=cfg.command, inputs=inputs)
    saes, names = load_saes(found, list(cfg.names))
    order = width_order([s.n_features for s in saes], names)
    return [saes[i] for i in order], [names[i] for i in order], sources_of([found[i] for i in order])


def run_stitch(cfg: StitchConfig, *, model: Any = None) -> StitchResult:
    """``featgraph stitch``: every analysis of one pair (:func:`featgraph.stitch.pair.analyze_pair`) into
    ``cfg.out``. ``model``: an already loaded model for CE (else ``cfg.model`` is loaded when ``ce_contexts > 0``)."""
    from featgraph.hub import progress_bars, sources_of
    from featgraph.ladder import load_stitch_pair, resolve_stitch_pair

    inputs = cfg.inputs()
    check_output(cfg.out, command=cfg.command, inputs=inputs)  # before loading anything (the model, with CE)
    with progress_bars(cfg.progress):
        paths = resolve_stitch_pair(cfg.small, cfg.large)
    inputs += [str(p) for p in paths]
    check_output(cfg.out, command=cfg.command, inputs=inputs)
    saes, names = load_stitch_pair(*paths)  # exactly one SAE each, different, SMALL narrower than LARGE
    acts, store = open_acts(cfg.acts, cfg.n_tokens)
    ev = make_evaluator(acts, store, cfg.ce_contexts, model if model is not None else cfg.model,
                        saes[0].cfg.hook_name)
    a = analyze_pair(saes[0], saes[1], acts, small_name=names[0], large_name=names[1], tau=cfg.tau, evaluator=ev,
                     ce_points=cfg.ce_points, batch_size=cfg.batch_size, progress=cfg.progress)
    config = cfg.to_json(n_tokens=a.summary["n_tokens"])
    sources = sources_of(paths)  # SAEs named by release/hf://: release, repo, revision, commit, file hashes
    if sources is not None:  # local SAEs only: summary.json and config.json exactly as before
        a.summary["sources"] = dict(zip(("small", "large"), sources, strict=True))
        config["sources"] = sources
    with open_output(cfg.out, command=cfg.command, inputs=inputs) as tmp:
        write_pair_files(a, tmp, config)
    return StitchResult(Path(cfg.out), a, config)


def run_frankenstein(cfg: FrankensteinConfig, *, model: Any = None) -> FrankensteinResult:
    """``featgraph frankenstein``: assemble across the ladder, retrain decoders, compare, into ``cfg.out``."""
    inputs = cfg.inputs()
    check_output(cfg.out, command=cfg.command, inputs=inputs)  # before loading anything
    saes, names, sources = load_ladder_saes(cfg, inputs)
    acts, store, train, split = split_acts(cfg.acts, cfg.n_tokens, cfg.train_acts)
    ev = make_evaluator(acts, store, cfg.ce_contexts, model if model is not None else cfg.model,
                        saes[0].cfg.hook_name)
    a = analyze_frankenstein(saes, names, train_acts=train, evaluator=ev, tau=cfg.tau, n_tokens=cfg.retrain_tokens,
                             lr=cfg.lr, batch_size=cfg.retrain_batch_size, seed=cfg.seed, progress=cfg.progress)
    config = cfg.to_json(names=names, n_tokens_eval=len(acts), split=split)
    if sources is not None:  # SAEs named by release/hf://: their provenance, in the order of names
        config["sources"] = sources
    with open_output(cfg.out, command=cfg.command, inputs=inputs) as tmp:
        write_frankenstein_files(a, tmp, config)
    return FrankensteinResult(Path(cfg.out), a, config)
