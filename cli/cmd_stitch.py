"""``featgraph stitch``: add / swap features from a larger SAE into a smaller one and measure what it does.

Also holds the helpers the ``frankenstein`` and ``report`` commands share (loading SAEs, activations, the
model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import out_option, quiet_option


def load_saes(paths: tuple[str, ...] | list[str], names: tuple[str, ...] | list[str] = ()) -> tuple[list, list[str]]:
    """SAEs (any format featgraph reads; a folder of SAE folders expands) and their names (default: folder
    names); the checks (same SAE twice, equal widths, d_in) live in :func:`featgraph.ladder.load_saes`."""
    from featgraph.ladder import load_saes as load

    return load(list(paths), list(names))


def open_acts(store_dir: str, n_tokens: int | None, offset: int = 0) -> tuple[Any, Any]:
    """(activations tensor [n, d] read into memory, the store): ``n_tokens`` rows from ``offset`` (all if
    None)."""
    from featgraph.activation_store import ActivationStore
    from featgraph.errors import ConfigError

    store = ActivationStore(store_dir)
    acts = store.read(n_tokens, offset)
    if acts.shape[0] == 0:
        raise ConfigError(f"{store_dir}: no activations from offset {offset}")
    return acts, store


def make_evaluator(acts: Any, store: Any, ce_contexts: int, model_name: str | None, hook_name: str | None) -> Any:
    """An Evaluator; with ``ce_contexts > 0`` it loads the model and uses the store's first contexts for
    CE."""
    from featgraph.stitch import Evaluator

    if ce_contexts <= 0:
        return Evaluator(acts)
    from featgraph.model_source import load_model

    model = load_model(model_name)
    tokens = store.tokens()[:ce_contexts]
    return Evaluator(acts, model=model, tokens=tokens, hook_name=hook_name or store.hook_name)


acts_option = click.option(
    "--acts",
    "acts_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Activation store (folder with meta.json) of held-out activations at the SAEs' hook.",
)
n_tokens_option = click.option(
    "--n-tokens", type=int, default=None, help="Use only the first N tokens of --acts (default: all)."
)
tau_option = click.option(
    "--tau",
    default=0.7,
    show_default=True,
    type=float,
    help="Novel: max cos <= tau; edge (family member): cos > tau.",
)
ce_option = click.option(
    "--ce-contexts",
    default=0,
    show_default=True,
    type=int,
    help="Contexts of the store's tokens for CE loss recovered (loads the model; 0 = no CE).",
)
model_option = click.option(
    "--model", "model_name", default=None, help="Model for CE (default: the bundled SmolLM2-135M)."
)


@click.command("stitch")
@click.argument("small", type=click.Path(exists=True))
@click.argument("large", type=click.Path(exists=True))
@out_option
@acts_option
@n_tokens_option
@tau_option
@ce_option
@model_option
@click.option(
    "--ce-points",
    default=6,
    show_default=True,
    type=int,
    help="Interpolation-path steps at which CE recovered is computed (first, last and evenly between).",
)
@click.option("--batch-size", default=4096, show_default=True, type=int)
@quiet_option
def stitch(
    small: str,
    large: str,
    out: str,
    acts_dir: str,
    n_tokens: int | None,
    tau: float,
    ce_contexts: int,
    model_name: str | None,
    ce_points: int,
    batch_size: int,
    quiet: bool,
) -> None:
    """Add each feature of LARGE to SMALL alone, swap each family alone, and interpolate from SMALL to LARGE.

    Writes dmse.parquet (one row per LARGE feature), families.parquet, interpolation.parquet, points.parquet,
    cumulative_mse.parquet, summary.json (with the 2x2 table), config.json and the PNG figures into --out.
    """
    from featgraph.cli.common import local_paths

    from featgraph.ladder import load_stitch_pair
    from featgraph.output_dir import check_output
    from featgraph.stitch import analyze_pair, write_pair

    inputs = [small, large, acts_dir, *local_paths(model_name)]
    check_output(out, command="stitch", inputs=inputs)  # before loading anything (the model, with --ce-contexts)
    saes, names = load_stitch_pair(small, large)  # exactly one SAE each, different, SMALL narrower than LARGE
    acts, store = open_acts(acts_dir, n_tokens)
    ev = make_evaluator(acts, store, ce_contexts, model_name, saes[0].cfg.hook_name)
    a = analyze_pair(
        saes[0],
        saes[1],
        acts,
        small_name=names[0],
        large_name=names[1],
        tau=tau,
        evaluator=ev,
        ce_points=ce_points,
        batch_size=batch_size,
        progress=not quiet,
    )
    config = {
        "command": "stitch",
        "small": str(Path(small).resolve()),
        "large": str(Path(large).resolve()),
        "acts": str(Path(acts_dir).resolve()),
        "n_tokens": int(acts.shape[0]),
        "tau": tau,
        "ce_contexts": ce_contexts,
        "model": model_name,
        "ce_points": ce_points,
        "batch_size": batch_size,
    }
    write_pair(a, out, config, inputs=inputs)
    s = a.summary
    t = s["two_by_two"]
    click.echo(f"{names[0]} -> {names[1]} on {s['n_tokens']} tokens, tau = {tau:g}")
    click.echo("               novel  reconstruction")
    click.echo(f"  dMSE < 0  {t['novel']['dmse_lt_0']:8d}  {t['reconstruction']['dmse_lt_0']:14d}")
    click.echo(f"  dMSE > 0  {t['novel']['dmse_gt_0']:8d}  {t['reconstruction']['dmse_gt_0']:14d}")
    an = s["add_all_novel"]
    click.echo(
        f"adding all {an['n_added']} novel features: MSE {s['mse_small']:.4g} -> {an['mse']:.4g} "
        f"({an['relative_change']:+.1%}), L0 {s['l0_small']:.1f} -> {an['l0']:.1f}"
    )
    click.echo(f"wrote {out}")
