"""Exact cross-width matching of decoder directions: max cos per larger-SAE feature and every edge above tau.

For two SAEs with unit decoder rows ``small [n_s, d]`` and ``large [n_l, d]`` the similarity matrix is
``S = large @ small.T``. Matching needs, for every large row, the max of its row of ``S`` (and where it is),
and every entry ``S[i, j] > tau``. ``S`` for a 1M-feature SAE does not fit in memory, so :func:`match_pair`
streams over blocks of large rows whose slice of ``S`` fits a byte budget, and gets both answers from each
block before dropping it.

Exactness. The answers are defined as those of a float64 brute force over the float32 unit rows (method
``"brute64"``). Fast paths compute ``S`` approximately (fp32 GEMM, or bf16 where the hardware has it) and then
decide in float64 every pair that could matter, using a rigorous bound ``|S_approx - S| <= e`` (below). For
each row, with ``M`` its true max, ``m~`` its approximate max and ``c`` the float64 cos of its approximate
argmax (so ``c <= M`` and ``m~ <= M + e``):

* every true edge has ``S > tau``, so ``S_approx > tau - e``;
* every true argmax ``j*`` (and every tie) has ``S_approx >= M - e``, which is ``>= c - e`` and
  ``>= m~ - 2e``;

so the candidates ``S_approx >= min(tau - e, c - e)`` (bf16: a window of e, not 2e, below the max) or
``S_approx >= min(tau - e, m~ - 2e)`` (fp32: e is tiny and computing c would cost a dot per row) contain all
edges and all maxima. Each candidate's cos
is recomputed in float64 from the float32 unit rows (products of float32 numbers are exact in float64); edges
are the candidates whose float64 cos is ``> tau``, the max is the largest float64 cos among them (lowest index
on ties). So the edge set and argmax are those of the float64 brute force, and ``max_cos`` equals it to
float64 rounding (~1e-16, far inside 1e-6), however close a pair is to tau: pairs within ``e`` of tau are
always decided in float64. A loose ``e`` costs only re-checks (about one per row plus the edges with fp32, a
few per row with bf16).

The bound ``e`` (see :func:`rounding_margin`), for rows of norm at most ``1 + eta`` (float32 unit rows) and
``N = (1 + eta)^2 >= |x| |y| >= sum_k |x_k y_k|`` (Cauchy-Schwarz):

* fp32 GEMM: products and sums rounded with ``u32 = 2^-24``; whatever the summation order or FMA use,
  ``|fl(x.y) - x.y| <= gamma_d N`` with ``gamma_d = d u32 / (1 - d u32)`` (Higham, Accuracy and Stability,
  3.1). d=768: e = 4.6e-5.
* bf16 inputs (``u16 = 2^-8``, round to nearest): ``x~_k = x_k (1 + a_k)``, ``|a_k| <= u16``, so the rounded
  inputs change the exact dot product by at most ``(2 u16 + u16^2) N``; their products are exact in fp32 and
  the fp32 accumulation adds ``gamma_d (1 + u16)^2 N``; a bf16 output adds one more rounding,
  ``u16 (1 + e_in)``. d=768: e = 0.0079 with fp32 output, 0.0118 with bf16 output.

The bound needs fp32 accumulation, which :func:`featgraph.matching.blocked.exact_matmul_settings` enforces for
the call (``float32_matmul_precision("highest")`` so CPU fp32 GEMMs do not go through bf16; on CUDA, TF32 and
bf16 reduced-precision reductions off). AMX/AVX512-BF16 kernels add pairs of exact bf16 products into fp32
accumulators, which is fewer roundings than the bound counts; their flushing of denormals changes a product by
less than 2^-126, covered by the slack of :func:`rounding_margin`. tests/matching/test_matching.py checks the bound
against observed errors and checks every path against the brute force with pairs planted at tau +- 1e-6 (and
+- 3e-8, below fp32's own rounding error), both as a row's max and as a second-best match.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from featgraph.errors import BadWeightsError, ConfigError, ShapeMismatchError

METHODS = ("auto", "fp32", "bf16", "faiss", "brute64")

U32 = 2.0**-24
U16 = 2.0**-8  # bf16: 8 significant bits, round to nearest
# float32 unit rows have norm 1 to within a few float32 roundings; this bounds |x||y| for any pair of them.
NORM_SLACK = 1e-5


@dataclasses.dataclass
class PairMatch:
    """Matching of one (smaller, larger) pair of SAEs; indices are feature indices (rows of the decoders)."""

    max_cos: np.ndarray  # float64 [n_large]: max cos of each larger-SAE row to every smaller-SAE row
    argmax: np.ndarray  # int64 [n_large]: index in the smaller SAE of that max (lowest index on exact ties)
    edge_small: np.ndarray  # int64 [E]
    edge_large: np.ndarray  # int64 [E]
    edge_cos: np.ndarray  # float64 [E]: all pairs with cos > tau (strict), sorted by (edge_large, edge_small)

    @property
    def n_edges(self) -> int:
        return int(self.edge_cos.size)

    def same_as(self, other: PairMatch, *, max_tol: float = 1e-6) -> bool:
        """Same edge set and argmax, max_cos within ``max_tol``."""
        return (
            np.array_equal(self.edge_small, other.edge_small)
            and np.array_equal(self.edge_large, other.edge_large)
            and np.array_equal(self.argmax, other.argmax)
            and bool(np.all(np.abs(self.max_cos - other.max_cos) <= max_tol))
        )


def normalize_rows(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows (float32 ``[F, d]``) and row norms (float32 ``[F]``), computed in float64.

    Zero rows stay zero: they have no direction, so their cos to everything is 0.
    """
    if W.ndim != 2:
        raise ShapeMismatchError(f"decoder has shape {list(W.shape)}, expected [n_features, d_in]")
    W64 = np.asarray(W, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", W64, W64))
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    unit = (W64 * scale[:, None]).astype(np.float32)
    return unit, norms.astype(np.float32)


def rounding_margin(d: int, compute: str) -> float:
    """Rigorous bound on ``|S_approx - S|`` for a dot product of two float32 unit rows of length ``d``.

    ``compute``: ``"fp32"`` (fp32 inputs and accumulation), ``"bf16"`` (bf16 inputs, fp32 accumulation and
    output) or ``"bf16_out"`` (as bf16, then the result rounded to bf16). Derivation in the module docstring.
    """
    du = d * U32
    if du >= 0.5:
        raise ConfigError(f"d_in={d} is too large for the fp32 error bound")
    gamma = du / (1.0 - du)
    N = (1.0 + NORM_SLACK) ** 2
    if compute == "fp32":
        e = gamma * N
    elif compute in ("bf16", "bf16_out"):
        e = (2 * U16 + U16 * U16) * N + gamma * (1 + U16) ** 2 * N
        if compute == "bf16_out":
            e += U16 * (N + e)
    else:
        raise ConfigError(f"unknown compute mode {compute!r}")
    # a little headroom for denormal flushing and for the norm bound; it only costs re-checks
    return 1.01 * e + 1e-12


def _check_pair(small_unit: np.ndarray, large_unit: np.ndarray, tau: float) -> None:
    if small_unit.ndim != 2 or large_unit.ndim != 2:
        raise ShapeMismatchError(
            f"unit decoders must be 2-D, got {list(small_unit.shape)} and {list(large_unit.shape)}"
        )
    if small_unit.shape[1] != large_unit.shape[1]:
        raise ShapeMismatchError(
            f"d_in differs: smaller SAE {list(small_unit.shape)}, larger SAE {list(large_unit.shape)}"
        )
    if small_unit.shape[0] == 0:
        raise ShapeMismatchError("the smaller SAE has no features")
    if not (0.0 < tau < 1.0) or not math.isfinite(tau):
        raise ConfigError(f"tau must be in (0, 1), got {tau!r}")


def _as_unit(u: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 contiguous rows of norm 0 or 1 (to float32 rounding; the error bound assumes exactly that), and
    the indices of the zero rows."""
    u = np.ascontiguousarray(u, dtype=np.float32)
    if u.ndim != 2:
        raise ShapeMismatchError(
            f"{what}: unit decoder has shape {list(u.shape)}, expected [n_features, d_in]"
        )
    sq = np.einsum("ij,ij->i", u, u, dtype=np.float64)
    bad = np.flatnonzero(~((np.abs(sq - 1.0) <= 1e-5) | (sq == 0.0)))
    if bad.size:
        raise BadWeightsError(
            f"{what}: rows must be unit vectors (or zero) from normalize_rows; row {bad[0]} has norm "
            f"{float(np.sqrt(sq[bad[0]])):.6g} ({bad.size} such rows)"
        )
    return u, np.flatnonzero(sq == 0.0)


def _empty_edges() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)


def match_brute64(small_unit: np.ndarray, large_unit: np.ndarray, tau: float = 0.7) -> PairMatch:
    """The oracle: the full float64 similarity matrix. Small sizes only (n_large * n_small * 8 bytes)."""
    _check_pair(small_unit, large_unit, tau)
    S = large_unit.astype(np.float64) @ small_unit.astype(np.float64).T
    argmax = np.argmax(S, axis=1)  # first index on ties
    max_cos = S[np.arange(S.shape[0]), argmax]
    el, es = np.nonzero(S > tau)  # row-major: sorted by (large, small)
    return PairMatch(max_cos, argmax.astype(np.int64), es.astype(np.int64), el.astype(np.int64), S[el, es])


def _dot64(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray, chunk: int = 1 << 14) -> np.ndarray:
    """float64 ``a[ia[k]] . b[ib[k]]`` for every k, in chunks so the gathered rows stay small."""
    out = np.empty(ia.size, np.float64)
    for s in range(0, ia.size, chunk):
        x = a[ia[s : s + chunk]].astype(np.float64)
        y = b[ib[s : s + chunk]].astype(np.float64)
        out[s : s + chunk] = np.einsum("ij,ij->i", x, y)
    return out


def decide_candidates(
    cand_rows: np.ndarray, cand_cols: np.ndarray, cos: np.ndarray, tau: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keep the float64 answers among a batch of candidates sorted by (row, col).

    Returns ``(rows, row_max, row_argmax, edge_mask)``: for each distinct row, its largest float64 cos and the
    lowest column reaching it; and which candidates are edges (cos > tau).
    """
    starts = (
        np.flatnonzero(np.r_[True, cand_rows[1:] != cand_rows[:-1]]) if cand_rows.size else np.zeros(0, int)
    )
    if starts.size == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool)
    row_max = np.maximum.reduceat(cos, starts)
    counts = np.diff(np.r_[starts, cos.size])
    hit = np.flatnonzero(cos == np.repeat(row_max, counts))
    # hits are in (row, col) order, so the first hit of each row is its lowest-index max
    first = np.r_[True, cand_rows[hit][1:] != cand_rows[hit][:-1]]
    return cand_rows[starts], row_max, cand_cols[hit[first]], cos > tau


class _PairAccumulator:
    """Collects one pair's per-row maxima and edges from the engine's candidate batches."""

    def __init__(self, n_large: int, zero_rows: np.ndarray):
        self.max_cos = np.full(n_large, np.nan)
        self.argmax = np.full(n_large, -1, np.int64)
        # a zero row has cos exactly 0 to every row: brute force gives max 0 at index 0
        self.max_cos[zero_rows] = 0.0
        self.argmax[zero_rows] = 0
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(
        self, row0: int, cand_rows: np.ndarray, cand_cols: np.ndarray, cos: np.ndarray, tau: float
    ) -> None:
        rows, row_max, row_arg, edge = decide_candidates(cand_rows, cand_cols, cos, tau)
        self.max_cos[rows + row0] = row_max
        self.argmax[rows + row0] = row_arg
        if edge.any():
            self.parts.append((cand_cols[edge], cand_rows[edge] + row0, cos[edge]))

    def result(self) -> PairMatch:
        assert not np.isnan(self.max_cos).any(), "every row got its max from some candidate batch"
        if self.parts:
            es, el, ec = (np.concatenate(p) for p in zip(*self.parts, strict=True))
            # batches come in row order except a block's low-threshold rows, yielded first (they have edges
            # only when tau <= 3e); keep the documented (large, small) order whatever happens
            order = np.lexsort((es, el))
            es, el, ec = es[order], el[order], ec[order]
        else:
            es, el, ec = _empty_edges()
        return PairMatch(self.max_cos, self.argmax, es.astype(np.int64), el.astype(np.int64), ec)


def match_faiss(small_unit: np.ndarray, large_unit: np.ndarray, tau: float = 0.7) -> PairMatch:
    """The baseline: faiss ``IndexFlatIP`` search(k=1) for the max plus range_search for the edges.

    To give the same edge set as the other methods, range_search runs at ``tau - e`` (the fp32 bound) and its
    results are decided in float64; the max is faiss's fp32 argmax with its cos recomputed in float64 (so on
    an fp32 near-tie its argmax may differ from brute force).
    """
    import faiss

    _check_pair(small_unit, large_unit, tau)
    e = rounding_margin(small_unit.shape[1], "fp32")
    index = faiss.IndexFlatIP(small_unit.shape[1])
    index.add(np.ascontiguousarray(small_unit, dtype=np.float32))
    queries = np.ascontiguousarray(large_unit, dtype=np.float32)
    _, ids = index.search(queries, 1)
    argmax = ids[:, 0].astype(np.int64)
    lims, _, cols = index.range_search(queries, float(tau - e))
    rows = np.repeat(np.arange(large_unit.shape[0]), np.diff(lims).astype(np.int64))
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order].astype(np.int64)
    cos = _dot64(large_unit, small_unit, rows, cols)
    keep = cos > tau
    max_cos = _dot64(large_unit, small_unit, np.arange(large_unit.shape[0]), argmax)
    return PairMatch(max_cos, argmax, cols[keep], rows[keep].astype(np.int64), cos[keep])


# -- one definition each of "novel" and "an SAE's unit rows" (stitch, frankenstein and families use these) ------
def is_novel(max_cos: np.ndarray, tau: float) -> np.ndarray:
    """Boolean mask of the larger SAE's *novel* features: max cos to the smaller SAE ``<= tau`` (no edge, since
    edges are the strict ``cos > tau``)."""
    return np.asarray(max_cos) <= tau


def sae_unit_rows(sae) -> np.ndarray:
    """Unit decoder rows (float32 ``[F, d]``) of a loaded SAE (anything with a ``W_dec`` tensor), via
    :func:`normalize_rows`; works without importing torch here."""
    W = sae.W_dec.detach().cpu().double().numpy()
    return normalize_rows(W)[0]
