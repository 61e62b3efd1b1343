"""``featgraph report``: one self-contained HTML page with every stitching figure and table for a ladder."""

from __future__ import annotations

import click

from .cmd_frankenstein import LADDER_OPTIONS
from .cmd_stitch import with_options


@click.command("report")
@click.argument("saes", nargs=-1, required=True)
@with_options(LADDER_OPTIONS)
@click.option("--no-frankenstein", is_flag=True, help="Skip the Frankenstein section.")
@click.option("--ce-points", default=4, show_default=True, type=int, help="CE points on each interpolation path.")
@click.option("--title", default=None, help="Page title (default: the ladder's SAE names).")
@click.option("--examples", type=click.Path(exists=True, file_okay=False), default=None,
              help="A `featgraph explain` folder of these SAEs: adds families/, explorer.html and the split panel.")
@click.option("--explain/--no-explain", default=False, show_default=True,
              help="Run explain over --acts (the contexts of its first --n-tokens) into --out/examples/ first, "
              "then as --examples (about 1.4 encode passes per SAE more).")
@click.option("--tokenizer", default=None, help="With --explain: as `featgraph explain --tokenizer`.")
def report(model_name: str | None, quiet: bool, no_frankenstein: bool, **options) -> None:
    """Analyse every adjacent pair of a ladder (as `featgraph stitch`) and its Frankenstein SAE; write
    report.html.

    Each pair's files go to --out/pairs/SMALL__LARGE/, Frankenstein's to --out/frankenstein/, and the page,
    readable offline (figures embedded), to --out/report.html. With --examples, also the ladder's families
    (--out/families/), the family explorer (--out/explorer.html) and the largest split families' panel; with
    --explain, the explain folder is made from --acts into --out/examples/ first.
    """
    from featgraph.report.config import ReportExamplesConfig
    from featgraph.report.run import run_report

    cfg = ReportExamplesConfig(model=model_name, progress=not quiet, frankenstein=not no_frankenstein, **options)
    res = run_report(cfg)
    extra = ", Frankenstein" if res.frankenstein is not None else ""
    click.echo(f"wrote {res.page} ({len(res.pairs)} pairs{extra})")
