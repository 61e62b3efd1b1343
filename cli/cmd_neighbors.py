"""``featgraph neighbors INDEX``: exact top-k most similar features across every SAE of a saved index."""

from __future__ import annotations

import click

from .common import quiet_option


@click.command("neighbors")
@click.argument("index", type=click.Path(file_okay=False))
@click.option("--feature", help="Query feature SAE:ID (an SAE name of the index and a feature id); it is left out "
              "of its own results.")
@click.option("--vector", type=click.Path(dir_okay=False),
              help="Query vector file: .npy, .safetensors or .pt holding one [d_in] vector.")
@click.option("-k", "k", default=20, show_default=True, type=int,
              help="How many neighbors; no cap (more than there are features returns them all).")
@click.option("--out", type=click.Path(file_okay=False), help="Also write neighbors.parquet and summary.json here.")
@quiet_option
def neighbors(index: str, feature: str | None, vector: str | None, k: int, out: str | None, quiet: bool) -> None:
    """Exact top-k features by decoder cos to --feature or --vector, over every SAE of INDEX (`featgraph index`).

    Ties are broken by cos, then the SAE's order in the index, then feature id; zero decoder rows are never
    results.
    """
    from featgraph.compare.config import NeighborsConfig
    from featgraph.compare.neighbors import format_neighbors, run_neighbors

    cfg = NeighborsConfig(index=index, feature=feature, vector=vector, k=k, out=out, progress=not quiet)
    result = run_neighbors(cfg)
    click.echo(format_neighbors(result.table))
    if out is not None:
        click.echo(f"wrote {', '.join(result.files)} to {out}")
