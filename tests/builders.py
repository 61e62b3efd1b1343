"""Shared test builders (data a test needs, built from a seed), imported by the test modules of several rooms;
``tests/conftest.py`` keeps the pytest fixtures and the one CLI driver ``run_main``.
"""

from __future__ import annotations

import torch

from featgraph.activations.store import ActivationStore


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
