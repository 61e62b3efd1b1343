"""``featgraph eval``: the post's metrics table for SAEs on held-out text of a real model."""

from __future__ import annotations

import click
from featgraph.cli.common import corpus_option, model_option, out_option, quiet_option, text_option


@click.command("eval")
@click.argument("saes", nargs=-1, required=True, type=click.Path())  # a name resolves through the hub
@click.option(
    "--tokens",
    "n_tokens",
    default=20_000,
    show_default=True,
    help="Held-out tokens to evaluate on (whole contexts; the CE needs a full forward of each).",
)
@model_option
@text_option("Only the held-out documents are used.")
@corpus_option
@click.option("--hook", "hook_name", default=None, help="Model site; default: the SAEs' own hook_name.")
@click.option("--context-size", default=128, show_default=True)
@click.option("--batch-size", default=8, show_default=True, help="Contexts per model forward.")
@click.option("--seed", default=0, show_default=True)
@click.option("--no-ce", is_flag=True, help="Reconstruction metrics only (no spliced forwards).")
@out_option
@quiet_option
def eval_cmd(saes: tuple[str, ...], n_tokens: int, model_name: str | None, text_paths: tuple[str, ...],
             hook_name: str | None, context_size: int, batch_size: int, seed: int, no_ce: bool, out: str,
             quiet: bool, corpus: str) -> None:
    """Evaluate SAES (SAE folders/files or ladder folders); write OUT/metrics.parquet and OUT/metrics.md."""
    from featgraph.commands import run_eval
    from featgraph.config import EvalConfig

    cfg = EvalConfig(saes=saes, out=out, n_tokens=n_tokens, model=model_name, text=text_paths, hook=hook_name,
                     context_size=context_size, batch_size=batch_size, seed=seed, ce=not no_ce, progress=not quiet,
                     corpus=corpus)
    result = run_eval(cfg)
    click.echo(result.markdown, nl=False)
    for line in result.warnings:
        click.echo(f"warning: {line}", err=True)
