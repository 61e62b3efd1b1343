"""``featgraph families``: novel features, swap families and splitting trees across a ladder of SAE widths."""

from __future__ import annotations

import click

from .common import device_option, out_option, quiet_option
from .text import format_pair_table, format_trees


@click.command("families")
@click.argument("saes", nargs=-1, required=True, type=click.Path())
@out_option
@click.option(
    "--tau",
    default=0.7,
    show_default=True,
    type=float,
    help="Edge threshold: cos > tau is an edge, max cos <= tau is novel. Must lie in (0, 1).",
)
@click.option(
    "--index",
    "index_dir",
    type=click.Path(file_okay=False),
    help="Take the normalised decoder rows from this saved index (see `featgraph index`).",
)
@click.option(
    "--plots", is_flag=True, help="Also write max_cos_hist.png (the max-cos histogram of every pair)."
)
@click.option(
    "--name",
    "names",
    multiple=True,
    help="SAE names in the order the SAEs are found (repeat once per SAE); default: folder names.",
)
@click.option(
    "--method",
    default="auto",
    show_default=True,
    help="Matcher method: auto, fp32, bf16, faiss or brute64 (float64 oracle, small SAEs only). All give the "
    "same edges and argmax; auto picks the fastest for the device.",
)
@click.option("--examples", type=click.Path(), help="A `featgraph explain` output folder: each feature's label "
              "goes into features.parquet (label column) and onto the GraphML nodes.")
@device_option
@quiet_option
def families(saes: tuple[str, ...], out: str, tau: float, index_dir: str | None, plots: bool,
             names: tuple[str, ...], method: str, examples: str | None, device: str, quiet: bool) -> None:
    """Compare every adjacent pair of a ladder of SAEs (paths, or one folder of SAE folders).

    Writes features.parquet, edges.parquet, families.parquet, summary.json and graph.graphml (with --plots
    also max_cos_hist.png) into --out, then prints each pair's counts. An existing --out is replaced only when
    it holds an earlier families run; a failed run leaves it as it was.
    """
    from featgraph.families import FamiliesRunConfig, run_families

    cfg = FamiliesRunConfig(saes=saes, out=out, tau=tau, names=names or None, index=index_dir, plots=plots,
                            method=method, device=device, progress=not quiet, examples=examples)
    result = run_families(cfg)
    # all-zero decoder rows were already reported (one warning line per SAE) by featgraph.ladder while loading
    click.echo(format_pair_table(result.summary["pairs"], tau=result.tau))
    click.echo(format_trees(result.summary["trees"], n_saes=len(result.names)))
    click.echo(f"wrote {', '.join(result.files)} to {out}")
