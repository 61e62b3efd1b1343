"""``featgraph index``: build and save the similarity index (unit decoder rows in exact FAISS) of each SAE."""

from __future__ import annotations

import click

from .common import device_option, out_option, quiet_option
from .text import format_table


@click.command("index")
@click.argument("saes", nargs=-1, required=True, type=click.Path())
@out_option
@click.option(
    "--name",
    "names",
    multiple=True,
    help="SAE names in the order the SAEs are found (repeat once per SAE); default: folder names.",
)
@click.option("--format", "fmt", default="auto", show_default=True, help="Input format of every SAE.")
@device_option
@quiet_option
def index(
    saes: tuple[str, ...], out: str, names: tuple[str, ...], fmt: str, device: str, quiet: bool
) -> None:
    """Index a ladder of SAEs (paths, or one folder of SAE folders) into --out.

    Writes one subfolder per SAE (index.faiss, norms.npy, meta.json), manifest.json and config.json;
    `featgraph families --index` then reuses the normalised rows, refusing them if the SAE weights changed
    since.
    """
    from featgraph.commands import run_index
    from featgraph.config import IndexConfig

    cfg = IndexConfig(saes=saes, out=out, names=names or None, format=fmt, device=device, progress=not quiet)
    indices = run_index(cfg)
    rows = [("name", "width", "d_in", "zero rows", "fingerprint")]
    rows += [
        (ix.name, str(ix.width), str(ix.d_in), str(int((ix.norms == 0).sum())), ix.fingerprint[:16])
        for ix in indices
    ]
    click.echo(format_table(rows))
    click.echo(f"wrote {len(indices)} indices, manifest.json and config.json to {out}")
