"""``featgraph explain``: top activating contexts, firing statistics, top tokens and a label for every feature."""

from __future__ import annotations

import click

from .common import out_option, quiet_option


@click.command("explain")
@click.argument("saes", nargs=-1, required=True)
@out_option
@click.option("--acts", required=True, type=click.Path(exists=True, file_okay=False),
              help="Activation store (featgraph collect) at the SAEs' hook; its token ids give the contexts.")
@click.option("-k", "k", default=20, show_default=True, type=int, help="Examples per feature (distinct contexts).")
@click.option("--window", default=16, show_default=True, type=int,
              help="Tokens shown before the max-activating token (WINDOW // 4 are shown after it).")
@click.option("--top-tokens", default=10, show_default=True, type=int,
              help="Tokens listed per feature, by count and by summed activation.")
@click.option("--name", "names", multiple=True, help="SAE names in the order found (default: folder names).")
@click.option("--batch-size", default=4096, show_default=True, type=int,
              help="Tokens per batch of the pass (whole contexts; bounds memory).")
@click.option("--tokenizer", default=None,
              help="Token strings from this model name or folder (default: the store's model), or 'ids'.")
@click.option("--n-tokens", type=int, default=None,
              help="Explain only the contexts holding the first N tokens of --acts (whole contexts; default: all).")
@quiet_option
def explain(saes: tuple[str, ...], quiet: bool, **options) -> None:
    """Explain every feature of SAE... from one streaming pass each over --acts.

    Writes feature_stats.parquet (one row per feature: frequency, mean and max activation, top tokens, label),
    examples.parquet (the top-k contexts of each feature with the window's tokens and activations), summary.json
    and config.json into --out.
    """
    from featgraph.explain.config import ExplainConfig
    from featgraph.explain.run import run_explain

    res = run_explain(ExplainConfig(saes=saes, progress=not quiet, **options))
    n = res.summary["store"]["n_tokens"]
    for s in res.summary["saes"]:
        rows = res.stats.filter(res.stats["sae"] == s["name"]).sort("n_active", descending=True)
        shown = ", ".join(f"{f}:{lab}" for f, lab in rows.select("feature", "label").head(3).iter_rows() if lab)
        click.echo(f"{s['name']}: {s['n_fired']}/{s['width']} features fired on {n} tokens; most frequent: {shown}")
    click.echo(f"wrote {res.out}")
