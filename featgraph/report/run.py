"""``featgraph report``'s library entry point: every adjacent pair of a ladder (as ``featgraph stitch``, one pass
over the activations per pair) and its Frankenstein SAE, on one self-contained HTML page.

Layout of ``cfg.out``: ``pairs/SMALL__LARGE/`` (a stitch folder per pair), ``frankenstein/`` (unless
``cfg.frankenstein`` is False), ``report.html`` and ``config.json``; with ``examples`` (a
:class:`featgraph.report.config.ReportExamplesConfig`) also ``families/`` (as ``featgraph families``),
``explorer.html`` (the family explorer) and ``split_families.png`` (the weekday-style panel, also on the page);
with ``explain`` instead, first ``examples/`` (:mod:`featgraph.report.explain`: explain over ``acts``), then the same.
The whole folder is replaced only when all of it succeeded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import polars as pl

from featgraph.config import ReportConfig
from featgraph.io.files import write_json
from featgraph.io.output import check_output, open_output
from featgraph.report.html import render_html, write_html
from featgraph.stitch.evaluator import POINT_COLUMNS
from featgraph.stitch.frankenstein import FrankensteinAnalysis, analyze_frankenstein, write_frankenstein_files
from featgraph.stitch.pair import PairAnalysis, analyze_pair, write_pair_files
from featgraph.stitch.run import load_ladder_saes, make_evaluator, open_acts, split_acts

PAGE_FILE = "report.html"
EXPLORER_FILE, PANEL_FILE, FAMILIES_DIR = "explorer.html", "split_families.png", "families"


@dataclasses.dataclass
class ReportResult:
    out: Path
    page: Path
    pairs: list[PairAnalysis]
    frankenstein: FrankensteinAnalysis | None
    config: dict[str, Any]


def run_report(cfg: ReportConfig, *, model: Any = None) -> ReportResult:
    """Analyse every adjacent pair and (unless ``cfg.frankenstein`` is False) the Frankenstein SAE; write the
    folder and ``report.html``. ``model``: an already loaded model for CE."""
    inputs = cfg.inputs()
    check_output(cfg.out, command=cfg.command, inputs=inputs)  # before loading anything
    examples = getattr(cfg, "examples", None)
    if examples is not None:
        from featgraph.explorer.data import read_examples

        read_examples(examples)  # a bad examples folder fails now, not after the stitching passes
    saes, names, sources = load_ladder_saes(cfg, inputs)
    explain = bool(getattr(cfg, "explain", False))
    if explain:
        from featgraph.report.explain import check_explain, explain_into

        check_explain(cfg, saes, names)  # a store explain cannot use fails now, not after the stitching passes
    if cfg.frankenstein:
        acts, store, train, _ = split_acts(cfg.acts, cfg.n_tokens, cfg.train_acts)
    else:
        (acts, store), train = open_acts(cfg.acts, cfg.n_tokens), None
    ev = make_evaluator(acts, store, cfg.ce_contexts, model if model is not None else cfg.model,
                        saes[0].cfg.hook_name)
    config = cfg.to_json(names=names, n_tokens_eval=len(acts))
    if sources is not None:  # SAEs named by release/hf://: their provenance, in the order of names
        config["sources"] = sources
    pairs = [
        analyze_pair(s, lg, acts, small_name=sn, large_name=ln, tau=cfg.tau, evaluator=ev, ce_points=cfg.ce_points,
                     batch_size=cfg.batch_size, progress=cfg.progress)
        for (s, sn), (lg, ln) in zip(zip(saes[:-1], names[:-1], strict=True), zip(saes[1:], names[1:], strict=True),
                                     strict=True)
    ]
    # every pair's plane shows the whole ladder; each SAE's point comes from the first pass that read it
    rows: dict[str, dict[str, Any]] = {}
    for a in pairs:
        for r in a.points.iter_rows(named=True):
            rows.setdefault(r["name"], r)
    ladder_points = pl.DataFrame([rows[n] for n in names if n in rows])
    for a in pairs:
        a.points = ladder_points
    frank = None
    if cfg.frankenstein:
        frank = analyze_frankenstein(saes, names, train_acts=train, evaluator=ev, tau=cfg.tau,
                                     n_tokens=cfg.retrain_tokens, lr=cfg.lr, batch_size=cfg.retrain_batch_size,
                                     seed=cfg.seed, progress=cfg.progress)
        ladder_table = frank.table.filter(pl.col("kind") == "ladder").drop("kind")
    elif len(saes) > 1:
        ladder_table = ladder_points.select(POINT_COLUMNS)
    else:
        ladder_table = pl.DataFrame([{c: r[c] for c in POINT_COLUMNS} for r in
                                     (ev.row(s, n) for s, n in zip(saes, names, strict=True))])
    neuronpedia: dict[str, str] = {}  # SAE name -> its Neuronpedia URL prefix, where it has a Neuronpedia id
    if sources is not None:
        from featgraph.hub import NEURONPEDIA  # the hub room is imported only when a name was used

        neuronpedia = {n: f"{NEURONPEDIA}/{src['neuronpedia']}/" for n, src in zip(names, sources, strict=True)
                       if src and src["neuronpedia"]}
    heading = cfg.title or f"featgraph stitching report: {', '.join(names)}"
    with open_output(cfg.out, command=cfg.command, inputs=inputs) as out_dir:
        write_json(out_dir / "config.json", config)
        for a in pairs:
            write_pair_files(a, out_dir / "pairs" / f"{a.small_name}__{a.large_name}", config)
        if frank is not None:
            write_frankenstein_files(frank, out_dir / "frankenstein", config)
        if explain:
            examples = str(explain_into(cfg, out_dir))
        explained = _write_explorer(cfg, names, out_dir, examples) if examples is not None else None
        write_html(render_html(heading, pairs, frank, ladder_table, config, neuronpedia, explained),
                   out_dir / PAGE_FILE)
    return ReportResult(Path(cfg.out), Path(cfg.out) / PAGE_FILE, pairs, frank, config)


def _write_explorer(cfg: ReportConfig, names: list[str], out_dir: Path, examples: str) -> dict[str, Any]:
    """``families/`` (the ladder's families, as ``featgraph families`` writes them), ``explorer.html`` and the
    weekday-style panel; returns what the page shows of them."""
    from featgraph.explorer.data import page_data
    from featgraph.explorer.page import render_page, write_page
    from featgraph.explorer.panel import largest_splits, split_panel_png
    from featgraph.families import run_families
    from featgraph.io.files import atomic_write

    # the user's --name list as given (in the order SAEs are found, as both commands read it), not ``names``,
    # which is already in width order
    run_families(list(cfg.saes), out_dir / FAMILIES_DIR, tau=cfg.tau, names=list(cfg.names) or None,
                 progress=cfg.progress)
    data = page_data(out_dir / FAMILIES_DIR, examples, title=f"featgraph explorer: {', '.join(names)}")
    data["config"] = cfg.to_json()  # the report's resolved config: the page has no folder of its own
    write_page(render_page(data), out_dir / EXPLORER_FILE)
    png = split_panel_png(data)
    atomic_write(out_dir / PANEL_FILE, lambda p: p.write_bytes(png))
    splits = largest_splits(data)
    return {"png": png, "page": EXPLORER_FILE, "families": [f"{names[r[0]]}:{r[1]}" for r in splits]}

