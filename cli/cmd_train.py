"""``featgraph train``: collect activations at one hook if needed, then train SAEs differing only in width."""

from __future__ import annotations

import click
from featgraph.cli.common import corpus_option, model_option, out_option, quiet_option, text_option


@click.command("train")
@click.option("--widths", required=True, help="Comma-separated SAE widths, e.g. 576,1152,2304,4608.")
@click.option("--acts", "acts_dir", required=True, type=click.Path(file_okay=False),
              help="Activation store folder; collected from --model/--text first when it does not exist yet.")
@model_option
@text_option("Held-out documents are skipped.")
@corpus_option
@click.option("--hook", "hook_name", default="blocks.3.hook_resid_pre", show_default=True)
@click.option("--context-size", default=128, show_default=True)
@click.option("--collect-tokens", default=1_000_000, show_default=True, help="Tokens to collect into a new store.")
@click.option("--architecture", type=click.Choice(["relu", "topk"]), default="relu", show_default=True)
@click.option("--k", type=int, default=None, help="Active features per token (topk).")
@click.option("--l1", "l1_coefficient", default=2.0, show_default=True, help="L1 coefficient (relu).")
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--batch-size", default=256, show_default=True, help="Small batches: steps, not tokens, converge SAEs.")
@click.option("--epochs", default=1.0, show_default=True, help="Passes over the store.")
@click.option("--train-tokens", type=int, default=None, help="Training tokens (overrides --epochs).")
@click.option("--seed", default=0, show_default=True)
@click.option("--name-prefix", default="sae", show_default=True, help="SAEs are saved as <prefix>-<width>.")
@click.option("--fp16", is_flag=True, help="Save weights in float16 (half the disk).")
@click.option("--saelens", "saelens_dir", type=click.Path(file_okay=False), default=None,
              help="Also write SAELens-format copies under this folder.")
@click.option("--eval-acts", "eval_acts_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Held-out activation store for the health.json written beside each SAE (default: the training "
              "store).")
@out_option
@quiet_option
def train(widths: str, acts_dir: str, model_name: str | None, text_paths: tuple[str, ...], hook_name: str,
          context_size: int, collect_tokens: int, architecture: str, k: int | None, l1_coefficient: float,
          lr: float, batch_size: int, epochs: float, train_tokens: int | None, seed: int, name_prefix: str,
          fp16: bool, saelens_dir: str | None, eval_acts_dir: str | None, out: str, quiet: bool,
          corpus: str) -> None:
    """Train one SAE per width on the same activations, batches and settings; save them in OUT."""
    from featgraph.commands import run_train
    from featgraph.config import TrainRunConfig
    from featgraph.training import TrainConfig

    hyper = TrainConfig(architecture=architecture, k=k, l1_coefficient=l1_coefficient, lr=lr, batch_size=batch_size,
                        epochs=epochs, n_tokens=train_tokens, seed=seed)
    cfg = TrainRunConfig(widths=widths, acts=acts_dir, out=out, model=model_name, text=text_paths, hook=hook_name,
                         context_size=context_size, seed=seed, collect_tokens=collect_tokens, train=hyper,
                         name_prefix=name_prefix, fp16=fp16, saelens=saelens_dir, eval_acts=eval_acts_dir,
                         progress=not quiet, corpus=corpus)
    for f in run_train(cfg):
        click.echo(str(f))
