"""``featgraph compare A B``: two SAEs of the same d_in compared both ways, one-to-one, by family and by activation."""

from __future__ import annotations

import click

from .common import device_option, out_option, quiet_option


@click.command("compare")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@out_option
@click.option("--tau", default=0.7, show_default=True, type=float,
              help="Edge threshold: cos > tau is shared; max cos <= tau is lost (A) or novel (B). In (0, 1).")
@click.option("--acts", type=click.Path(file_okay=False),
              help="Activation store (featgraph collect): Jaccard, Pearson and masked cos of the pairs.")
@click.option("--tokens", "n_tokens", type=int, help="Use only the first N tokens of --acts.")
@click.option("--examples", type=click.Path(file_okay=False),
              help="A featgraph explain output: feature labels on graph nodes and in features.parquet.")
@click.option("--name-a", help="A's name in tables and graphs (default: its folder or file name).")
@click.option("--name-b", help="B's name (default: its folder or file name).")
@click.option("--act-threshold", default=0.5, show_default=True, type=float,
              help="Masked activation cos above which a pair is an activation edge (precision/recall).")
@click.option("--no-plots", is_flag=True, help="Skip the figures (PNG).")
@click.option("--method", default="auto", show_default=True, type=click.Choice(["auto", "fp32", "bf16"]),
              help="GEMM of the candidate passes; exact either way (edges decided in float64, assignment certified).")
@device_option
@quiet_option
def compare(a: str, b: str, out: str, tau: float, acts: str | None, n_tokens: int | None, examples: str | None,
            name_a: str | None, name_b: str | None, act_threshold: float, no_plots: bool, method: str, device: str,
            quiet: bool) -> None:
    """Compare SAE A with SAE B (any widths, seeds or formats; the same d_in).

    Writes features/pairs/edges/families.parquet, summary.json, config.json, graph.graphml, graph.json and the
    figures into --out, then prints the headline numbers.
    """
    from featgraph.compare.config import CompareConfig
    from featgraph.compare.run import format_summary, run_compare

    cfg = CompareConfig(a=a, b=b, out=out, tau=tau, acts=acts, n_tokens=n_tokens, examples=examples,
                        name_a=name_a, name_b=name_b, act_threshold=act_threshold, plots=not no_plots, method=method,
                        device=device, progress=not quiet)
    result = run_compare(cfg)
    click.echo(format_summary(result.summary))
    click.echo(f"wrote {', '.join(result.files)} to {out}")
