"""``featgraph frankenstein``: stitch a ladder's novel features into one SAE and retrain its decoder."""

from __future__ import annotations

import click

from .cmd_stitch import ACTS_OPTIONS, with_options
from .common import quiet_option

LADDER_OPTIONS = [
    *ACTS_OPTIONS,
    click.option("--train-acts", type=click.Path(exists=True, file_okay=False), default=None,
                 help="Activation store for decoder retraining (default: the second half of --acts; the first "
                 "half evaluates)."),
    click.option("--retrain-tokens", default=200_000, show_default=True, type=int,
                 help="Tokens of decoder retraining per Frankenstein stage (epochs repeat when the store is smaller)."),
    click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate for the decoder."),
    click.option("--retrain-batch-size", default=1024, show_default=True, type=int),
    click.option("--seed", default=0, show_default=True, type=int),
    click.option("--name", "names", multiple=True, help="SAE names in the order found (default: folder names)."),
    quiet_option,
]


@click.command("frankenstein")
@click.argument("saes", nargs=-1, required=True)
@with_options(LADDER_OPTIONS)
def frankenstein(model_name: str | None, quiet: bool, **options) -> None:
    """Assemble Frankenstein's SAE from SAES (smallest first; add features with max cos < tau to everything so
    far).

    Writes the final retrained SAE in featgraph's format (sae/) and SAELens's (sae_saelens/), the assembly
    before retraining, origin.parquet, comparison.parquet (every stage before/after retraining and the
    ladder's SAEs on MSE, L0 and CE recovered), frankenstein.png, metrics.json and config.json into --out.
    """
    from featgraph.config import FrankensteinConfig
    from featgraph.stitch.run import run_frankenstein

    res = run_frankenstein(FrankensteinConfig(model=model_name, progress=not quiet, **options))
    cols = ["kind", "name", "width", "l0", "mse", "ce_recovered_zero"]
    for r in res.analysis.table.select(cols).iter_rows(named=True):
        click.echo(
            f"{r['kind']:26s} {r['name']:28s} F={r['width']:6d}  L0={r['l0']:7.2f}  MSE={r['mse']:9.4g}  "
            f"CE rec={r['ce_recovered_zero']:.4f}"
        )
    click.echo(f"wrote {res.out}")
