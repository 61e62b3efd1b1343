"""``featgraph eval``: the post's metrics table for SAEs on held-out text of a real model."""

from __future__ import annotations

import click
from featgraph.cli.common import model_option, out_option, quiet_option, text_option


@click.command("eval")
@click.argument("saes", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--tokens",
    "n_tokens",
    default=20_000,
    show_default=True,
    help="Held-out tokens to evaluate on (whole contexts; the CE needs a full forward of each).",
)
@model_option
@text_option("Only the held-out documents are used.")
@click.option("--hook", "hook_name", default=None, help="Model site; default: the SAEs' own hook_name.")
@click.option("--context-size", default=128, show_default=True)
@click.option("--batch-size", default=8, show_default=True, help="Contexts per model forward.")
@click.option("--seed", default=0, show_default=True)
@click.option("--no-ce", is_flag=True, help="Reconstruction metrics only (no spliced forwards).")
@out_option
@quiet_option
def eval_cmd(
    saes: tuple[str, ...],
    n_tokens: int,
    model_name: str | None,
    text_paths: tuple[str, ...],
    hook_name: str | None,
    context_size: int,
    batch_size: int,
    seed: int,
    no_ce: bool,
    out: str,
    quiet: bool,
) -> None:
    """Evaluate SAES (SAE folders/files or ladder folders); write OUT/metrics.parquet and OUT/metrics.md."""
    from featgraph.cli.common import local_paths

    from featgraph.activations import activations_in_memory, corpus_contexts, load_model
    from featgraph.errors import ConfigError
    from featgraph.evaluate import evaluate_ladder, metrics_markdown
    from featgraph.formats import load_sae
    from featgraph.io_utils import write_json
    from featgraph.ladder import check_loaded_saes, expand_sae_paths
    from featgraph.output_dir import check_output, open_output

    inputs = [*saes, *text_paths, *local_paths(model_name)]
    check_output(out, command="eval", inputs=inputs)  # before loading the model: a bad --out fails in a second
    paths = expand_sae_paths(saes)
    loaded = [load_sae(p) for p in paths]
    check_loaded_saes(loaded, paths, distinct_widths=False)  # one d_in; a copy of an SAE is refused, seeds are not
    hooks = {hook_name or s.cfg.hook_name for s in loaded}
    if len(hooks) != 1 or None in hooks:
        raise ConfigError(f"the SAEs name hooks {sorted(map(str, hooks))}; pass one --hook")
    hook = hooks.pop()
    model = load_model(model_name)
    n_ctx = max(1, -(-n_tokens // context_size))
    tokens = corpus_contexts(
        model,
        list(text_paths) or None,
        split="heldout",
        context_size=context_size,
        n_contexts=n_ctx,
        seed=seed,
    )
    acts = activations_in_memory(model, tokens, hook, batch_size=batch_size, progress=not quiet)
    table = evaluate_ladder(
        loaded,
        acts=acts,
        model=None if no_ce else model,
        tokens=None if no_ce else tokens,
        hook_name=hook,
        names=[p.stem if p.is_file() else p.name for p in paths],
        model_batch_size=batch_size,
        progress=not quiet,
    )
    note = (
        f"held-out text ({'default corpus' if not text_paths else ', '.join(text_paths)}): {len(tokens)} "
        f"contexts of {context_size} tokens; {acts.shape[0]} activations (BOS left out)"
    )
    md = metrics_markdown(table, note=note)
    with open_output(out, command="eval", inputs=inputs) as out_dir:
        table.write_parquet(out_dir / "metrics.parquet")
        (out_dir / "metrics.md").write_text(md, encoding="utf-8")
        write_json(out_dir / "config.json", {
            "saes": [str(p) for p in paths],
            "n_tokens": n_tokens,
            "model": model_name or "smollm2-135m",
            "text": list(text_paths) or "default",
            "hook_name": hook,
            "context_size": context_size,
            "batch_size": batch_size,
            "seed": seed,
            "ce": not no_ce,
            "n_contexts": len(tokens),
        })
    click.echo(md, nl=False)
    for row in table.iter_rows(named=True):  # thresholds are named in the reason (featgraph.health)
        if row["undertrained"]:
            click.echo(f"warning: {row['name']} looks under-trained: {row['undertrained']}", err=True)
