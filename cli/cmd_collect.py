"""``featgraph collect``: write a model's activations at one hook into an on-disk store.

``featgraph train`` collects its own training store; this command is for the held-out stores that ``stitch``,
``frankenstein`` and ``report`` evaluate on (``--split heldout``, documents the training split never sees).
"""

from __future__ import annotations

import click
from featgraph.cli.common import corpus_option, model_option, quiet_option, text_option


@click.command("collect")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Activation store folder.")
@model_option
@text_option("--split picks which documents are read.")
@corpus_option
@click.option("--hook", "hook_name", default="blocks.3.hook_resid_pre", show_default=True)
@click.option(
    "--split",
    type=click.Choice(["train", "heldout"]),
    default="heldout",
    show_default=True,
    help="Side of the seeded document split (the same split `featgraph train` and `eval` use).",
)
@click.option("--tokens", "n_tokens", default=100_000, show_default=True, help="Tokens to collect.")
@click.option("--context-size", default=128, show_default=True)
@click.option("--seed", default=0, show_default=True)
@quiet_option
def collect(model_name: str | None, text_paths: tuple[str, ...], hook_name: str, split: str, n_tokens: int,
            context_size: int, seed: int, out: str, quiet: bool, corpus: str) -> None:
    """Collect activations at HOOK into OUT (sharded, memory-mapped; a killed run resumes)."""
    from featgraph.commands import run_collect
    from featgraph.config import CollectConfig

    store = run_collect(CollectConfig(out=out, model=model_name, text=text_paths, hook=hook_name, split=split,
                                      n_tokens=n_tokens, context_size=context_size, seed=seed, progress=not quiet,
                                      corpus=corpus))
    click.echo(
        f"wrote {store.meta['n_tokens']} activations of {store.meta['model']} at {hook_name} ({split} split) to {out}"
    )
