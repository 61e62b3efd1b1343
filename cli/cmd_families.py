"""``featgraph families``: novel features, swap families and splitting trees across a ladder of SAE widths."""

from __future__ import annotations

import click

from .common import device_option, out_option, quiet_option


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
@device_option
@quiet_option
def families(
    saes: tuple[str, ...],
    out: str,
    tau: float,
    index_dir: str | None,
    plots: bool,
    names: tuple[str, ...],
    method: str,
    device: str,
    quiet: bool,
) -> None:
    """Compare every adjacent pair of a ladder of SAEs (paths, or one folder of SAE folders).

    Writes features.parquet, edges.parquet, families.parquet, summary.json and graph.graphml (with --plots
    also max_cos_hist.png) into --out, then prints each pair's counts. An existing --out is replaced only when
    it holds an earlier families run; a failed run leaves it as it was.
    """
    from featgraph.families import run_families

    result = run_families(
        list(saes),
        out,
        tau=tau,
        names=list(names) or None,
        index_dir=index_dir,
        plots=plots,
        method=method,
        device=device,
        progress=not quiet,
    )
    # all-zero decoder rows were already reported (one warning line per SAE) by featgraph.ladder while loading
    click.echo(format_pair_table(result.summary["pairs"], tau=result.tau))
    click.echo(format_trees(result.summary["trees"], n_saes=len(result.names)))
    click.echo(f"wrote {', '.join(result.files)} to {out}")


def format_trees(trees: dict, *, n_saes: int) -> str:
    """One line about the splitting trees across the whole ladder."""
    line = f"splitting trees: {trees['count']}, spanning all {n_saes} widths: "
    line += str(trees["by_widths_spanned"].get(str(n_saes), 0))
    if trees["largest"]:
        big = trees["largest"]
        line += f"; largest: tree {big['tree']}, {big['features']} features, from {big['first_feature']}"
    return line


def format_pair_table(pairs: list[dict], *, tau: float) -> str:
    """A fixed-width table of each pair's counts (what a user wants to see at the end of a run)."""
    head = ["pair", "features", "novel", "novel%", "edges", "families", "copy", "split", "merge", "n:m"]
    rows = [head]
    for p in pairs:
        k = p["families_by_kind"]
        rows.append(
            [
                f"{p['small']} -> {p['large']}",
                str(p["features"]),
                str(p["novel"]),
                f"{100 * p['novel_share']:.1f}",
                str(p["edges"]),
                str(p["families"]),
                str(k["copy"]),
                str(k["split"]),
                str(k["merge"]),
                str(k["n:m"]),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"tau = {tau:g} (edge: cos > tau; novel: max cos <= tau)"]
    for r in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)
