"""``featgraph compare A B``: the library entry point, config in, folder out.

``--out`` is checked against every input (both SAEs, the activation store, the examples folder; SAEs named by
release or ``hf://`` again once resolved into the hub cache) before anything is loaded; the whole folder is written
atomically (:func:`featgraph.io.output.open_output`). Outputs: ``features.parquet``, ``pairs.parquet``,
``edges.parquet``, ``families.parquet`` (:mod:`featgraph.compare.tables`), ``summary.json`` (kind, resolved config,
both SAEs with their fingerprints, the store's identity, the headline numbers of
:meth:`~featgraph.compare.analysis.CompareAnalysis.summary`), ``config.json``, ``graph.graphml`` and ``graph.json``
(:mod:`featgraph.compare.graph`), ``max_cos_hist.png``, ``matched_cos_hist.png`` and, with activations,
``decoder_vs_activation.png`` (the figures unless ``plots`` is False). No timestamps anywhere: two runs on the same
inputs give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import polars as pl

from featgraph.compare.analysis import CompareAnalysis, add_activations, compare_units
from featgraph.compare.config import CompareConfig
from featgraph.errors import ConfigError, ShapeMismatchError
from featgraph.io.output import check_output, open_output

log = logging.getLogger(__name__)

SUMMARY_KIND = "featgraph compare"
TABLES = ("features", "pairs", "edges", "families")
FIGURES = ("max_cos_hist.png", "matched_cos_hist.png")
SCATTER = "decoder_vs_activation.png"


@dataclasses.dataclass
class CompareResult:
    """What a compare run computed, as written to ``out``."""

    out: Path
    analysis: CompareAnalysis
    tables: dict[str, pl.DataFrame]  # features, pairs, edges, families
    summary: dict[str, Any]
    graph: nx.Graph
    files: list[str]


def resolve_one(role: str, raw: str) -> Path:
    """One SAE as a local path: a path that is itself an SAE stays; a name resolves into the hub cache and must
    name exactly one SAE; a folder of several SAEs is refused naming it."""
    from featgraph.formats import detect_format
    from featgraph.ladder import expand_sae_paths

    p = Path(raw)
    if p.exists() and detect_format(p, missing_ok=True) is not None:
        return p
    found = expand_sae_paths([raw])  # raises the precise "no such file" / "not an SAE" error
    if p.exists():
        raise ConfigError(f"{role} {raw} is a folder of {len(found)} SAE(s), not an SAE; compare takes exactly one "
                          "SAE as A and one as B")
    if len(found) != 1:
        raise ConfigError(f"{role} {raw} names {len(found)} SAEs; compare takes exactly one SAE as A and one as B")
    return found[0]


def load_labels(examples: str, names: tuple[str, str]) -> tuple[dict[int, str], dict[int, str]]:
    """(A's, B's) feature -> label from a ``featgraph explain`` folder; at least one SAE must be in it."""
    from featgraph.explain.labels import read_labels

    labels = read_labels(examples)
    if not any(n in labels for n in names):
        raise ConfigError(f"--examples {examples}: holds no labels for {names[0]!r} or {names[1]!r} (it has "
                          f"{sorted(labels)[:10]}); explain these SAEs, or pass --name-a/--name-b")
    return labels.get(names[0], {}), labels.get(names[1], {})


def run_compare(cfg: CompareConfig) -> CompareResult:
    """Compare SAEs ``cfg.a`` and ``cfg.b`` and write everything into ``cfg.out`` (see the module docstring)."""
    from featgraph.formats import load_decoder
    from featgraph.hub import progress_bars, sources_of
    from featgraph.ladder import LadderEntry, check_distinct_saes, default_names
    from featgraph.matching import normalize_rows

    inputs = cfg.inputs()
    check_output(cfg.out, command=cfg.command, inputs=inputs)  # a bad --out fails before any loading
    with progress_bars(cfg.progress):
        paths = [resolve_one("A", cfg.a), resolve_one("B", cfg.b)]
    inputs += [str(p) for p in paths]
    check_output(cfg.out, command=cfg.command, inputs=inputs)
    check_distinct_saes(paths)
    defaults = default_names(paths)
    names = (cfg.name_a or defaults[0], cfg.name_b or defaults[1])
    if names[0] == names[1]:
        raise ConfigError(f"A {paths[0]} and B {paths[1]} are both named {names[0]!r}; pass --name-a/--name-b")
    entries = [LadderEntry(n, p, *load_decoder(p)) for n, p in zip(names, paths, strict=True)]
    ea, eb = entries
    if ea.d_in != eb.d_in:
        raise ShapeMismatchError(f"d_in differs: A {ea.path} has d_in={ea.d_in}, B {eb.path} has d_in={eb.d_in}")
    if ea.W_dec.shape == eb.W_dec.shape and np.array_equal(ea.W_dec, eb.W_dec):
        raise ConfigError(f"A {ea.path} and B {eb.path} have identical decoders: the same SAE given twice")
    labels = load_labels(cfg.examples, names) if cfg.examples is not None else None
    store = None
    if cfg.acts is not None:  # opened and checked before the decoder work, so a bad store fails at once
        from featgraph.activations.store import ActivationStore

        store = ActivationStore(cfg.acts)
        store.check_d_in(ea.d_in, f"SAE A {ea.path}")
    (a_unit, norms_a), (b_unit, norms_b) = normalize_rows(ea.W_dec), normalize_rows(eb.W_dec)
    an = compare_units(a_unit, b_unit, names=names, norms=(norms_a, norms_b), tau=cfg.tau, method=cfg.method,
                       device=cfg.device, progress=cfg.progress)
    store_info = None
    if store is not None:
        store_info = _activations(cfg, store, an, paths, a_unit, b_unit, ea.d_in)

    from featgraph.compare import tables as T
    from featgraph.compare.graph import compare_graph

    tables = {"features": T.features_table(an, labels), "pairs": T.pairs_table(an), "edges": T.edges_table(an),
              "families": T.families_table(an)}
    graph = compare_graph(tables["features"], tables["pairs"], tables["edges"], tau=cfg.tau, names=names)
    config = cfg.to_json(names=list(names), d_in=ea.d_in,
                         n_tokens_used=store_info["n_tokens_used"] if store_info else None)
    sources = sources_of(paths)
    if sources is not None:  # SAEs named by release/hf://: their provenance (local-only runs unchanged)
        config["sources"] = sources
    summary = {
        "kind": SUMMARY_KIND,
        "config": config,
        "saes": [{"role": r, "name": e.name, "path": str(e.path), "format": e.format, "width": e.width,
                  "d_in": e.d_in, "fingerprint": e.fingerprint()} for r, e in zip("AB", entries, strict=True)],
        "store": store_info,
        "results": an.summary(),
    }
    files = _write(cfg, inputs, an, tables, graph, summary)
    log.info("wrote %s to %s", ", ".join(files), cfg.out)
    return CompareResult(Path(cfg.out), an, tables, summary, graph, files)


def _activations(cfg: CompareConfig, store: Any, an: CompareAnalysis, paths: list[Path], a_unit: np.ndarray,
                 b_unit: np.ndarray, d_in: int) -> dict[str, Any]:
    """One pass over the store (first ``cfg.n_tokens`` tokens), both SAEs encoding each batch."""
    from tqdm.auto import tqdm

    from featgraph.activations.batches import StoreRows, iter_acts
    from featgraph.formats import load_sae

    rows = StoreRows(store, cfg.n_tokens)
    sae_a, sae_b = load_sae(paths[0]), load_sae(paths[1])
    for sae, path in ((sae_a, paths[0]), (sae_b, paths[1])):  # warn only: hook names vary across libraries
        if sae.cfg.hook_name and sae.cfg.hook_name != store.hook_name:
            log.warning("%s was trained at %s but the store %s holds %s", path, sae.cfg.hook_name, store.folder,
                        store.hook_name)
    batches = tqdm(iter_acts(rows, cfg.batch_size, d_in), total=math.ceil(len(rows) / cfg.batch_size),
                   disable=not cfg.progress, desc="activation similarity", unit="batch")
    add_activations(an, batches, sae_a, sae_b, a_unit, b_unit, act_threshold=cfg.act_threshold)
    meta = store.meta
    return {"path": str(Path(cfg.acts).resolve()), "model": meta.get("model"), "hook_name": store.hook_name,
            "n_tokens": store.n_tokens, "n_tokens_used": len(rows), "tokens_sha256": meta.get("tokens_sha256"),
            "split": (meta.get("extra") or {}).get("split")}


def _write(cfg: CompareConfig, inputs: list, an: CompareAnalysis, tables: dict[str, pl.DataFrame],
           graph: nx.Graph, summary: dict[str, Any]) -> list[str]:
    from featgraph.compare import figures
    from featgraph.compare.graph import graph_json
    from featgraph.graphml import write_graphml
    from featgraph.io.files import write_json
    from featgraph.tables import write_parquet

    files = [f"{t}.parquet" for t in TABLES] + ["summary.json", "config.json", "graph.graphml", "graph.json"]
    figs = {}
    if cfg.plots:
        figs = {FIGURES[0]: figures.max_cos_figure(an), FIGURES[1]: figures.matched_cos_figure(an)}
        if an.sim is not None:
            figs[SCATTER] = figures.decoder_vs_activation_figure(an)
    with open_output(cfg.out, command=cfg.command, inputs=inputs) as tmp:
        for name, df in tables.items():
            write_parquet(df, tmp / f"{name}.parquet")
        write_json(tmp / "summary.json", summary)
        write_json(tmp / "config.json", summary["config"])
        write_graphml(graph, tmp / "graph.graphml")
        write_json(tmp / "graph.json", graph_json(graph))
        for name, fig in figs.items():
            # no "Software" metadata: the PNG bytes then depend on the data, not the matplotlib version
            fig.savefig(tmp / name, dpi=110, metadata={"Software": None})
            files.append(name)
    return files


# -- terminal output -------------------------------------------------------------------------------------------
def _f(v: Any, spec: str = ".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def format_summary(summary: dict[str, Any]) -> str:
    """The headline numbers of a compare run's ``summary.json``."""
    r = summary["results"]
    a, b = (s["name"] for s in summary["saes"])
    asg, ab, ba = r["assignment"], r["a_to_b"], r["b_to_a"]
    kinds = ", ".join(f"{k} {n}" for k, n in r["families_by_kind"].items())
    lines = [
        f"{a} ({r['n_a']} features) vs {b} ({r['n_b']} features), tau {r['tau']:g}",
        f"  {a} -> {b}: {ab['shared']} shared, {ab['lost']} lost ({_pct(ab['lost_share'])}), "
        f"mean max cos {_f(ab['mean_max_cos'])}",
        f"  {b} -> {a}: {ba['shared']} shared, {ba['novel']} novel ({_pct(ba['novel_share'])}), "
        f"mean max cos {_f(ba['mean_max_cos'])}",
        f"  one-to-one: {asg['pairs']} pairs, PW-MCC {_f(asg['pw_mcc'])}, shared share {_pct(asg['shared_share'])} "
        f"({asg['shared_pairs']} pairs > tau), certified gap <= {_f(asg['gap_bound'], '.2g')}",
        f"  families: {r['families']} ({kinds}) over {r['edges']} edges",
    ]
    act = r.get("activations")
    if act:
        sp, sa = act["spearman_decoder_cos_vs"], act["spearman_assigned_pairs"]
        m = act["assigned_pairs_mean"]
        lines += [
            f"  activations ({act['n_tokens']} tokens): assigned pairs mean Jaccard {_f(m['jaccard'])}, Pearson "
            f"{_f(m['pearson'])}, masked cos {_f(m['masked_cos'])}",
            f"  decoder cos vs activation, Spearman over the assigned pairs: Jaccard "
            f"{_f(sa['jaccard'])}, Pearson {_f(sa['pearson'])}, masked cos {_f(sa['masked_cos'])}",
            f"  decoder cos vs activation, Spearman over all {act['coactive_pairs']} co-active pairs: Jaccard "
            f"{_f(sp['jaccard'])}, Pearson {_f(sp['pearson'])}, masked cos {_f(sp['masked_cos'])}",
            f"  decoder edges (cos > tau) vs activation edges ({act['act_metric']} > {act['act_threshold']:g}): "
            f"precision {_f(act['precision'])}, recall {_f(act['recall'])}",
        ]
    return "\n".join(lines)
