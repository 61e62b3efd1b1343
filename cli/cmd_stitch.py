"""``featgraph stitch``: add / swap features from a larger SAE into a smaller one and measure what it does.

Also holds the options the ``frankenstein`` and ``report`` commands share with it.
"""

from __future__ import annotations

import click

from .common import model_option, out_option, quiet_option


def with_options(options):
    def wrap(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return wrap


ACTS_OPTIONS = [
    out_option,
    click.option("--acts", required=True, type=click.Path(exists=True, file_okay=False),
                 help="Activation store (folder with meta.json) of held-out activations at the SAEs' hook."),
    click.option("--n-tokens", type=int, default=None, help="Use only the first N tokens of --acts (default: all)."),
    click.option("--tau", default=0.7, show_default=True, type=float,
                 help="Novel: max cos <= tau; edge (family member): cos > tau."),
    click.option("--ce-contexts", default=0, show_default=True, type=int,
                 help="Contexts of the store's tokens for CE loss recovered (loads the model; 0 = no CE)."),
    model_option,
]


@click.command("stitch")
@click.argument("small")
@click.argument("large")
@with_options(ACTS_OPTIONS)
@click.option("--ce-points", default=6, show_default=True, type=int,
              help="Interpolation-path steps at which CE recovered is computed (first, last and evenly between).")
@click.option("--batch-size", default=4096, show_default=True, type=int,
              help="Tokens per batch of the single pass over --acts (bounds memory).")
@quiet_option
def stitch(small: str, large: str, model_name: str | None, quiet: bool, **options) -> None:
    """Add each feature of LARGE to SMALL alone, swap each family alone, and interpolate from SMALL to LARGE.

    SMALL and LARGE are SAE folders or files, or names (RELEASE/SAE_ID, hf://...). Reads --acts once. Writes
    dmse.parquet (one row per LARGE feature), swaps.parquet (one row per family swapped alone),
    interpolation.parquet, points.parquet, cumulative_mse.parquet, summary.json (with the 2x2 table), config.json
    and the PNG figures into --out.
    """
    from featgraph.config import StitchConfig
    from featgraph.stitch.run import run_stitch

    res = run_stitch(StitchConfig(small=small, large=large, model=model_name, progress=not quiet, **options))
    s = res.analysis.summary
    t = s["two_by_two"]
    click.echo(f"{s['small']} -> {s['large']} on {s['n_tokens']} tokens, tau = {s['tau']:g}")
    click.echo("               novel  reconstruction")
    click.echo(f"  dMSE < 0  {t['novel']['dmse_lt_0']:8d}  {t['reconstruction']['dmse_lt_0']:14d}")
    click.echo(f"  dMSE > 0  {t['novel']['dmse_gt_0']:8d}  {t['reconstruction']['dmse_gt_0']:14d}")
    an = s["add_all_novel"]
    click.echo(
        f"adding all {an['n_added']} novel features: MSE {s['mse_small']:.4g} -> {an['mse']:.4g} "
        f"({an['relative_change']:+.1%}), L0 {s['l0_small']:.1f} -> {an['l0']:.1f}"
    )
    click.echo(f"wrote {res.out}")
