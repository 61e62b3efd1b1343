"""The library entry point of each command that has no room of its own: ``run_index``, ``run_eval``,
``run_collect``, ``run_train``. (``run_families`` is :mod:`featgraph.families`, ``run_stitch`` /
``run_frankenstein`` :mod:`featgraph.stitch.run`, ``run_report`` :mod:`featgraph.report.run`.)

Each takes its command's config from :mod:`featgraph.config` (validated once), checks ``--out`` before anything
slow loads, does the work through the rooms, writes its folder atomically with ``config.json`` beside the result,
and returns what the CLI prints. ``featgraph.cli`` only parses options into the config and prints; the examples call
these same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featgraph.config import CollectConfig, EvalConfig, IndexConfig, TrainRunConfig

DEFAULT_MODEL_NAME = "smollm2-135m"  # what config.json records when no --model was given


def run_index(cfg: IndexConfig) -> list[Any]:
    """One :class:`~featgraph.index.SimilarityIndex` per SAE under ``cfg.out`` (+ manifest.json, config.json)."""
    import featgraph
    from featgraph.hub import progress_bars, sources_of
    from featgraph.index import build_ladder_index, resolve_index_device
    from featgraph.io.output import check_output
    from featgraph.ladder import load_ladder

    check_output(cfg.out, command="index", inputs=list(cfg.saes))  # before loading any SAE
    resolved = resolve_index_device(cfg.device)
    names = list(cfg.names) if cfg.names else None
    with progress_bars(cfg.progress):  # names download with bars unless --quiet
        ladder = load_ladder(list(cfg.saes), names, format=cfg.format, distinct_widths=False)  # each SAE alone
    # build_ladder_index checks --out against the loaded paths too: hub-cache folders of names included
    config = {
        "command": "index",
        "featgraph_version": featgraph.__version__,
        "saes": [str(e.path) for e in ladder],
        "names": ladder.names,
        "format": cfg.format,
        "device": resolved,
    }
    sources = sources_of([e.path for e in ladder])  # SAEs named by release/hf://: release, repo, commit, hashes
    if sources:
        config["sources"] = sources
    return build_ladder_index(ladder, cfg.out, device=resolved, progress=cfg.progress, config=config)


@dataclass
class EvalResult:
    table: Any  #: polars frame, one row per SAE (the post's metrics + health columns)
    markdown: str  #: metrics.md
    warnings: list[str]  #: one line per SAE that looks under-trained, naming the threshold


def run_eval(cfg: EvalConfig) -> EvalResult:
    """The post's metrics for ``cfg.saes`` on held-out text: ``metrics.parquet``, ``metrics.md``, ``config.json``."""
    from featgraph.activations import activations_in_memory, load_model
    from featgraph.activations.text import corpus_contexts_with_provenance
    from featgraph.errors import ConfigError
    from featgraph.formats import load_sae
    from featgraph.hub import progress_bars, sources_of
    from featgraph.io.files import write_json
    from featgraph.io.output import check_output, open_output
    from featgraph.ladder import check_loaded_saes, default_names, expand_sae_paths
    from featgraph.tables import write_parquet
    from featgraph.training.evaluate import evaluate_ladder, metrics_markdown

    inputs = cfg.inputs()
    check_output(cfg.out, command="eval", inputs=inputs)  # before loading the model: a bad --out fails in a second
    with progress_bars(cfg.progress):  # names download with bars unless --quiet
        paths = expand_sae_paths(cfg.saes)
    inputs += [str(p) for p in paths]  # names resolve to hub-cache folders: --out may not lie there either
    check_output(cfg.out, command="eval", inputs=inputs)
    loaded = [load_sae(p) for p in paths]
    check_loaded_saes(loaded, paths, distinct_widths=False)  # one d_in; a copy of an SAE is refused, seeds are not
    hooks = {cfg.hook or s.cfg.hook_name for s in loaded}
    if len(hooks) != 1 or None in hooks:
        raise ConfigError(f"the SAEs name hooks {sorted(map(str, hooks))}; pass one --hook")
    hook = hooks.pop()
    if cfg.text and cfg.corpus != "default":  # said before the 20-30 s model load, as collect does
        raise ConfigError(f"--text and --corpus {cfg.corpus} were both given; pass one of them")
    model = load_model(cfg.model)
    n_ctx = max(1, -(-cfg.n_tokens // cfg.context_size))
    # the provenance (corpus, document names, Python version, sha256 of the token ids) is what stores record:
    # an eval can be matched to the store it should agree with, or shown to have read other text
    tokens, provenance = corpus_contexts_with_provenance(
        model, list(cfg.text) or None, split="heldout", context_size=cfg.context_size, n_contexts=n_ctx,
        seed=cfg.seed, corpus=cfg.corpus)
    acts = activations_in_memory(model, tokens, hook, batch_size=cfg.batch_size, progress=cfg.progress)
    table = evaluate_ladder(
        loaded, acts=acts, model=model if cfg.ce else None, tokens=tokens if cfg.ce else None, hook_name=hook,
        names=default_names(paths), model_batch_size=cfg.batch_size,
        progress=cfg.progress,
    )
    note = (
        f"held-out text ({f'{cfg.corpus} corpus' if not cfg.text else ', '.join(cfg.text)}; token ids sha256 "
        f"{str(provenance.get('token_ids_sha256'))[:16]}): {len(tokens)} "
        f"contexts of {cfg.context_size} tokens; {acts.shape[0]} activations (BOS left out)"
    )
    md = metrics_markdown(table, note=note)
    with open_output(cfg.out, command="eval", inputs=inputs) as out_dir:
        write_parquet(table, out_dir / "metrics.parquet")  # the one Parquet writer (fixed settings)
        (out_dir / "metrics.md").write_text(md, encoding="utf-8")
        write_json(out_dir / "config.json", {
            "saes": [str(p) for p in paths],
            "n_tokens": cfg.n_tokens,
            "model": cfg.model or DEFAULT_MODEL_NAME,
            "text": list(cfg.text) or cfg.corpus,  # "default" as before; the corpus name when one was picked
            "corpus": "files" if cfg.text else cfg.corpus,
            "provenance": provenance,
            "hook_name": hook,
            "context_size": cfg.context_size,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "ce": cfg.ce,
            "n_contexts": len(tokens),
            **({"sources": sources} if (sources := sources_of(paths)) else {}),  # named SAEs: their provenance
        })
    # thresholds are named in the reason (featgraph.training.health)
    warnings = [f"{row['name']} looks under-trained: {row['undertrained']}"
                for row in table.iter_rows(named=True) if row["undertrained"]]
    return EvalResult(table, md, warnings)


def run_collect(cfg: CollectConfig) -> Any:
    """Collect ``cfg.n_tokens`` activations at ``cfg.hook`` into the store ``cfg.out`` (a killed run resumes), then
    write the resolved config beside it as ``config.json`` (atomically; a resumed run rewrites it)."""
    from featgraph.activations import collect_corpus
    from featgraph.io.files import write_json

    store = collect_corpus(cfg.out, model_name_or_path=cfg.model, text_paths=cfg.text, hook_name=cfg.hook,
                           split=cfg.split, n_tokens=cfg.n_tokens, context_size=cfg.context_size, seed=cfg.seed,
                           progress=cfg.progress, corpus=cfg.corpus)
    # written only once the store is complete: the store is written in place, so no folder rename carries it
    write_json(Path(cfg.out) / "config.json", cfg.to_json())
    return store


def run_train(cfg: TrainRunConfig) -> list[Path]:
    """Collect the training store when it is missing or unfinished, then train one SAE per width into ``cfg.out``
    (health.json beside each SAE, config.json in ``cfg.out``); returns the SAE folders."""
    import torch

    from featgraph.activations.store import ActivationStore
    from featgraph.config import local_paths
    from featgraph.io.output import check_output
    from featgraph.training import TrainConfig, train_ladder

    # every output checked before collecting or training (train_ladder checks again with the store it gets)
    inputs = [cfg.acts, cfg.eval_acts, *cfg.text, *local_paths(cfg.model)]
    check_output(cfg.out, command="train", inputs=[*inputs, cfg.saelens])
    if cfg.saelens is not None:
        check_output(cfg.saelens, command="train-saelens", inputs=[*inputs, cfg.out], label="--saelens")
    hyper = cfg.train if cfg.train is not None else TrainConfig()
    store_path = Path(cfg.acts)
    if not (store_path / "meta.json").exists() or not ActivationStore(store_path).meta["complete"]:
        from featgraph.activations import collect_corpus

        collect_corpus(store_path, model_name_or_path=cfg.model, text_paths=cfg.text, hook_name=cfg.hook,
                       split="train", n_tokens=cfg.collect_tokens, context_size=cfg.context_size, seed=cfg.seed,
                       progress=cfg.progress, corpus=cfg.corpus)
    store = ActivationStore(store_path)
    config = {
        "command": "train",
        "widths": list(cfg.widths),
        "acts": str(store_path),
        "hook_name": store.hook_name,
        "model": store.meta["model"],
        "fp16": cfg.fp16,
        "saelens": cfg.saelens,
        "train": hyper.__dict__,
        "store_tokens": store.n_tokens,
    }
    return train_ladder(
        store, list(cfg.widths), hyper, cfg.out, name_prefix=cfg.name_prefix,
        save_dtype=torch.float16 if cfg.fp16 else None, saelens_dir=cfg.saelens, progress=cfg.progress,
        # without a held-out store: the first 65,536 training tokens (seen in training; said in health.json)
        health_acts=ActivationStore(cfg.eval_acts) if cfg.eval_acts else store.read(65_536),
        health_note=(f"held-out store {cfg.eval_acts}" if cfg.eval_acts
                     else f"first 65,536 tokens of the training store {store_path} (seen in training)"),
        config=config,
    )
