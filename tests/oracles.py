"""Brute-force oracles the tests compare featgraph against: a float64 brute-force matcher and a pure-Python
union-find for families. They use neither featgraph's matcher nor scipy nor networkx (``oracle_tables`` then feeds
their answers through featgraph's table builders, so a table test compares matching and families only).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from featgraph.graph import families_from_edges
from featgraph.stitch.delta_mse import as_dtype
from featgraph.tables import edges_table, features_table

# -- oracle --------------------------------------------------------------------------------------------------


def unit64(W: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm in float64; all-zero rows stay zero."""
    W = np.asarray(W, dtype=np.float64)
    n = np.linalg.norm(W, axis=1, keepdims=True)
    return np.divide(W, n, out=np.zeros_like(W), where=n > 0)


def brute_pair(W_small: np.ndarray, W_large: np.ndarray, tau: float) -> SimpleNamespace:
    """Every cosine in float64: max_cos/argmax per large row, edges sorted by (large, small)."""
    C = unit64(W_large) @ unit64(W_small).T  # [n_large, n_small]
    large, small = np.nonzero(C > tau)  # row-major order = sorted by (large, small)
    return SimpleNamespace(
        max_cos=C.max(axis=1),
        argmax=C.argmax(axis=1),
        edge_small=small,
        edge_large=large,
        edge_cos=C[large, small],
    )


def union_find_families(edge_small, edge_large) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Components with an edge as (small features, large features), ordered by smallest small feature."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s, l_ in zip(edge_small, edge_large, strict=True):
        a, b = find(("s", int(s))), find(("l", int(l_)))
        if a != b:
            parent[a] = b
    groups: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)
    fams = [
        (tuple(sorted(i for side, i in g if side == "s")), tuple(sorted(i for side, i in g if side == "l")))
        for g in groups.values()
    ]
    return sorted(fams, key=lambda f: f[0][0])


def oracle_tables(decoders, names, tau):
    """Features and edges tables built from the brute-force matches and union-find families."""
    matches = [brute_pair(a, b, tau) for a, b in zip(decoders[:-1], decoders[1:], strict=True)]
    fams = [families_from_edges(m.edge_small, m.edge_large) for m in matches]
    norms = [np.linalg.norm(W.astype(np.float64), axis=1) for W in decoders]
    return (
        matches,
        fams,
        features_table(names, norms, matches, fams, tau=tau),
        edges_table(names, matches, fams),
    )


def exact_mse_l0(sae, x):
    """Reference for the one-pass stitch analyses: (MSE, L0) of a float64 forward of a built SAE on ``x``."""
    s = as_dtype(sae, torch.float64)
    with torch.no_grad():
        out = s(x.double())
        return float(((out.x_hat - x.double()) ** 2).sum(-1).mean()), float((out.acts != 0).sum(-1).double().mean())
