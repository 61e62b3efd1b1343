"""The engine behind :func:`featgraph.matching.match_pair`: blocked GEMM, candidates, float64 re-check.

One block = a slice of larger-SAE rows against every smaller-SAE row, computed into one reused buffer (so the
pages are touched once, not once per block). From each block, in one GEMM and one read of the buffer:

1. ``C`` = max over groups of ``GROUP`` consecutive columns, taken over the raw bits as integers (the one
   streaming read of the buffer);
2. each row's threshold ``t = min(tau - e, L)`` from its approximate max or the exact cos of its approximate
   argmax (:func:`stream_pair` says which and why);
3. only the groups with ``C >= t`` (a tiny fraction) are gathered and compared entry by entry;
4. every candidate is recomputed in float64; :func:`featgraph.matching.decide_candidates` keeps the answers.

The same code runs on CPU and CUDA torch tensors. Each SAE is normalised, converted to the GEMM dtype, padded
and moved to the device once (:class:`PreparedUnits`); a ladder run reuses it as the larger SAE of one pair
and the smaller SAE of the next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import platform
from collections.abc import Iterator

import numpy as np
import torch

from featgraph.errors import ConfigError

log = logging.getLogger(__name__)

# columns per group of the first-stage max: small enough to gather cheaply, large enough to stream
GROUP = 128
# GEMM dtype and the rounding model of its output (see featgraph.matching.rounding_margin)
COMPUTE = {"fp32": (torch.float32, "fp32"), "bf16": (torch.bfloat16, "bf16_out")}
# integers of the same width: their max over raw bits is the first-stage max (see stream_pair)
KEY_DTYPE = {torch.float32: torch.int32, torch.bfloat16: torch.int16}
# margins above this (bf16) take the row's exact best cos as the lower bound of its max (see stream_pair)
EXACT_BEST_ABOVE = 1e-4


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but torch sees no CUDA device")
    return torch.device(device)


def fast_method(device: torch.device) -> str:
    """bf16 where the hardware multiplies it natively (AMX / AVX512-BF16 CPUs, Ampere+ GPUs), else fp32."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp32"
    cpu = torch.cpu
    has_bf16 = (
        getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
    )
    return "bf16" if has_bf16 else "fp32"


@contextlib.contextmanager
def exact_matmul_settings(device: torch.device) -> Iterator[None]:
    """Make fp32 GEMMs true fp32 and bf16 GEMMs accumulate in fp32, whatever the caller set globally.

    The error bound of the re-check assumes both. ``float32_matmul_precision("highest")`` turns off bf16 for
    fp32 GEMMs on the CPU (oneDNN) and TF32 on CUDA; on CUDA, bf16 GEMMs must also not reduce in reduced
    precision.
    """
    old_prec = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    matmul = torch.backends.cuda.matmul
    old_bf16 = None
    if device.type == "cuda":
        old_bf16 = matmul.allow_bf16_reduced_precision_reduction
        matmul.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old_prec)
        if old_bf16 is not None:
            matmul.allow_bf16_reduced_precision_reduction = old_bf16


@dataclasses.dataclass
class PreparedUnits:
    """One SAE's unit rows on a device: float32 for the re-check, the GEMM dtype for the candidates.

    Rows are padded with zeros to a multiple of ``GROUP`` so that a block row splits into whole groups; the
    padded columns of a block are set to -inf before the first-stage max, so they are never candidates.
    """

    unit32: torch.Tensor  # [n_pad, d] float32
    gemm: torch.Tensor  # [n_pad, d] GEMM dtype (the same tensor as unit32 for fp32)
    n: int
    zero_rows: np.ndarray  # indices of all-zero rows: cos 0 to everything

    @classmethod
    def build(
        cls, unit: np.ndarray, device: torch.device, method: str, zero_rows: np.ndarray | None = None
    ) -> PreparedUnits:
        n, d = unit.shape
        n_pad = -(-n // GROUP) * GROUP
        src = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))
        if n_pad == n:
            u = src  # no copy on the CPU: the caller's array is used as it is
        else:
            u = torch.zeros(n_pad, d, dtype=torch.float32)
            u[:n] = src
        u = u.to(device)
        dtype = COMPUTE[method][0]
        gemm = u if dtype == torch.float32 else u.to(dtype)
        if zero_rows is None:
            zero_rows = torch.nonzero(src.abs().amax(dim=1) == 0).flatten().numpy()
        return cls(unit32=u, gemm=gemm, n=n, zero_rows=zero_rows)


def _dot64(a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor, chunk: int) -> np.ndarray:
    """float64 ``a[ia[k]] . b[ib[k]]`` for every k, chunked (float32 rows: products exact in float64).

    On the CPU numpy's einsum with a float64 accumulator measured several times faster than torch's gather and
    cast.
    """
    if a.device.type == "cpu":
        return _dot64_numpy(a.numpy(), b.numpy(), ia.numpy(), ib.numpy(), chunk)
    return _dot64_torch(a, b, ia, ib, chunk)


def _dot64_numpy(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, chunk: int) -> np.ndarray:
    out = np.empty(ia.size, np.float64)
    for s in range(0, ia.size, chunk):
        out[s : s + chunk] = np.einsum(
            "ij,ij->i", a[ia[s : s + chunk]], b[ib[s : s + chunk]], dtype=np.float64
        )
    return out


def _dot64_torch(
    a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor, chunk: int
) -> np.ndarray:
    res = torch.empty(ia.numel(), dtype=torch.float64, device=a.device)
    for s in range(0, ia.numel(), chunk):
        x = a.index_select(0, ia[s : s + chunk]).double()
        y = b.index_select(0, ib[s : s + chunk]).double()
        res[s : s + chunk] = x.mul_(y).sum(dim=1)
    return res.cpu().numpy()


def _row_batches(hit_rows: torch.Tensor, n_rows: int, cap: int) -> list[tuple[int, int]]:
    """Split the hits (sorted by row) into slices of about ``cap`` hits, never splitting a row."""
    n = hit_rows.numel()
    if n <= cap:
        return [(0, n)]
    counts = torch.bincount(hit_rows, minlength=n_rows).cumsum(0).cpu().numpy()
    cuts = [0]
    while cuts[-1] < n:
        nxt = int(np.searchsorted(counts, cuts[-1] + cap, side="right"))  # rows wholly inside the budget
        end = int(counts[nxt - 1]) if nxt > 0 else 0
        if end <= cuts[-1]:  # one row alone exceeds the budget: take it whole
            end = int(counts[np.searchsorted(counts, cuts[-1], side="right")])
        cuts.append(end)
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def block_rows(n_small_pad: int, n_large: int, dtype: torch.dtype, block_bytes: int) -> int:
    """Rows per block: 3/4 of the budget for the similarity block, the rest for first-stage maxima, gathers
    and the re-check."""
    item = torch.finfo(dtype).bits // 8
    return max(1, min(n_large, int(0.75 * block_bytes) // (n_small_pad * item)))


class BlockBuffer:
    """One flat buffer for the similarity blocks of every pair of a run: its pages are faulted in once (a
    fresh 1 GB buffer per pair costs about a quarter of a second of page faults on the CPU)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.flat: torch.Tensor | None = None

    def reserve(self, nbytes: int) -> None:
        if self.flat is None or self.flat.numel() < nbytes:
            self.flat = None  # free the old one before allocating the larger one
            self.flat = torch.empty(nbytes, dtype=torch.uint8, device=self.device)

    def get(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        nbytes = rows * cols * (torch.finfo(dtype).bits // 8)
        self.reserve(nbytes)
        return self.flat[:nbytes].view(dtype).view(rows, cols)


def stream_pair(
    small: PreparedUnits,
    large: PreparedUnits,
    tau: float,
    margin: float,
    *,
    block_bytes: int,
    on_block=None,
    buffer: BlockBuffer | None = None,
):
    """Yield ``(row0, cand_rows, cand_cols, cos64)`` per batch of rows: candidates sorted by (row, col),
    block-local rows, and their float64 cos (numpy). Zero rows of the larger SAE get no candidates (the caller
    fills them in).

    ``margin`` bounds ``|S_approx - S|`` for the GEMM dtype. A row's candidates are the entries with
    ``S_approx >= t = min(tau - e, L)``, where ``L`` is ``c - e`` with ``c`` the float64 cos of the row's
    approximate argmax (bf16), or ``m~ - 2e`` with ``m~`` the approximate max (fp32, where e is tiny and one
    dot per row would cost more than it saves). Any pair's exact cos is at most the row's true max ``M``, so
    ``c <= M``; and ``m~ <= M + e``. Either way the true argmax (``S_approx >= M - e``) qualifies, as does
    every edge and the approximate argmax itself.
    """
    dev = small.gemm.device
    n_s, n_s_pad = small.n, small.gemm.shape[0]
    n_l, d = large.n, large.gemm.shape[1]
    dtype = small.gemm.dtype
    key_dtype = KEY_DTYPE[dtype]
    rows = block_rows(n_s_pad, n_l, dtype, block_bytes)
    hit_cap = max(1, int(0.08 * block_bytes) // (GROUP * 8))
    cand_chunk = max(256, int(0.02 * block_bytes) // (d * 8 * 2))
    n_groups = n_s_pad // GROUP
    buf = (buffer or BlockBuffer(dev)).get(rows, n_s_pad, dtype)
    gkey_buf = torch.empty(rows, n_groups, dtype=key_dtype, device=dev)
    zero_large = np.zeros(n_l, dtype=bool)
    zero_large[large.zero_rows] = True
    edge_t = _f32_at_most(np.array([tau - margin]))[0]
    # with a bf16 margin, halving the max window (see above) saves far more re-checks than one dot per row
    exact_best = margin > EXACT_BEST_ABOVE
    for r0 in range(0, n_l, rows):
        r = min(rows, n_l - r0)
        S = buf[:r]
        keys = S.view(key_dtype).view(r, n_groups, GROUP)
        gkey = gkey_buf[:r]
        _gemm(large.gemm[r0 : r0 + r], small.gemm, S)
        if n_s_pad > n_s:
            S[:, n_s:] = float("-inf")
        # max of the raw bits: for values >= 0 the bit order is the value order, and a group with no value >=
        # 0 has a negative key; exact for every comparison with a threshold t > 0 (see _key_threshold). An
        # integer max also skips the NaN handling of a float max: this one full read of the block is 25-50%
        # faster. (Splitting the GEMM into cache-sized sub-blocks so that this read hits the cache was
        # measured slower: the small GEMMs lose more than the read saves.)
        torch.amax(keys, dim=2, out=gkey)
        key_max, best_g = torch.max(gkey, dim=1)
        neg = torch.nonzero(key_max < 0).flatten()  # no value >= 0 in the row: keys do not order it (rare)
        if exact_best:
            # an approximate argmax of each row, then its exact cos c <= M: the window below M is then only e
            local = torch.arange(r, device=dev)
            best_j = best_g * GROUP + torch.argmax(keys[local, best_g], dim=1)
            if neg.numel():
                best_j[neg] = torch.argmax(S[neg, :n_s].float(), dim=1)
            c = _dot64(large.unit32, small.unit32, local + r0, best_j, cand_chunk)
            lower = _f32_at_most(c - margin)
        else:
            # the approximate max m~ <= M + e: candidates down to m~ - 2e (fp32: e is tiny, so this is cheaper
            # than computing c)
            m = key_max.view(dtype).float()
            if neg.numel():
                m[neg] = S[neg, :n_s].float().amax(dim=1)
            m64 = m.cpu().numpy().astype(np.float64)
            lower = _f32_at_most(m64 - 2 * margin)
        t_np = np.minimum(lower, edge_t)
        t_np[zero_large[r0 : r0 + r]] = np.inf
        t = torch.from_numpy(t_np).to(dev)
        # rows whose threshold is <= 0 (a best cos below e: tiny SAEs only) are compared as floats, row by row
        low = np.flatnonzero(t_np <= 0)
        if low.size:
            low_t = torch.from_numpy(low).to(dev)
            lr, lc = torch.nonzero(S[low_t].float() >= t[low_t][:, None], as_tuple=True)
            cand_rows, cand_cols = low_t[lr], lc
            cos = _dot64(large.unit32, small.unit32, cand_rows + r0, cand_cols, cand_chunk)
            yield r0, cand_rows.cpu().numpy(), cand_cols.cpu().numpy(), cos
        kt = _key_threshold(t, dtype)  # int max for the low rows, so they have no hits here
        hit_r, hit_g = torch.nonzero(gkey >= kt[:, None], as_tuple=True)
        for h0, h1 in _row_batches(hit_r, r, hit_cap):
            hr, hg = hit_r[h0:h1], hit_g[h0:h1]
            hh, kk = torch.nonzero(keys[hr, hg] >= kt[hr][:, None], as_tuple=True)
            cand_rows = hr[hh]
            cand_cols = hg[hh] * GROUP + kk
            cos = _dot64(large.unit32, small.unit32, cand_rows + r0, cand_cols, cand_chunk)
            yield r0, cand_rows.cpu().numpy(), cand_cols.cpu().numpy(), cos
        if on_block is not None:
            on_block(r)


def _key_threshold(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Integer keys ``k`` with ``bits(x) >= k`` iff ``x >= t`` for every value ``x`` of ``dtype`` (t > 0).

    ``t`` is float32. The key is the bit pattern of the smallest ``dtype`` value >= t; rows with ``t <= 0`` or
    ``t = inf`` get the largest key, which no finite value reaches (they are handled elsewhere or have no
    candidates).
    """
    key_dtype = KEY_DTYPE[dtype]
    big = torch.iinfo(key_dtype).max
    tv = t.to(dtype)
    k = tv.view(key_dtype).clone()
    k += (tv.float() < t).to(key_dtype)  # rounded down: the next value up (positive floats: bits + 1)
    k[(t <= 0) | torch.isinf(t)] = big
    return k


def _f32_at_most(x: np.ndarray) -> np.ndarray:
    """float32 values no larger than ``x`` (float64): a threshold must never round up past its bound."""
    y = x.astype(np.float32)
    up = y.astype(np.float64) > x
    y[up] = np.nextafter(y[up], np.float32(-np.inf))
    return y


def _gemm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
    """``out = a @ b.T`` into the reused buffer, with the BLAS that is faster for fp32 on this CPU."""
    if a.device.type == "cpu" and a.dtype == torch.float32 and fp32_cpu_backend() == "numpy":
        np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
    else:
        torch.mm(a, b.T, out=out)


@functools.cache
def fp32_cpu_backend() -> str:
    """``torch`` (MKL / oneDNN) on Intel CPUs, ``numpy`` (OpenBLAS) elsewhere.

    The issue reports OpenBLAS at 177 GFLOP/s against 150 for torch's MKL on a 2-core AMD machine; on this
    project's 2-core Intel Sapphire Rapids machine torch measured 5-10% faster than OpenBLAS for
    [4096-16384, 768] x [768, 12288-49152] blocks (noisy: the machine was shared).
    """
    try:
        with open("/proc/cpuinfo") as f:
            intel = "GenuineIntel" in f.read(4096)
    except OSError:
        intel = "intel" in platform.processor().lower()
    return "torch" if intel else "numpy"
