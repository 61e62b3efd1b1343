"""Seeded synthetic ladders with planted structure, for tests, benchmarks and the README's default data.

Each larger SAE's decoder is built from the next-smaller one so that the true relationship is known:

- *copies*: a small feature reappears with tiny noise (cos ~ 0.99);
- *splits*: a small feature becomes 2-3 children, each ``parent + noise`` with cos ~0.8-0.9 to it;
- *novel*: fresh random directions (cos to every small feature ~ 1/sqrt(d), far below 0.7);
- *near-tau* pairs (optional): children at exactly tau +- a tiny margin, to test the threshold decision.

Only numpy is used so that the generator runs anywhere; decoders are float32 ``[F, d]``.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class PlantedPair:
    """Ground truth for one adjacent pair: ``parent_of[j]`` = planted parent of large feature j, or -1 if novel."""

    parent_of: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _child_at_cos(parent: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly ``cos`` to the unit vector ``parent`` (computed in float64)."""
    r = rng.standard_normal(parent.shape[-1])
    r -= (r @ parent) * parent
    r /= np.linalg.norm(r)
    return cos * parent + np.sqrt(1.0 - cos * cos) * r


def planted_ladder(
    widths: list[int] | tuple[int, ...],
    d: int,
    *,
    seed: int = 0,
    copy_frac: float = 0.3,
    split_frac: float = 0.2,
    near_tau: float | None = None,
    n_near_tau: int = 0,
    near_tau_eps: float = 1e-6,
    norm_range: tuple[float, float] = (0.5, 2.0),
) -> tuple[list[np.ndarray], list[PlantedPair]]:
    """Decoders ``[w_i, d]`` for each width (ascending) and each adjacent pair's planted parents.

    Rows get random norms in ``norm_range`` so that code which forgets to normalise gives wrong answers.
    With ``near_tau`` set, ``n_near_tau`` children per pair are planted at cos ``near_tau +- near_tau_eps``.
    """
    if sorted(widths) != list(widths):
        raise ValueError(f"widths must be ascending, got {widths}")
    rng = np.random.default_rng(seed)
    units = [_unit(rng.standard_normal((widths[0], d)))]
    truths: list[PlantedPair] = []
    for w in widths[1:]:
        small = units[-1]
        n_small = small.shape[0]
        rows: list[np.ndarray] = []
        parents: list[int] = []
        order = rng.permutation(n_small)
        n_copy = int(copy_frac * min(n_small, w))
        n_split = int(split_frac * min(n_small, w) / 2.5)
        for p in order[:n_copy]:
            rows.append(_child_at_cos(small[p], rng.uniform(0.97, 0.999), rng))
            parents.append(int(p))
        for p in order[n_copy : n_copy + n_split]:
            for _ in range(int(rng.integers(2, 4))):
                rows.append(_child_at_cos(small[p], rng.uniform(0.8, 0.92), rng))
                parents.append(int(p))
        if near_tau is not None:
            for i, p in enumerate(order[n_copy + n_split : n_copy + n_split + n_near_tau]):
                sign = 1.0 if i % 2 == 0 else -1.0
                rows.append(_child_at_cos(small[p], near_tau + sign * near_tau_eps, rng))
                parents.append(int(p))
        n_novel = w - len(rows)
        if n_novel < 0:
            raise ValueError(f"width {w} is too small for the planted copies/splits of width {n_small}")
        rows.extend(_unit(rng.standard_normal((n_novel, d))))
        parents.extend([-1] * n_novel)
        perm = rng.permutation(w)
        units.append(np.asarray(rows)[perm])
        truths.append(PlantedPair(parent_of=np.asarray(parents)[perm]))
    decoders = []
    for u in units:
        norms = rng.uniform(*norm_range, size=(u.shape[0], 1))
        decoders.append((u * norms).astype(np.float32))
    return decoders, truths


def random_sae_tensors(W_dec: np.ndarray, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Canonical SAE tensors around a given decoder (encoder = scaled transpose plus noise), float32."""
    rng = np.random.default_rng(seed)
    F, d = W_dec.shape
    sq = np.square(np.linalg.norm(W_dec, axis=1, keepdims=True))
    W_enc = (W_dec / np.where(sq > 0, sq, 1.0)).T  # zero decoder rows get a zero (not NaN) encoder column
    W_enc = W_enc + 0.01 * rng.standard_normal((d, F))
    return {
        "W_enc": W_enc.astype(np.float32),
        "b_enc": (-0.1 * rng.random(F)).astype(np.float32),
        "W_dec": W_dec.astype(np.float32),
        "b_dec": (0.01 * rng.standard_normal(d)).astype(np.float32),
    }
