"""The certified sparse solver behind :func:`featgraph.compare.assignment.assign`: candidate and check lists from
a blocked GEMM, LAPJVsp on the sparse graph, Bellman-Ford duals and the full-matrix certificate (the method and its
proof are the docstring of :mod:`featgraph.compare.assignment`).
"""

from __future__ import annotations

import logging

import numpy as np

from featgraph.errors import ConfigError
from featgraph.matching.core import rounding_margin

log = logging.getLogger("featgraph.assignment")

# a relaxation must lower a potential by more than this to count (see the module docstring: ties)
RELAX_TOL = 1e-12
# while some entry violates, entries with slack below this are added too (fewer rounds)
PRICE_WINDOW = 0.01
# rows whose largest approximate cos is below this get check lists LONG_FACTOR times longer (see candidates())
LONG_ROWS_BELOW = 0.35
LONG_FACTOR = 4
# ... and in the group version, a bound at this share of their column-group maxima (the top-k one: LONG_FACTOR)
LONG_GROUPS = 7 / 8



class _Solver:
    """One certified solve; rows (``a``) are the smaller side."""

    def __init__(
        self, a: np.ndarray, b: np.ndarray, k: int, k_check: int, method: str, device: str, block_bytes: int,
        tol: float,
    ):
        import torch

        from featgraph.matching.api import _resolve_method
        from featgraph.matching.blocked import COMPUTE, BlockBuffer, PreparedUnits, resolve_device

        self.a, self.b = a, b
        self.n, self.m = a.shape[0], b.shape[0]
        self.k, self.k_check, self.tol, self.block_bytes = k, max(k, k_check), tol, block_bytes
        self.dev = resolve_device(device)
        self.method = "fp32" if method == "fp32" else _resolve_method(method, self.dev)
        self.torch = torch
        self.A = PreparedUnits.build(a, self.dev, self.method)
        self.B = PreparedUnits.build(b, self.dev, self.method)
        self.buffer = BlockBuffer(self.dev)
        d = a.shape[1]
        self.e = rounding_margin(d, "fp32")  # the dense re-check runs in fp32
        self.e_c = rounding_margin(d, COMPUTE[self.method][1])  # the candidate pass in the method's dtype
        # fp32 rows of S kept from one round's dense check for the next (the same rows tend to need it again)
        self.cache_rows = np.zeros(0, np.int64)
        self.cache_S: list = []
        self.cache_budget = 2 * block_bytes

    # --- step 1: candidates -------------------------------------------------------------------------------
    def _blocks(self, rows: np.ndarray | None, fp32: bool, padded: bool = False):
        """Yield ``(row indices, S block)``: the candidate pass's dtype over all rows (``rows`` None), or fp32 over
        the given rows. The block is ``[r, m]``, or with ``padded`` the whole ``[r_pad, m_pad]`` buffer of a
        full pass in blocks of whole row groups (the padding rows and columns are zero rows of the prepared
        units, so their entries are 0)."""
        from featgraph.compare.assign_pass import GROUP
        from featgraph.matching.blocked import _gemm, block_rows, exact_matmul_settings

        torch = self.torch
        lhs_all, rhs = (self.A.unit32, self.B.unit32) if fp32 else (self.A.gemm, self.B.gemm)
        m_pad = rhs.shape[0]
        idx_all = np.arange(self.n) if rows is None else rows
        per = block_rows(m_pad, max(1, idx_all.size), rhs.dtype, self.block_bytes)
        if padded:
            per = max(GROUP, per // GROUP * GROUP)
        with exact_matmul_settings(self.dev), torch.inference_mode():
            for s in range(0, idx_all.size, per):
                idx = idx_all[s : s + per]
                r = idx.size if not padded else min(per, lhs_all.shape[0] - s)
                S = self.buffer.get(r, m_pad, rhs.dtype)
                lhs = lhs_all[s : s + r] if rows is None else lhs_all[torch.from_numpy(idx).to(self.dev)]
                _gemm(lhs, rhs, S)
                yield idx, (S if padded else S[:, : self.m])

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """One GEMM pass (:mod:`featgraph.compare.assign_pass`): the check lists with their approximate values
        and bounds, and the first sparse graph (each row's and column's ``k`` best plus the full matching)."""
        from featgraph.compare.assign_pass import GROUP, group_lists, groups_fit, topk_lists

        if groups_fit(self.n, self.m):
            # rows: a bound at the k_check // 4-th of 128 group maxima lists about k_check entries of a random
            # row; weak rows (unshared features) need the lower bound of LONG_GROUPS of the groups, measured at
            # 16,384 x 16,384: 736 rows left to the dense check in round 1, against 3,176 with 1/2 of them
            ng = -(-self.m // GROUP)
            g_long = int(LONG_GROUPS * ng)
            lists = group_lists(self, max(1, self.k_check // 4), g_long, self.k_check, LONG_ROWS_BELOW)
        else:
            lists = topk_lists(self, self.k_check, LONG_ROWS_BELOW, LONG_FACTOR)
        self.row_kth, self.col_kth = lists.row_kth, lists.col_kth
        self.known_i, self.known_j, self.known_v = lists.ki, lists.kj, lists.kv
        self.known_cos = np.full(lists.ki.size, np.nan)  # float64 cos, filled in as the certificate needs them
        return lists.er, lists.ec

    # --- step 2: sparse solve ----------------------------------------------------------------------------
    def solve_sparse(self, er: np.ndarray, ec: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """Column matched to each row (the edges are unique and contain a full matching)."""
        import scipy.sparse as sp
        from scipy.sparse.csgraph import min_weight_full_bipartite_matching

        G = sp.csr_matrix((2.0 - cos, (er, ec)), shape=(self.n, self.m))
        r, c = min_weight_full_bipartite_matching(G)
        match = np.full(self.n, -1, np.int64)
        match[r] = c
        assert (match >= 0).all(), "the candidate graph holds the full matching (i, i)"
        return match

    # --- step 3: duals -----------------------------------------------------------------------------------
    def duals(self, er, ec, cos, match, mcos) -> tuple[np.ndarray, np.ndarray]:
        """Feasible (U, V) for the candidate graph, tight on the matching (module docstring, step 3)."""
        n, m = self.n, self.m
        row_of_col = np.full(m, -1, np.int64)
        row_of_col[match] = np.arange(n)
        k = row_of_col[ec]
        arc = (k >= 0) & (k != er)
        src, dst = er[arc], k[arc]
        w = mcos[dst] - cos[arc]
        U = bellman_ford_min(n, src, dst, w, mcos.copy())
        V = np.zeros(m)
        V[match] = mcos - U
        return U, V

    # --- step 4: certificate -----------------------------------------------------------------------------
    def rows_to_check(self, U: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Rows where the k-th-value bound cannot prove ``U_i + V_j >= cos_ij`` for every pair off the check
        lists (those have ``cos_ij <= min(r_i, c_j) + e_c``)."""
        e = self.e_c + 1e-9  # and float64 rounding of the comparisons
        order = np.argsort(self.col_kth, kind="stable")
        ck = self.col_kth[order]
        Vs = V[order]
        # suffix min of V over columns with c_j >= r_i; prefix min of V - c_j over columns with c_j < r_i
        suf = np.minimum.accumulate(Vs[::-1])[::-1]
        pre = np.minimum.accumulate(Vs - ck)
        pos = np.searchsorted(ck, self.row_kth, side="left")  # first column with c_j >= r_i
        ok_hi = np.where(pos < ck.size, suf[np.minimum(pos, ck.size - 1)] + U >= self.row_kth + e, True)
        ok_lo = np.where(pos > 0, pre[np.maximum(pos - 1, 0)] + U >= e, True)
        return np.flatnonzero(~(ok_hi & ok_lo))

    def dense_check(self, rows: np.ndarray, U: np.ndarray, V: np.ndarray):
        """``(i, j, float64 slack)`` of the pairs of ``rows`` that could violate ``U_i + V_j >= cos_ij``.

        ``T = S - V`` (fp32) is within ``margin`` of ``cos - V``: entries with ``T > U + margin`` violate for
        sure (of those only each row's ``k`` largest ``T`` are returned: adding every violator of poor early
        duals would add a large share of the matrix, and the next round checks again anyway), entries within
        ``margin`` of ``U`` are decided in float64, the rest are feasible.
        """
        torch = self.torch
        margin = 2 * self.e + 1e-6
        Vt = torch.from_numpy(V.astype(np.float32)).to(self.dev)
        out_i, out_j = [], []
        for idx, S in self._fp32_rows(rows):
            S.sub_(Vt)  # the block is scratch: S - V in place
            lo = torch.from_numpy((U[idx] - margin - PRICE_WINDOW).astype(np.float32)).to(self.dev)
            hi = torch.from_numpy((U[idx] + margin).astype(np.float32)).to(self.dev)
            nr, nc = torch.nonzero((S > lo[:, None]) & (S <= hi[:, None]), as_tuple=True)
            out_i.append(idx[nr.cpu().numpy()])
            out_j.append(nc.cpu().numpy())
            sure = (S > hi[:, None]).any(dim=1)
            if bool(sure.any()):
                sr = torch.nonzero(sure).flatten()
                kk = min(self.k, self.m)
                tv, tj = torch.topk(S[sr], kk, dim=1)
                keep = tv > hi[sr][:, None]
                out_i.append(idx[sr[:, None].expand(-1, kk)[keep].cpu().numpy()])
                out_j.append(tj[keep].cpu().numpy())
        ii = np.concatenate(out_i) if out_i else np.zeros(0, np.int64)
        jj = np.concatenate(out_j) if out_j else np.zeros(0, np.int64)
        return ii, jj, U[ii] + V[jj] - _dot64(self.a, self.b, ii, jj)

    def _fp32_rows(self, rows: np.ndarray):
        """``(row indices, scratch fp32 S block)`` for ``rows``: from the cache where it has them, else from the
        GEMM (and then cached while the budget lasts)."""
        torch = self.torch
        pos = np.searchsorted(self.cache_rows, rows)
        hit = np.zeros(rows.size, bool)
        if self.cache_rows.size:
            hit = (pos < self.cache_rows.size) & (self.cache_rows[np.minimum(pos, self.cache_rows.size - 1)] == rows)
        if hit.any():
            flat = torch.cat(self.cache_S) if len(self.cache_S) > 1 else self.cache_S[0]
            self.cache_S = [flat]
            per = max(1, self.block_bytes // (4 * self.m))
            for s in range(0, int(hit.sum()), per):
                p = torch.from_numpy(pos[hit][s : s + per]).to(self.dev)
                yield rows[hit][s : s + per], flat.index_select(0, p)  # a copy: scratch
        new_rows, new_S = [], []
        room = self.cache_budget - self.cache_rows.size * self.m * 4
        for idx, S in self._blocks(rows[~hit], fp32=True):
            if room >= S.numel() * 4:
                new_rows.append(idx)
                new_S.append(S.clone())
                room -= S.numel() * 4
            yield idx, S
        if new_rows:
            allr = np.concatenate([self.cache_rows, *new_rows])
            order = np.argsort(allr, kind="stable")
            flat = torch.cat([*self.cache_S, *new_S])
            self.cache_rows = allr[order]
            self.cache_S = [flat.index_select(0, torch.from_numpy(order).to(self.dev))]

    def known_check(self, U: np.ndarray, V: np.ndarray):
        """``(i, j, float64 slack)`` of the check-list entries whose approximate value could violate (the others
        have ``cos <= value + e_c``, so a slack of at least 1e-6). Each entry's float64 cos is computed once and
        kept for later rounds; entries of the sparse graph are checked with the graph's own float64 cos."""
        flag = self.known_v - V[self.known_j] > U[self.known_i] - self.e_c - 1e-6 - PRICE_WINDOW
        flag &= ~self.known_in_graph
        need = flag & np.isnan(self.known_cos)
        if need.any():
            self.known_cos[need] = _dot64(self.a, self.b, self.known_i[need], self.known_j[need])
        ii, jj = self.known_i[flag], self.known_j[flag]
        return ii, jj, U[ii] + V[jj] - self.known_cos[flag]

    def _mark_graph(self, er: np.ndarray, ec: np.ndarray) -> None:
        """Which check-list entries are edges of the sparse graph (both key arrays are sorted and unique)."""
        key = er * self.m + ec
        kk = self.known_i * self.m + self.known_j
        pos = np.minimum(np.searchsorted(key, kk), key.size - 1)
        self.known_in_graph = key[pos] == kk

    def run(self, max_rounds: int) -> dict:
        er, ec = self.candidates()
        cos = _dot64(self.a, self.b, er, ec)
        n_first = er.size
        for rounds in range(1, max_rounds + 1):
            match = self.solve_sparse(er, ec, cos)
            mcos = _dot64(self.a, self.b, np.arange(self.n), match)
            U, V = self.duals(er, ec, cos, match, mcos)
            min_slack = min(float((U[er] + V[ec] - cos).min()), float(V.min()))
            self._mark_graph(*_unique_edges(er, ec, self.m))
            ki, kj, ks = self.known_check(U, V)
            check = self.rows_to_check(U, V)
            di, dj, ds = self.dense_check(check, U, V) if check.size else (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)
            ii, jj, slack = np.concatenate([ki, di]), np.concatenate([kj, dj]), np.concatenate([ks, ds])
            if slack.size:
                min_slack = min(min_slack, float(slack.min()))
            # while anything violates, every checked row also gets its k lowest-slack entries below PRICE_WINDOW:
            # the next duals will move, and nearly tight entries tend to become the next round's violations
            if (slack < -self.tol).any():
                vi, vj = _worst_per_row(ii, jj, slack, PRICE_WINDOW, self.k)
            else:
                vi = vj = np.zeros(0, np.int64)
            new_i, new_j = _unique_edges(vi, vj, self.m)
            if new_i.size:
                old = np.sort(er * self.m + ec)
                key_new = new_i * self.m + new_j
                pos = np.minimum(np.searchsorted(old, key_new), old.size - 1)
                fresh = old[pos] != key_new
                new_i, new_j = new_i[fresh], new_j[fresh]
            log.info(
                "assignment round %d: %d candidates, %d rows checked densely, %d edges to add, min slack %.3g",
                rounds, er.size, check.size, new_i.size, min_slack,
            )
            if new_i.size == 0:
                return {
                    "rows": np.arange(self.n, dtype=np.int64),
                    "cols": match,
                    "cos": mcos,
                    "gap_bound": self.n * max(0.0, -min_slack),
                    "rounds": rounds,
                    "n_candidates": int(er.size),
                    "n_added": int(er.size - n_first),
                }
            er = np.concatenate([er, new_i])
            ec = np.concatenate([ec, new_j])
            cos = np.concatenate([cos, _dot64(self.a, self.b, new_i, new_j)])
        raise ConfigError(f"the assignment was not certified within max_rounds={max_rounds}; raise max_rounds or k")


def _worst_per_row(ii, jj, slack, below: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The (at most k per row) most negative entries with ``slack < below``."""
    bad = np.flatnonzero(slack < below)
    bad = bad[np.lexsort((slack[bad], ii[bad]))]
    first = np.r_[0, np.flatnonzero(np.diff(ii[bad])) + 1] if bad.size else np.zeros(0, np.int64)
    rank = np.arange(bad.size) - np.repeat(first, np.diff(np.r_[first, bad.size]))
    bad = bad[rank < k]
    return ii[bad], jj[bad]


def _dot64(a: np.ndarray, b: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """float64 ``a[ia[k]] . b[ib[k]]`` (float32 rows: the products are exact in float64), in chunks small enough
    for the float64 copies of the gathered rows to stay in cache (measured 25% faster than einsum with a float64
    accumulator on the float32 rows, with the same bits)."""
    out = np.empty(ia.size, np.float64)
    step = 1 << 12
    for s in range(0, ia.size, step):
        x = a[ia[s : s + step]].astype(np.float64)
        y = b[ib[s : s + step]].astype(np.float64)
        out[s : s + step] = np.einsum("ij,ij->i", x, y)
    return out


def _unique_edges(er: np.ndarray, ec: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    key = np.sort(er.astype(np.int64) * m + ec.astype(np.int64))
    key = key[np.r_[True, key[1:] != key[:-1]]] if key.size else key
    return key // m, key % m


def bellman_ford_min(n: int, src: np.ndarray, dst: np.ndarray, w: np.ndarray, init: np.ndarray) -> np.ndarray:
    """Largest ``p <= init`` with ``p[dst] <= p[src] + w`` for every arc, by vectorised Bellman-Ford.

    Equivalent to shortest distances from a source with an arc of length ``init[i]`` to every node. Each pass
    relaxes only the arcs leaving nodes that changed in the previous pass. A pass lowers a node only by more
    than :data:`RELAX_TOL`, so rounding-level cycles (ties) end; a real negative cycle (a non-optimal matching:
    an internal error) is caught after ``n + 1`` passes.
    """
    p = np.asarray(init, np.float64).copy()
    order = np.argsort(src, kind="stable")
    src, dst, w = src[order], dst[order], w[order]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    active = np.arange(n)
    for _ in range(n + 2):
        starts, stops = indptr[active], indptr[active + 1]
        cnt = stops - starts
        total = int(cnt.sum())
        if total == 0:
            return p
        # indices of the arcs leaving the active nodes, without a Python loop
        arcs = np.repeat(starts - np.r_[0, np.cumsum(cnt)[:-1]], cnt) + np.arange(total)
        cand = p[src[arcs]] + w[arcs]
        d = dst[arcs]
        better = cand < p[d] - RELAX_TOL
        if not better.any():
            return p
        d, cand = d[better], cand[better]
        np.minimum.at(p, d, cand)
        mark = np.zeros(n, bool)
        mark[d] = True
        active = np.flatnonzero(mark)
    raise AssertionError("negative cycle in the dual system: the sparse matching is not optimal")
