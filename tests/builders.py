"""Shared test builders (data a test needs, built from a seed), imported by the test modules of several rooms;
``tests/conftest.py`` keeps the pytest fixtures and the one CLI driver ``run_main``.
"""

from __future__ import annotations

import numpy as np
import torch

from featgraph.activations.store import ActivationStore
from featgraph.sae import Sae, SaeConfig
from featgraph.synthetic import planted_ladder


def planted(
    n: int, d: int = 32, n_atoms: int = 48, k: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """x = sum of k unit atoms (out of n_atoms) with magnitudes in [1, 3]; returns (x, atoms)."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    idx = torch.rand(n, n_atoms, generator=g).argsort(1)[:, :k]
    codes = torch.zeros(n, n_atoms).scatter_(1, idx, 1 + 2 * torch.rand(n, k, generator=g))
    return codes @ atoms, atoms


def store_of(x: torch.Tensor, folder, shard: int = 10_000) -> ActivationStore:
    st = ActivationStore.create(
        folder,
        model="planted",
        hook_name="planted.hook",
        d_in=x.shape[1],
        tokens=torch.zeros(1, 2, dtype=torch.long),
        exclude_bos=False,
        dtype="float32",
    )
    for i in range(0, len(x), shard):
        st.write(x[i : i + shard])
    st.mark_complete()
    return st


def projection_sae(W_dec: np.ndarray, *, seed: int, architecture: str = "relu", bias: float = 0.5) -> Sae:
    """A sensible SAE for a decoder: feature j reconstructs ``(x . u_j - bias) u_j`` (u_j = unit row) when
    positive."""
    rng = np.random.default_rng(seed)
    F, d = W_dec.shape
    norms = np.linalg.norm(W_dec, axis=1)
    t = {
        "W_enc": (W_dec / norms[:, None] ** 2).T,
        "b_enc": -bias / norms,
        "W_dec": W_dec,
        "b_dec": 0.02 * rng.standard_normal(d),
    }
    if architecture == "jumprelu":
        t["threshold"] = 0.05 * rng.random(F)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in t.items()}
    return Sae.from_tensors(tensors, SaeConfig(d_in=d, n_features=F, architecture=architecture))


def stitch_pair(
    d: int = 64,
    widths: tuple[int, int] = (48, 96),
    *,
    seed: int = 7,
    arch: str = "relu",
    n_tokens: int = 2000,
):
    """A small/large pair with planted copies/splits/novel features, tokens built from the large directions.

    Tokens are sparse non-negative mixtures of the large SAE's unit decoder rows plus noise, so every kind of
    feature fires on some tokens. The two SAEs have different b_dec, so folding matters.
    """
    decs, truths = planted_ladder(list(widths), d, seed=seed)
    small = projection_sae(decs[0], seed=1, architecture=arch)
    large = projection_sae(decs[1], seed=2, architecture=arch)
    rng = np.random.default_rng(seed)
    F = widths[1]
    unit = decs[1] / np.linalg.norm(decs[1], axis=1, keepdims=True)
    code = rng.exponential(1.0, (n_tokens, F)) * (rng.random((n_tokens, F)) < 4.0 / F)
    x = code @ unit + 0.05 * rng.standard_normal((n_tokens, d))
    return small, large, torch.from_numpy(x.astype(np.float32)), truths[0]
