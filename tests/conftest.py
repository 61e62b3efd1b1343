"""Shared fixtures: seeding and tiny builders. Everything here is deterministic and offline."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from featgraph.sae import Sae, SaeConfig
from featgraph.synthetic import planted_ladder, random_sae_tensors


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def tiny_sae(n_features: int = 32, d_in: int = 16, *, seed: int = 0, architecture: str = "relu",
             k: int | None = None, W_dec: np.ndarray | None = None) -> Sae:
    """A small random SAE with finite weights (decoder given or random)."""
    rng = np.random.default_rng(seed)
    if W_dec is None:
        W_dec = rng.standard_normal((n_features, d_in)).astype(np.float32)
    n_features, d_in = W_dec.shape
    t = {k_: torch.from_numpy(v) for k_, v in random_sae_tensors(W_dec, seed=seed).items()}
    if architecture == "jumprelu":
        t["threshold"] = torch.from_numpy((0.05 * rng.random(n_features)).astype(np.float32))
    cfg = SaeConfig(d_in=d_in, n_features=n_features, architecture=architecture, k=k)
    return Sae.from_tensors(t, cfg)


@pytest.fixture
def small_ladder() -> tuple[list[np.ndarray], list]:
    """Decoders for widths 48, 96, 192 at d=24 with planted copies, splits, novel and near-tau features."""
    return planted_ladder([48, 96, 192], 24, seed=7, near_tau=0.7, n_near_tau=4)


def write_ladder(tmp_path, decoders: list[np.ndarray], names: list[str] | None = None):
    """Save each decoder as a featgraph-format SAE folder under ``tmp_path/ladder``; return that folder."""
    root = tmp_path / "ladder"
    for i, W in enumerate(decoders):
        name = names[i] if names else f"sae{W.shape[0]}"
        tiny_sae(W_dec=W, seed=i).save(root / name)
    return root


def run_main(*args) -> tuple[int, str, str]:
    """Run the console-script entry point (errors -> exit codes, as a user sees them); (code, stdout, stderr)."""
    from click.testing import CliRunner
    from featgraph.cli.main import main

    with CliRunner().isolation() as (out, err, _):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        return code, out.getvalue().decode(), err.getvalue().decode()


def invoke(*args):
    """:func:`run_main` with the result as attributes (``exit_code``, ``stdout``, ``stderr``, ``output`` = both),
    for tests that read a command's output line by line."""
    from types import SimpleNamespace

    code, out, err = run_main(*args)
    return SimpleNamespace(exit_code=code, stdout=out, stderr=err, output=out + err)


def tiny_bridge(n_layers: int):
    """A tiny random transformer-lens bridge (no download): d_model 16, 4 heads, vocab 50, seeded."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(
        d_model=16, d_head=4, n_layers=n_layers, n_ctx=32, n_heads=4, d_vocab=50, seed=0, act_fn="gelu"
    )
    return TransformerBridge.boot_native(cfg)
