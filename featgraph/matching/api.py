"""The matching entry points: method/device resolution, :func:`match_pair`, :func:`match_ladder` and
:func:`match_saes`. The exactness argument is in :mod:`featgraph.matching.core`'s docstring; the blocked GEMM
engine that streams the similarity matrix is :mod:`featgraph.matching.blocked`.
"""

from __future__ import annotations

import logging

import numpy as np

from featgraph.errors import ConfigError
from featgraph.matching.core import (
    METHODS,
    PairMatch,
    _as_unit,
    _check_pair,
    _PairAccumulator,
    match_brute64,
    match_faiss,
    rounding_margin,
    sae_unit_rows,
)

log = logging.getLogger("featgraph.matching")


def resolve_method_device(method: str = "auto", device: str = "auto") -> tuple[str, str]:
    """What :func:`match_pair` will run for these options: (method, device type). brute64 and faiss are CPU-only."""
    if method in ("brute64", "faiss"):
        return method, "cpu"
    from featgraph.matching.blocked import resolve_device

    dev = resolve_device(device)
    return _resolve_method(method, dev), dev.type


def _resolve_method(method: str, device) -> str:
    from featgraph.matching.blocked import fast_method

    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    return fast_method(device) if method == "auto" else method


def _match_prepared(
    small, large, tau: float, method: str, device, block_bytes: int, bar, buffer=None
) -> PairMatch:
    import torch

    from featgraph.matching.blocked import COMPUTE, exact_matmul_settings, stream_pair

    d = large.gemm.shape[1]
    e = rounding_margin(d, COMPUTE[method][1])
    acc = _PairAccumulator(large.n, large.zero_rows)
    on_block = bar.update if bar is not None else None
    with exact_matmul_settings(device), torch.inference_mode():
        for row0, cr, cc, cos in stream_pair(
            small, large, tau, e, block_bytes=block_bytes, on_block=on_block, buffer=buffer
        ):
            acc.add(row0, cr, cc, cos, tau)
    return acc.result()


def _check_budget(block_bytes: int, n_small: int) -> None:
    if block_bytes < 1 << 20:
        raise ConfigError(f"block_bytes must be at least 1 MiB, got {block_bytes}")


def match_pair(
    small_unit: np.ndarray,
    large_unit: np.ndarray,
    tau: float = 0.7,
    *,
    method: str = "auto",
    device: str = "auto",
    block_bytes: int = 1 << 30,
    progress: bool = True,
) -> PairMatch:
    """Max cos / argmax of every larger-SAE row against the smaller SAE, and every edge with cos > tau.

    ``small_unit`` / ``large_unit`` are unit rows from :func:`normalize_rows`. ``method``: ``"fp32"`` (blocked
    exact), ``"bf16"`` (bf16 candidates), ``"auto"`` (bf16 where the hardware has it), ``"faiss"`` (baseline),
    ``"brute64"`` (oracle, small sizes). Every method but ``"faiss"`` returns the edge set and argmax of a
    float64 brute force and its max cos to float64 rounding (see the module docstring); ``device`` picks CPU
    or CUDA. ``block_bytes`` bounds the memory used beyond the decoders.
    """
    return match_ladder(
        [small_unit, large_unit],
        tau,
        method=method,
        device=device,
        block_bytes=block_bytes,
        progress=progress,
    )[0]


def match_ladder(
    units: list[np.ndarray],
    tau: float = 0.7,
    *,
    method: str = "auto",
    device: str = "auto",
    block_bytes: int = 1 << 30,
    progress: bool = True,
) -> list[PairMatch]:
    """Match every adjacent (smaller, larger) pair of a ladder's unit decoders (ascending width).

    Each SAE is converted and moved to the device once and serves as the larger SAE of one pair and the
    smaller of the next. One progress bar counts the larger SAEs' rows over all pairs.
    """
    from tqdm.auto import tqdm

    from featgraph.matching.blocked import (
        COMPUTE,
        GROUP,
        BlockBuffer,
        PreparedUnits,
        block_rows,
        resolve_device,
    )

    if len(units) < 2:
        raise ConfigError(f"a ladder match needs at least 2 SAEs, got {len(units)}")
    checked = [_as_unit(u, f"SAE {i} of the ladder ({np.shape(u)[0]} rows)") for i, u in enumerate(units)]
    units = [u for u, _ in checked]
    for a, b in zip(units[:-1], units[1:], strict=True):
        _check_pair(a, b, tau)
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if method == "brute64":
        return [match_brute64(a, b, tau) for a, b in zip(units[:-1], units[1:], strict=True)]
    if method == "faiss":
        return [match_faiss(a, b, tau) for a, b in zip(units[:-1], units[1:], strict=True)]
    _check_budget(block_bytes, 0)
    dev = resolve_device(device)
    method = _resolve_method(method, dev)
    log.info("matching %d pairs with method=%s on %s", len(units) - 1, method, dev)
    total = sum(u.shape[0] for u in units[1:])
    # one block buffer for the whole run, as large as the largest pair needs
    dtype = COMPUTE[method][0]
    buffer = BlockBuffer(dev)
    need = 0
    for a, b in zip(units[:-1], units[1:], strict=True):
        n_pad = -(-a.shape[0] // GROUP) * GROUP
        need = max(need, block_rows(n_pad, b.shape[0], dtype, block_bytes) * n_pad * dtype.itemsize)
    buffer.reserve(need)
    out = []
    with tqdm(total=total, disable=not progress, desc=f"match ({method}, {dev.type})", unit="row") as bar:
        prev = PreparedUnits.build(units[0], dev, method, checked[0][1])
        for u, zero_rows in checked[1:]:
            cur = PreparedUnits.build(u, dev, method, zero_rows)
            out.append(_match_prepared(prev, cur, tau, method, dev, block_bytes, bar, buffer))
            prev = cur  # this SAE is the smaller one of the next pair: reuse its upload
    return out


def match_saes(small, large, tau: float = 0.7, *, progress: bool = True) -> PairMatch:
    """Decoder-cos matching of two loaded SAEs (edges: cos > tau), as :func:`match_pair` on their unit rows."""
    return match_pair(sae_unit_rows(small), sae_unit_rows(large), tau, progress=progress)
