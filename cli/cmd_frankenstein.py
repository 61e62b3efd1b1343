"""``featgraph frankenstein``: stitch a ladder's novel features into one SAE and retrain its decoder."""

from __future__ import annotations

from pathlib import Path

import click

from .cmd_stitch import (
    acts_option,
    ce_option,
    load_saes,
    make_evaluator,
    model_option,
    n_tokens_option,
    open_acts,
    tau_option,
)
from .common import out_option, quiet_option

train_acts_option = click.option(
    "--train-acts",
    "train_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Activation store for decoder retraining (default: the second half of --acts; the first half evaluates).",
)
retrain_options = [
    click.option(
        "--retrain-tokens",
        default=200_000,
        show_default=True,
        type=int,
        help="Tokens of decoder retraining per Frankenstein stage (epochs repeat when the store is smaller).",
    ),
    click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate for the decoder."),
    click.option("--retrain-batch-size", default=1024, show_default=True, type=int),
    click.option("--seed", default=0, show_default=True, type=int),
]


def with_options(options):
    def wrap(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return wrap


def split_acts(acts_dir: str, n_tokens: int | None, train_dir: str | None):
    """(eval acts, store, train acts, description): a separate train store, or the halves of --acts."""
    from featgraph.activation_store import ActivationStore

    if train_dir is not None:
        acts, store = open_acts(acts_dir, n_tokens)
        return acts, store, ActivationStore(train_dir), f"decoder retrained on {train_dir}"
    acts, store = open_acts(acts_dir, n_tokens)
    half = acts.shape[0] // 2
    return acts[:half], store, acts[half:], f"first {half} tokens of --acts evaluate, the remaining train"


@click.command("frankenstein")
@click.argument("saes", nargs=-1, required=True, type=click.Path(exists=True))
@out_option
@acts_option
@n_tokens_option
@train_acts_option
@tau_option
@ce_option
@model_option
@with_options(retrain_options)
@click.option("--name", "names", multiple=True, help="SAE names in the order found (default: folder names).")
@quiet_option
def frankenstein(
    saes: tuple[str, ...],
    out: str,
    acts_dir: str,
    n_tokens: int | None,
    train_dir: str | None,
    tau: float,
    ce_contexts: int,
    model_name: str | None,
    retrain_tokens: int,
    lr: float,
    retrain_batch_size: int,
    seed: int,
    names: tuple[str, ...],
    quiet: bool,
) -> None:
    """Assemble Frankenstein's SAE from SAES (smallest first; add features with max cos < tau to everything so
    far).

    Writes the final retrained SAE in featgraph's format (sae/) and SAELens's (sae_saelens/), the assembly
    before retraining, origin.parquet, comparison.parquet (every stage before/after retraining and the
    ladder's SAEs on MSE, L0 and CE recovered), frankenstein.png, metrics.json and config.json into --out.
    """
    from featgraph.cli.common import local_paths

    from featgraph.output_dir import check_output
    from featgraph.stitch import analyze_frankenstein, write_frankenstein

    inputs = [*saes, acts_dir, train_dir, *local_paths(model_name)]
    check_output(out, command="frankenstein", inputs=inputs)  # before loading anything
    loaded, found_names = load_saes(saes, names)
    acts, store, train, split_note = split_acts(acts_dir, n_tokens, train_dir)
    ev = make_evaluator(acts, store, ce_contexts, model_name, loaded[0].cfg.hook_name)
    a = analyze_frankenstein(
        loaded,
        found_names,
        train_acts=train,
        evaluator=ev,
        tau=tau,
        n_tokens=retrain_tokens,
        lr=lr,
        batch_size=retrain_batch_size,
        seed=seed,
        progress=not quiet,
    )
    config = {
        "command": "frankenstein",
        "saes": [str(Path(s).resolve()) for s in saes],
        "names": found_names,
        "acts": str(Path(acts_dir).resolve()),
        "n_tokens_eval": int(acts.shape[0]),
        "split": split_note,
        "tau": tau,
        "ce_contexts": ce_contexts,
        "model": model_name,
        "retrain_tokens": retrain_tokens,
        "lr": lr,
        "retrain_batch_size": retrain_batch_size,
        "seed": seed,
    }
    write_frankenstein(a, out, config, inputs=inputs)
    cols = ["kind", "name", "width", "l0", "mse", "ce_recovered_zero"]
    for r in a.table.select(cols).iter_rows(named=True):
        click.echo(
            f"{r['kind']:26s} {r['name']:28s} F={r['width']:6d}  L0={r['l0']:7.2f}  MSE={r['mse']:9.4g}  "
            f"CE rec={r['ce_recovered_zero']:.4f}"
        )
    click.echo(f"wrote {out}")
