"""The candidate pass of the certified assignment: one blocked GEMM over ``S = A @ B.T`` that yields the check
lists, their bounds and the first sparse graph (step 1 of :mod:`featgraph.compare.assignment`).

Two ways to build the same thing, :class:`Lists`:

* :func:`group_lists` (large problems): the thresholds come from maxima over groups of entries, taken over the
  raw bits of the bf16/fp32 block as integers (the trick of :mod:`featgraph.matching.blocked`: for values >= 0
  the bit order is the value order, a negative value has a negative key, so a comparison with a positive
  threshold is exact). Per row, ``r_i`` is the ``g``-th largest of its maxima over groups of ``GROUP`` columns:
  every entry ``>= r_i`` (found in the few groups whose maximum reaches it) is listed, every other entry is below
  ``r_i``. Per column, one threshold ``c_j`` is fixed from the first block of rows (the ``g``-th largest of its
  maxima over cells of ``COL_CELL`` rows, ``g`` scaled so that about ``k_check`` entries of the whole column
  reach it); in every block the cells whose maximum reaches ``c_j`` are read entry by entry and their entries
  ``>= c_j`` listed, so every entry off column j's list is below ``c_j``. One threshold for the whole pass is
  what makes this a bound (a threshold raised along the way would leave earlier entries unbounded). No sort of
  the ``n x m`` matrix and no transposed copy: the top-k version spent 4 of its 8 s at 16,384 x 16,384 there.
  Rows whose threshold key is not positive (the order of negative keys is reversed) fall back to an exact top-k;
  columns whose threshold is not positive get no column bound (``inf``: the row bounds alone apply).
* :func:`topk_lists` (small problems, fewer than ``MIN_GROUPS`` groups per row or column): each row's and
  column's ``k_check`` largest by ``torch.topk``, the bound being the last listed value.

Bounds are inclusive-safe: an entry off a list has an approximate value ``< r_i`` (or ``<= r_i`` for top-k),
so its float64 cos is at most ``r_i + e_c``, ``e_c`` the candidate GEMM's rounding bound.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

# entries per group of the group maxima (rows and columns)
GROUP = 128
# rows per cell of the column maxima (small: a cell that reaches a column's threshold is read entry by entry)
COL_CELL = 16
# the group version needs at least this many groups on each side (else the plain top-k is used)
MIN_GROUPS = 16
# the first graph keeps a row's (column's) listed entries within GRAPH_WINDOW of its best, at least GRAPH_MIN of
# them: a feature with a strong partner keeps few edges (at 16,384 x 16,384: 331k edges instead of 592k, the same
# 4 rounds); the certificate adds whatever the optimum needs
GRAPH_WINDOW = 0.2
GRAPH_MIN = 4
KEY_DTYPE = {torch.float32: torch.int32, torch.bfloat16: torch.int16}


@dataclasses.dataclass
class Lists:
    row_kth: np.ndarray  # float64 [n]: every entry off row i's list has approximate value <= row_kth[i]
    col_kth: np.ndarray  # float64 [m]: the same for columns (inf: no column bound)
    ki: np.ndarray  # int64: the check-list entries (unique (i, j)), rows ...
    kj: np.ndarray  # ... columns ...
    kv: np.ndarray  # ... and approximate values (float64)
    er: np.ndarray  # the first sparse graph: each row's and column's k best listed entries, unique, sorted
    ec: np.ndarray


def groups_fit(n: int, m: int) -> bool:
    return n >= MIN_GROUPS * GROUP and m >= MIN_GROUPS * GROUP


def finish_lists(n, m, k, row_kth, col_kth, ki, kj, kv, unique: bool = False) -> Lists:
    """Deduplicate the listed entries, then the first graph: each row's and column's ``k`` largest listed
    entries (only those within ``GRAPH_WINDOW`` of its best beyond the first ``GRAPH_MIN``) and the full matching
    ``(i, i)`` (so the sparse problem is feasible whatever the candidates)."""
    if not unique:
        key = ki * m + kj
        order = np.argsort(key, kind="stable")
        first = order[np.r_[True, key[order][1:] != key[order][:-1]]] if key.size else order
        ki, kj, kv = ki[first], kj[first], kv[first]
    picks = [np.arange(n) * m + np.arange(n)]
    # best first within each row (column): one argsort of row * 2^22 + (2 - value) in steps of 2^-20 (faster
    # than a lexsort; values that close may come in either order, which only changes the heuristic's pick)
    q = np.clip(np.round((2.0 - kv) * (1 << 20)), 0, (1 << 22) - 1).astype(np.int64)
    for own in (ki, kj):
        o = np.argsort((own << 22) | q)
        s = own[o]
        start = np.r_[0, np.flatnonzero(np.diff(s)) + 1] if s.size else np.zeros(0, np.int64)
        first_of = np.repeat(start, np.diff(np.r_[start, s.size]))
        rank = np.arange(s.size) - first_of
        best = kv[o][first_of]
        sel = o[(rank < k) & ((kv[o] >= best - GRAPH_WINDOW) | (rank < GRAPH_MIN))]
        picks.append(ki[sel] * m + kj[sel])
    keys = np.sort(np.concatenate(picks))
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    return Lists(row_kth, col_kth, ki, kj, kv.astype(np.float64), keys // m, keys % m)


def _key_of(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return v.to(dtype).view(KEY_DTYPE[dtype])


def _val_of(keys: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return keys.view(dtype).float().cpu().numpy().astype(np.float64)


def group_lists(solver, g_row: int, g_long: int, k_col: int, long_below: float) -> Lists:
    """The check lists from group maxima (module docstring). ``solver``: a :class:`featgraph.compare.solver._Solver`
    (its prepared rows, block iterator and GEMM). ``g_row``: row groups whose maximum reaches the row bound (rows
    whose largest value is below ``long_below`` use ``g_long``: a lower bound, a longer list);
    ``k_col``: about how many entries each column's list should hold."""
    n, m = solver.n, solver.m
    rhs = solver.B.gemm
    dtype = rhs.dtype
    kdt = KEY_DTYPE[dtype]
    big = torch.iinfo(kdt).max
    m_pad = rhs.shape[0]
    ng = m_pad // GROUP
    long_key = _key_of(torch.tensor([long_below], device=rhs.device), dtype)[0]
    g_row = min(g_row, ng)
    g_long = min(ng, max(g_long, g_row))
    row_kth = np.empty(n)
    out_i, out_j, out_v = [], [], []
    fallback = []  # rows whose bound key is not positive: the key order says nothing there
    cthr = None
    for idx, S in solver._blocks(None, fp32=False, padded=True):
        r, r_pad = idx.size, S.shape[0]
        keys = S.view(kdt)
        # rows: the g-th largest column-group maximum is the bound; the groups that reach it hold the list
        gmax = torch.amax(keys[:r].view(r, ng, GROUP), dim=2)  # [r, ng]
        top, _ = torch.topk(gmax, g_long, dim=1)  # int keys: sorted descending
        thr = torch.where(top[:, 0] < long_key, top[:, g_long - 1], top[:, g_row - 1])
        bad = thr <= 0
        if bool(bad.any()):
            fallback.append(idx[bad.cpu().numpy()])
            thr[bad] = big  # no hits here
        row_kth[idx] = _val_of(thr, dtype)
        hr, hg = torch.nonzero(gmax >= thr[:, None], as_tuple=True)
        seg = keys[:r].view(r, ng, GROUP)[hr, hg]  # [hits, GROUP]
        ii, kk = torch.nonzero(seg >= thr[hr][:, None], as_tuple=True)
        rows, cols = hr[ii], hg[ii] * GROUP + kk
        out_i.append(idx[rows.cpu().numpy()])
        out_j.append(cols.cpu().numpy())
        out_v.append(S[rows, cols].float().cpu().numpy().astype(np.float64))
        # columns: maxima over cells of COL_CELL rows; one fixed threshold per column, set from the first block
        cells = keys.view(r_pad // COL_CELL, COL_CELL, m_pad)
        cmax = torch.amax(cells, dim=1)  # [cells, m_pad]
        if cthr is None:
            g = max(1, min(cmax.shape[0], round(k_col * r / n)))
            cthr = torch.topk(cmax[:, :m].T, g, dim=1)[0][:, -1].contiguous()
            cthr[cthr <= 0] = big  # no usable bound: the row bounds alone apply to that column
        hc, hj = torch.nonzero(cmax[:, :m] >= cthr[None, :], as_tuple=True)
        seg = cells[hc, :, hj]  # [hits, COL_CELL]
        ii, kk = torch.nonzero(seg >= cthr[hj][:, None], as_tuple=True)
        rows, cols = hc[ii] * COL_CELL + kk, hj[ii]
        # an entry >= its row's bound is on the row's list already (same block, same value): listed once, no
        # sort needed to deduplicate (fallback rows have the largest key as bound, so theirs are all kept)
        fresh = keys[rows, cols] < thr[rows]
        rows, cols = rows[fresh], cols[fresh]
        out_i.append(idx[0] + rows.cpu().numpy())
        out_j.append(cols.cpu().numpy())
        out_v.append(S[rows, cols].float().cpu().numpy().astype(np.float64))
    if fallback:
        rows = np.concatenate(fallback)
        kr = min(max(g_row, 1) * 2, m)
        for idx, S in solver._blocks(rows, fp32=False):
            v, j = torch.topk(S.float(), kr, dim=1)
            row_kth[idx] = v[:, -1].cpu().numpy()
            out_i.append(np.repeat(idx, kr))
            out_j.append(j.cpu().numpy().ravel())
            out_v.append(v.cpu().numpy().ravel().astype(np.float64))
    # every entry off column j's list was below the fixed threshold when its block was read
    col_kth = _val_of(cthr, dtype)
    col_kth[(cthr == big).cpu().numpy()] = np.inf
    ki = np.concatenate(out_i).astype(np.int64)
    kj = np.concatenate(out_j).astype(np.int64)
    kv = np.concatenate(out_v)
    if fallback:  # the fallback rows' lists came from another GEMM: they may repeat a column list's entries
        return finish_lists(n, m, solver.k, row_kth, col_kth, ki, kj, kv)
    return finish_lists(n, m, solver.k, row_kth, col_kth, ki, kj, kv, unique=True)


def topk_lists(solver, k_check: int, long_below: float, long_factor: int) -> Lists:
    """Each row's and column's ``k_check`` largest (``long_factor`` times more for rows whose largest value is
    below ``long_below``) by ``torch.topk``; the bound is the last listed value."""
    n, m = solver.n, solver.m
    kr, kc = min(k_check, m), min(k_check, n)
    kl = min(long_factor * kr, m)
    row_kth = np.empty(n)
    col_val = torch.full((m, kc), float("-inf"), device=solver.dev)
    col_idx = torch.zeros((m, kc), dtype=torch.int64, device=solver.dev)
    out_i, out_j, out_v = [], [], []
    for idx, S in solver._blocks(None, fp32=False):
        S = S.float()
        v, j = torch.topk(S, kr, dim=1)
        low = (v[:, 0] < long_below).cpu().numpy() & (kl > kr)
        if low.any():
            lv, lj = torch.topk(S[torch.from_numpy(np.flatnonzero(low)).to(S.device)], kl, dim=1)
        row_kth[idx] = v[:, -1].cpu().numpy()
        out_i.append(np.repeat(idx, kr))
        out_j.append(j.cpu().numpy().ravel())
        out_v.append(v.cpu().numpy().ravel().astype(np.float64))
        if low.any():
            row_kth[idx[low]] = lv[:, -1].cpu().numpy()
            out_i.append(np.repeat(idx[low], kl))
            out_j.append(lj.cpu().numpy().ravel())
            out_v.append(lv.cpu().numpy().ravel().astype(np.float64))
        bv, bi = torch.topk(S.T, min(kc, idx.size), dim=1)
        vals = torch.cat([col_val, bv], dim=1)
        col_val, pick = torch.topk(vals, kc, dim=1)
        col_idx = torch.gather(torch.cat([col_idx, bi + int(idx[0])], dim=1), 1, pick)
    out_i.append(col_idx.cpu().numpy().ravel())
    out_j.append(np.repeat(np.arange(m), kc))
    out_v.append(col_val.cpu().numpy().ravel().astype(np.float64))
    col_kth = col_val[:, -1].cpu().numpy().astype(np.float64)
    ki, kj, kv = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_v)
    return finish_lists(n, m, solver.k, row_kth, col_kth, ki, kj, kv)
