"""``featgraph report``: one self-contained HTML page with every stitching figure and table for a ladder."""

from __future__ import annotations

from pathlib import Path

import click

from .cmd_frankenstein import retrain_options, split_acts, train_acts_option, with_options
from .cmd_stitch import (
    acts_option,
    ce_option,
    load_saes,
    make_evaluator,
    model_option,
    n_tokens_option,
    tau_option,
)
from .common import out_option, quiet_option


@click.command("report")
@click.argument("saes", nargs=-1, required=True, type=click.Path(exists=True))
@out_option
@acts_option
@n_tokens_option
@train_acts_option
@tau_option
@ce_option
@model_option
@with_options(retrain_options)
@click.option("--no-frankenstein", is_flag=True, help="Skip the Frankenstein section.")
@click.option("--ce-points", default=4, show_default=True, type=int, help="CE points on each interpolation path.")
@click.option("--title", default=None, help="Page title (default: the ladder's SAE names).")
@click.option("--name", "names", multiple=True, help="SAE names in the order found (default: folder names).")
@quiet_option
def report(
    saes: tuple[str, ...],
    out: str,
    acts_dir: str,
    n_tokens: int | None,
    train_dir: str | None,
    tau: float,
    ce_contexts: int,
    model_name: str | None,
    retrain_tokens: int,
    lr: float,
    retrain_batch_size: int,
    seed: int,
    no_frankenstein: bool,
    ce_points: int,
    title: str | None,
    names: tuple[str, ...],
    quiet: bool,
) -> None:
    """Analyse every adjacent pair of a ladder (as `featgraph stitch`) and its Frankenstein SAE; write
    report.html.

    Each pair's files go to --out/pairs/SMALL__LARGE/, Frankenstein's to --out/frankenstein/, and the page,
    readable offline (figures embedded), to --out/report.html.
    """
    from featgraph.cli.common import local_paths

    from featgraph.output_dir import check_output

    inputs = [*saes, acts_dir, train_dir, *local_paths(model_name)]
    check_output(out, command="report", inputs=inputs)  # before loading anything
    _report(out, inputs, saes, acts_dir, n_tokens, train_dir, tau, ce_contexts, model_name, retrain_tokens, lr,
            retrain_batch_size, seed, no_frankenstein, ce_points, title, names, quiet)


def _report(out, inputs, saes, acts_dir, n_tokens, train_dir, tau, ce_contexts, model_name, retrain_tokens, lr,
            retrain_batch_size, seed, no_frankenstein, ce_points, title, names, quiet) -> None:
    import polars as pl

    from featgraph.io_utils import write_json
    from featgraph.output_dir import open_output
    from featgraph.report import render_html, write_html
    from featgraph.stitch import (
        POINT_COLUMNS,
        analyze_frankenstein,
        analyze_pair,
        write_frankenstein_files,
        write_pair_files,
    )

    loaded, found = load_saes(saes, names)
    order = sorted(range(len(loaded)), key=lambda i: (loaded[i].n_features, found[i]))
    loaded, found = [loaded[i] for i in order], [found[i] for i in order]
    if no_frankenstein:
        from .cmd_stitch import open_acts

        acts, store = open_acts(acts_dir, n_tokens)
        train = None
    else:
        acts, store, train, _ = split_acts(acts_dir, n_tokens, train_dir)
    ev = make_evaluator(acts, store, ce_contexts, model_name, loaded[0].cfg.hook_name)
    config = {
        "command": "report",
        "saes": [str(Path(s).resolve()) for s in saes],
        "names": found,
        "acts": str(Path(acts_dir).resolve()),
        "n_tokens_eval": int(acts.shape[0]),
        "tau": tau,
        "ce_contexts": ce_contexts,
        "ce_points": ce_points,
        "model": model_name,
        "frankenstein": not no_frankenstein,
        "retrain_tokens": retrain_tokens,
        "lr": lr,
        "retrain_batch_size": retrain_batch_size,
        "seed": seed,
    }
    # one folder for the whole report (pairs, Frankenstein, page): replaced only when all of it succeeded
    with open_output(out, command="report", inputs=inputs) as out_dir:
        write_json(out_dir / "config.json", config)
        pairs = []
        for (s, sn), (lg, ln) in zip(
            zip(loaded[:-1], found[:-1], strict=False), zip(loaded[1:], found[1:], strict=False), strict=False
        ):
            a = analyze_pair(
                s,
                lg,
                acts,
                small_name=sn,
                large_name=ln,
                tau=tau,
                evaluator=ev,
                ce_points=ce_points,
                ladder=list(zip(loaded, found, strict=True)),
                progress=not quiet,
            )
            write_pair_files(a, out_dir / "pairs" / f"{sn}__{ln}", config)
            pairs.append(a)
        frank = None
        if not no_frankenstein:
            frank = analyze_frankenstein(
                loaded,
                found,
                train_acts=train,
                evaluator=ev,
                tau=tau,
                n_tokens=retrain_tokens,
                lr=lr,
                batch_size=retrain_batch_size,
                seed=seed,
                progress=not quiet,
            )
            write_frankenstein_files(frank, out_dir / "frankenstein", config)
            ladder_table = frank.table.filter(pl.col("kind") == "ladder").drop("kind")
        else:
            rows = (ev.row(sae, n) for sae, n in zip(loaded, found, strict=False))
            ladder_table = pl.DataFrame([{c: r[c] for c in POINT_COLUMNS} for r in rows])
        heading = title or f"featgraph stitching report: {', '.join(found)}"
        page = render_html(heading, pairs, frank, ladder_table, config)
        write_html(page, out_dir / "report.html")
    click.echo(f"wrote {Path(out) / 'report.html'} ({len(pairs)} pairs{', Frankenstein' if frank is not None else ''})")
