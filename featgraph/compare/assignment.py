"""Exact one-to-one assignment of two SAEs' features maximising the total decoder cosine.

For unit decoder rows ``A [n_a, d]`` and ``B [n_b, d]`` the answer is a matching of ``min(n_a, n_b)`` pairs
``(i, j)`` with the largest total ``sum cos(A_i, B_j)``: the same optimum as scipy's dense
``linear_sum_assignment(A @ B.T, maximize=True)``, without its ``O(n^3)`` dense solve or its ``n_a x n_b`` float64
matrix.

Algorithm (rows are the smaller side; the two are swapped when ``n_a > n_b`` and swapped back at the end):

1. *Candidates.* One blocked GEMM pass over ``S = A @ B.T`` (fp32, or bf16 where the CPU/GPU has it; the kernel,
   block buffer and unit-row preparation of :mod:`featgraph.matching.blocked`) builds the *check lists*: for each
   row and each column a bound ``r_i`` / ``c_j`` and every entry at or above it with its approximate value, so
   that every entry off the lists lies below both bounds (:mod:`featgraph.compare.assign_pass`: on large
   problems the bounds come from maxima over groups of 128 entries, no sort of the matrix; on small ones from
   each row's and column's ``k_check`` largest). Rows whose largest value is below ``LONG_ROWS_BELOW``, the
   unshared features, get a lower bound and a longer list: their assigned cos is close to their k-th largest,
   so a short list leaves the certificate's bound too weak. Up to ``k`` of the best listed entries of each row
   and column (those within ``GRAPH_WINDOW`` of its best) form the first sparse graph, their cos recomputed in
   float64 (products of float32 numbers are exact in float64). The pairs ``(i, i)`` are added too: they form a
   full matching, so the sparse problem is always feasible (no row is left without a partner, whatever the
   candidates).
2. *Sparse solve.* ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` (LAPJVsp) on the candidate
   graph with weights ``2 - cos`` (positive, and a constant shift per pair changes no optimum because every
   solution has ``min(n_a, n_b)`` pairs).
3. *Duals.* The LP dual of the assignment (rows must be matched, columns at most once) in maximise form is
   ``U_i + V_j >= cos_ij`` for every pair, ``V_j >= 0``, with equality on matched pairs and ``V_j = 0`` on
   unmatched columns (complementary slackness). With ``V_{m(i)} = cos_{i,m(i)} - U_i`` the constraints of the
   candidate edges become a shortest-path system on the rows: ``U_k <= U_i + (cos_{k,m(k)} - cos_ij)`` for each
   candidate ``(i, j)`` with ``j`` matched to ``k``, ``U_i <= cos_{i,m(i)}`` and ``U_i >= cos_ij`` for unmatched
   candidate columns ``j``. Its cycles are the alternating cycles and paths of the matching, none negative
   because the sparse solution is optimal on its graph, so Bellman-Ford (vectorised, only the rows that changed
   are relaxed again) converges to feasible ``U``.
4. *Certificate on the FULL matrix.* Every pair off the check lists has ``cos_ij <= min(r_i, c_j) + e_c``
   (``r_i``, ``c_j``: the last value of its row's and column's list, ``e_c``: the rigorous error bound of the
   candidate GEMM, :func:`featgraph.matching.rounding_margin`). A sorted sweep over the columns finds, for every
   row at once, whether ``U_i + V_j >= min(r_i, c_j) + e_c`` holds for all ``j``; rows where it does not are
   recomputed with an fp32 GEMM in blocks (and kept for the next round within a memory budget) and every entry
   within ``2e + 1e-6`` of violating ``U_i + V_j >= S_ij`` is decided in float64 (``e``: the fp32 bound). Entries
   of the check lists are flagged from their approximate values the same way, and the sparse graph's edges are
   checked in float64 directly. Entries that violate the constraint by more than ``tol`` are added to the sparse
   graph (with each checked row's ``k`` lowest-slack entries below ``PRICE_WINDOW``) and steps 2-4
   repeat until none does.

Why the answer is optimal. When no entry violates, ``(U, V)`` is dual feasible for the FULL problem up to
``delta = max(0, -min_ij (U_i + V_j - cos_ij))`` (float64, over every pair: unflagged pairs are provably
non-negative). For any full matching ``M'``: ``total(M') = sum_{M'} cos <= sum_{M'} (U_i + V_j + delta) <= sum U
+ sum V + n delta`` (``V >= 0``), and our matching is tight: ``total = sum U + sum V``. So the optimum exceeds our
total by at most ``gap_bound = min(n_a, n_b) * delta``, reported on the result; in practice ``delta`` is 0 or a
float64 rounding (~1e-16), far below any difference between two distinct matchings of non-tied cosines.

Float rounding. Candidate and certificate decisions are made on float64 cos recomputed from the float32 rows;
the fp32 GEMM is only used to select which pairs to recompute, with the bound ``e`` (and ``1e-6`` for the
float32 subtraction of ``V``) so that no violating pair can be missed. Bellman-Ford accepts a relaxation only
when it lowers ``U`` by more than ``1e-12``, so float64 ties (equal cosines, duplicated rows) cannot make it
cycle forever on a rounding-level "negative cycle"; the price is a violation of at most ``1e-12`` per edge,
inside ``tol`` (1e-9) and counted in ``gap_bound``. Ties in the optimum are broken by the solver: the matching
may differ from scipy's but the total is the same.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from featgraph.compare.solver import LONG_FACTOR, _Solver, bellman_ford_min  # noqa: F401 (public here)
from featgraph.errors import ConfigError, ShapeMismatchError
from featgraph.matching.core import _as_unit

log = logging.getLogger(__name__)

@dataclasses.dataclass
class Assignment:
    """An optimal one-to-one assignment of A's features to B's (``min(n_a, n_b)`` pairs, sorted by ``rows``)."""

    rows: np.ndarray  # int64 [m]: features of A
    cols: np.ndarray  # int64 [m]: their partners in B
    cos: np.ndarray  # float64 [m]: decoder cos of each pair (float64 from the float32 unit rows)
    n_a: int
    n_b: int
    gap_bound: float  # certified: optimum total - total <= gap_bound
    rounds: int  # sparse solves until certified
    n_candidates: int  # edges of the final sparse graph
    n_added: int  # edges the certificate added to the first candidate graph

    @property
    def total(self) -> float:
        return float(self.cos.sum())

    @property
    def pw_mcc(self) -> float:
        """PW-MCC: the mean cos of the assigned pairs."""
        return float(self.cos.mean()) if self.cos.size else float("nan")

    def shared_share(self, tau: float = 0.7) -> float:
        """Share of the assigned pairs (``min(n_a, n_b)`` of them) whose cos is above ``tau`` (strict)."""
        return float(np.mean(self.cos > tau)) if self.cos.size else float("nan")


def assign(
    a_unit: np.ndarray,
    b_unit: np.ndarray,
    *,
    k: int = 32,
    k_check: int = 64,
    method: str = "auto",
    device: str = "cpu",
    block_bytes: int = 1 << 28,
    tol: float = 1e-9,
    max_rounds: int = 100,
) -> Assignment:
    """The assignment of ``a_unit``'s rows to ``b_unit``'s maximising the total cos, certified optimal.

    ``a_unit`` / ``b_unit``: unit (or zero) float32 rows from :func:`featgraph.matching.normalize_rows`, same
    ``d_in``, any widths. ``k``: the first sparse graph's edges per row and per column at most (exact float64 cos
    each); ``k_check``: about how many approximate values per row and per column the check lists hold, the
    certificate checking them directly and bounding everything else by their bound (larger: fewer rows
    recomputed by the certificate, a slower candidate pass). ``method``: the candidate pass's GEMM, ``"fp32"``,
    ``"bf16"`` or ``"auto"`` (bf16 where the hardware has it, as in :func:`featgraph.matching.match_pair`); the
    certificate's recomputed rows are always fp32. ``block_bytes`` bounds a GEMM block (and twice it the rows
    cached between rounds). See the module docstring for why the result is optimal and how rounding is handled.
    """
    a, _ = _as_unit(a_unit, f"SAE A ({np.shape(a_unit)[0] if np.ndim(a_unit) else 0} rows)")
    b, _ = _as_unit(b_unit, f"SAE B ({np.shape(b_unit)[0] if np.ndim(b_unit) else 0} rows)")
    if a.shape[1] != b.shape[1]:
        raise ShapeMismatchError(f"d_in differs: SAE A {list(a.shape)}, SAE B {list(b.shape)}")
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ShapeMismatchError(f"an SAE has no features: A {list(a.shape)}, B {list(b.shape)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and 0 <= tol < 1e-3):
        raise ConfigError(f"tol must be in [0, 1e-3), got {tol!r}")
    if block_bytes < 1 << 20:
        raise ConfigError(f"block_bytes must be at least 1 MiB, got {block_bytes}")
    swap = a.shape[0] > b.shape[0]
    if swap:
        a, b = b, a
    res = _Solver(a, b, int(k), int(k_check), method, device, block_bytes, tol).run(max_rounds)
    rows, cols, cos = res["rows"], res["cols"], res["cos"]
    if swap:
        rows, cols = cols, rows
    order = np.argsort(rows, kind="stable")
    return Assignment(
        rows=rows[order].astype(np.int64),
        cols=cols[order].astype(np.int64),
        cos=cos[order],
        n_a=int(a_unit.shape[0]),
        n_b=int(b_unit.shape[0]),
        gap_bound=res["gap_bound"],
        rounds=res["rounds"],
        n_candidates=res["n_candidates"],
        n_added=res["n_added"],
    )


def assign_dense(a_unit: np.ndarray, b_unit: np.ndarray) -> Assignment:
    """The baseline and test oracle: scipy's dense ``linear_sum_assignment`` on the full float64 cos matrix."""
    from scipy.optimize import linear_sum_assignment

    a = np.asarray(a_unit, np.float64)
    b = np.asarray(b_unit, np.float64)
    S = a @ b.T
    r, c = linear_sum_assignment(S, maximize=True)
    return Assignment(r.astype(np.int64), c.astype(np.int64), S[r, c], a.shape[0], b.shape[0], 0.0, 1, S.size, 0)
