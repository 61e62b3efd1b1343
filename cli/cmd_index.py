"""``featgraph index``: build and save the similarity index (unit decoder rows in exact FAISS) of each SAE."""

from __future__ import annotations

import click

from .common import device_option, out_option, quiet_option


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
    import featgraph
    from featgraph.index import build_ladder_index, resolve_index_device
    from featgraph.ladder import load_ladder
    from featgraph.output_dir import check_output

    check_output(out, command="index", inputs=saes)  # before loading any SAE
    resolved = resolve_index_device(device)
    ladder = load_ladder(list(saes), list(names) or None, format=fmt, distinct_widths=False)  # each SAE alone
    config = {
        "command": "index",
        "featgraph_version": featgraph.__version__,
        "saes": [str(e.path) for e in ladder],
        "names": ladder.names,
        "format": fmt,
        "device": resolved,
    }
    indices = build_ladder_index(ladder, out, device=resolved, progress=not quiet, config=config)
    rows = [("name", "width", "d_in", "zero rows", "fingerprint")]
    rows += [
        (ix.name, str(ix.width), str(ix.d_in), str(int((ix.norms == 0).sum())), ix.fingerprint[:16])
        for ix in indices
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    click.echo(f"wrote {len(indices)} indices, manifest.json and config.json to {out}")
