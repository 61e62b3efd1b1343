"""``featgraph collect``: write a model's activations at one hook into an on-disk store.

``featgraph train`` collects its own training store; this command is for the held-out stores that ``stitch``,
``frankenstein`` and ``report`` evaluate on (``--split heldout``, documents the training split never sees).
"""

from __future__ import annotations

import click
from featgraph.cli.common import model_option, quiet_option, text_option


@click.command("collect")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Activation store folder.")
@model_option
@text_option("--split picks which documents are read.")
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
def collect(
    model_name: str | None,
    text_paths: tuple[str, ...],
    hook_name: str,
    split: str,
    n_tokens: int,
    context_size: int,
    seed: int,
    out: str,
    quiet: bool,
) -> None:
    """Collect activations at HOOK into OUT (sharded, memory-mapped; a killed run resumes)."""
    from featgraph.activations import collect_activations, corpus_contexts, load_model
    from featgraph.errors import ConfigError

    if n_tokens < 1 or context_size < 2:
        raise ConfigError(f"--tokens must be >= 1 and --context-size >= 2, got {n_tokens} and {context_size}")
    model = load_model(model_name)
    n_contexts = -(-n_tokens // (context_size - 1))  # BOS is left out of the store
    tokens = corpus_contexts(
        model, list(text_paths) or None, split=split, context_size=context_size, n_contexts=n_contexts, seed=seed
    )
    store = collect_activations(
        model,
        tokens,
        hook_name,
        out,
        progress=not quiet,
        extra={"split": split, "text": list(text_paths) or "default", "seed": seed},
    )
    click.echo(
        f"wrote {store.meta['n_tokens']} activations of {store.meta['model']} at {hook_name} ({split} split) to {out}"
    )
