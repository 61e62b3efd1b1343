"""``featgraph atlas``: every pair of a collection of SAEs (families, flow across layers, seeds) in one run."""

from __future__ import annotations

import click

from .common import device_option, out_option, quiet_option


@click.command("atlas")
@click.argument("manifest", type=click.Path())
@out_option
@click.option("--tau", default=0.7, show_default=True, type=float,
              help="Edge threshold: cos > tau is an edge / carried / shared; max cos <= tau is novel / from nowhere.")
@click.option("--only", default=None, help="Parts of the plan to run, comma-separated: families,flow,compare "
              "(default: all).")
@click.option("--site", "sites", multiple=True, help="Keep only pairs whose SAEs lie at this site (repeatable).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: in this process; ray: tasks on a Ray cluster (pip install featgraph[ray]).")
@click.option("--address", default=None, help="Ray cluster address (--engine ray; default: start a local one).")
@click.option("--memory-budget", "memory_budget", default=4 << 30, show_default=True, type=int,
              help="Bytes one task may hold; a larger pair is split into tiles (row blocks of its SAEs).")
@click.option("--method", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="GEMM of the exact matcher (all give the same answers).")
@device_option
@click.option("--acts", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Activation store (repeatable): explain the SAEs at its hook into --out/examples/<site>/; labels.")
@click.option("--examples", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A `featgraph explain` folder (repeatable): its labels go on the graph's nodes.")
@click.option("--tokenizer", default=None, help="With --acts: as `featgraph explain --tokenizer`.")
@quiet_option
def atlas(manifest: str, quiet: bool, **options) -> None:
    """Run the comparison plan of a collection: MANIFEST is a .toml/.json manifest or a <site>/<sae> folder tree.

    Writes per-pair Parquet tables (families/, flow/, compare/, partitioned pair=<a>~<b>), flow_chains.parquet,
    flow_layers.parquet, flow.png, graph.graphml, graph.json, summary.json and config.json into --out. A rerun into
    the same --out reuses every pair whose two SAEs are unchanged. With --acts/--examples the graph's nodes get
    feature labels (`featgraph explain`'s), and each store's explain folder is written under --out/examples/.
    """
    from featgraph.atlas.config import AtlasConfig
    from featgraph.atlas.run import run_atlas

    cfg = AtlasConfig(manifest=manifest, progress=not quiet, **options)
    result = run_atlas(cfg)
    for kind in ("families", "flow", "compare"):
        n = sum(p.kind == kind for p in result.plan)
        if n:
            click.echo(f"{kind}: {n} pairs")
    from featgraph.atlas.flow import format_flow

    for line in format_flow(result.summary["flow"]["layers"]):
        click.echo(line)
    chains = result.summary["flow"]["chains"]
    if chains["count"]:
        spans = ", ".join(f"{k} layers: {v}" for k, v in chains["by_layers_spanned"].items())
        click.echo(f"flow chains: {chains['count']} ({spans})")
    click.echo(f"pairs: {result.reused} reused, {result.computed} computed")
    if "examples" in result.summary:
        ex = result.summary["examples"]
        click.echo(f"labels: {len(ex['labelled_saes'])} SAEs ({len(ex['stores'])} stores, {ex['reused']} reused)")
    click.echo(f"wrote {len(result.files)} files to {cfg.out}")
