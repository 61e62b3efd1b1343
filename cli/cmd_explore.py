"""``featgraph explore``: the family explorer, one self-contained HTML page (works offline, no server)."""

from __future__ import annotations

import click

from .common import quiet_option


@click.command("explore")
@click.argument("families_dir", type=click.Path())
@click.option("--examples", "examples", required=True, type=click.Path(),
              help="A `featgraph explain` output folder (examples.parquet, feature_stats.parquet).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The page to write (one .html file; replaced only when it is an earlier explorer page).")
@click.option("--contexts", default=3, show_default=True, type=int, help="Top contexts embedded per feature.")
@click.option("--window", default=6, show_default=True, type=int,
              help="Tokens kept on each side of a context's max-activating token.")
@click.option("--title", default=None, help="Page title (default: the ladder's SAE names).")
@quiet_option
def explore(families_dir: str, examples: str, out: str, contexts: int, window: int, title: str | None,
            quiet: bool) -> None:
    """Write the family explorer for a `featgraph families` folder and a `featgraph explain` folder.

    Open the page by double-click: a searchable list of families and novel features; the selected one's
    splitting tree across all widths (parents above children, edges weighted by cos) and every node's top
    contexts with the firing tokens highlighted. The URL fragment selects: #tree=116, #family=l3-576:24,
    #feature=l3-1152:907, #search=WORDS&kind=split.
    """
    from featgraph.explorer.config import ExploreConfig
    from featgraph.explorer.run import run_explore

    cfg = ExploreConfig(families=families_dir, examples=examples, out=out, contexts=contexts, window=window,
                        title=title, progress=not quiet)
    res = run_explore(cfg)
    click.echo(f"wrote {res.page} ({res.size_bytes / 1e6:.2f} MB: {res.n_families} families in {res.n_trees} "
               f"splitting trees, contexts for {res.n_features_with_examples} features)")
