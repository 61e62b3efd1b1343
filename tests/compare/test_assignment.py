"""featgraph.compare.assignment: the certified sparse assignment against scipy's dense linear_sum_assignment."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import bellman_ford

from featgraph.compare.assignment import Assignment, assign, assign_dense, bellman_ford_min
from featgraph.errors import BadWeightsError, ConfigError, ShapeMismatchError
from featgraph.matching import normalize_rows
from featgraph.synthetic import planted_ladder


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return normalize_rows(rng.standard_normal((n, d)))[0]


def dense_total(a: np.ndarray, b: np.ndarray) -> float:
    S = a.astype(np.float64) @ b.astype(np.float64).T
    r, c = linear_sum_assignment(S, maximize=True)
    return float(S[r, c].sum())


def check_valid(res: Assignment, a: np.ndarray, b: np.ndarray) -> None:
    """A matching of min(n_a, n_b) distinct rows and columns whose cos are the float64 cos of the pairs."""
    m = min(a.shape[0], b.shape[0])
    assert res.rows.size == res.cols.size == m
    assert np.unique(res.rows).size == m and np.unique(res.cols).size == m
    assert np.all(np.diff(res.rows) > 0)
    exact = np.einsum("ij,ij->i", a[res.rows].astype(np.float64), b[res.cols].astype(np.float64))
    np.testing.assert_allclose(res.cos, exact, rtol=0, atol=1e-12)
    assert res.gap_bound <= 1e-9


def test_permuted_noised_copy_is_recovered_exactly():
    rng = np.random.default_rng(0)
    a = unit(rng, 600, 48)
    perm = rng.permutation(600)
    b = normalize_rows(a[perm] + 0.05 * rng.standard_normal((600, 48)).astype(np.float32))[0]
    res = assign(a, b, k=4, k_check=8)
    check_valid(res, a, b)
    inv = np.argsort(perm)  # b[q] is a noised a[perm[q]], so a's row i belongs with b's row inv[i]
    assert np.array_equal(res.cols, inv)
    assert res.pw_mcc > 0.9 and res.shared_share(0.7) == 1.0


@pytest.mark.parametrize(
    ("n_a", "n_b", "d", "seed"),
    [(300, 300, 16, 1), (200, 350, 24, 2), (350, 200, 24, 3), (1, 40, 8, 4), (40, 1, 8, 5), (2000, 2000, 64, 6)],
)
def test_total_equals_dense_scipy_on_random_cases(n_a, n_b, d, seed):
    rng = np.random.default_rng(seed)
    a, b = unit(rng, n_a, d), unit(rng, n_b, d)
    res = assign(a, b)
    check_valid(res, a, b)
    assert res.n_a == n_a and res.n_b == n_b
    assert res.total == pytest.approx(dense_total(a, b), abs=1e-9)


@pytest.mark.parametrize(("n_small", "n_large"), [(1000, 2000), (1500, 1500)])
def test_total_equals_dense_scipy_on_planted_sae_pairs(n_small, n_large):
    """SAE-like structure: copies, splits and novel features (the splits make many near-ties)."""
    (small, large), _ = planted_ladder([n_small, n_large], 32, seed=11)
    a, b = normalize_rows(small)[0], normalize_rows(large)[0]
    for x, y in ((a, b), (b, a)):
        res = assign(x, y, k=8, k_check=16)
        check_valid(res, x, y)
        assert res.total == pytest.approx(dense_total(x, y), abs=1e-9)


def test_exact_ties_duplicated_rows_and_directions():
    """Rows repeated exactly (and only 12 distinct directions): many optimal matchings with equal totals."""
    rng = np.random.default_rng(3)
    base = unit(rng, 12, 8)
    a = base[rng.integers(0, 12, 150)]
    b = base[rng.integers(0, 12, 170)]
    res = assign(a, b, k=2, k_check=3)
    check_valid(res, a, b)
    assert res.total == pytest.approx(dense_total(a, b), abs=1e-9)
    ref = assign_dense(a, b)
    assert res.total == pytest.approx(ref.total, abs=1e-9)


def test_sparse_graph_alone_is_not_optimal_so_the_certificate_adds_edges():
    """With one candidate per row and column the first sparse optimum is not the dense one: the certificate must
    find violated dual constraints, add those edges and re-solve until the total is the dense optimum."""
    rng = np.random.default_rng(5)
    a, b = unit(rng, 400, 16), unit(rng, 400, 16)
    ref = dense_total(a, b)
    first_graph_only = _sparse_only_total(a, b, k=1)
    assert first_graph_only < ref - 1e-6  # the candidate graph alone misses the optimum
    res = assign(a, b, k=1, k_check=1)
    check_valid(res, a, b)
    assert res.rounds > 1 and res.n_added > 0
    assert res.total == pytest.approx(ref, abs=1e-9)


def _sparse_only_total(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """The optimum on the top-k-per-row-and-column graph (+ the diagonal), without any certificate."""
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    S = a.astype(np.float64) @ b.astype(np.float64).T
    rows = np.argsort(-S, axis=1)[:, :k]
    cols = np.argsort(-S, axis=0)[:k, :]
    er = np.r_[np.repeat(np.arange(S.shape[0]), k), cols.ravel(), np.arange(S.shape[0])]
    ec = np.r_[rows.ravel(), np.tile(np.arange(S.shape[1]), k), np.arange(S.shape[0])]
    key = np.unique(er * S.shape[1] + ec)
    er, ec = key // S.shape[1], key % S.shape[1]
    G = sp.csr_matrix((2.0 - S[er, ec], (er, ec)), shape=S.shape)
    r, c = min_weight_full_bipartite_matching(G)
    return float(S[r, c].sum())


def test_bf16_candidate_pass_gives_the_same_total():
    rng = np.random.default_rng(8)
    a, b = unit(rng, 300, 32), unit(rng, 260, 32)
    res = assign(a, b, method="bf16", k=4, k_check=8)
    check_valid(res, a, b)
    assert res.total == pytest.approx(dense_total(a, b), abs=1e-9)


def test_zero_rows_have_cos_zero_and_still_get_a_partner():
    rng = np.random.default_rng(9)
    a, b = unit(rng, 50, 8), unit(rng, 60, 8)
    a[[3, 17]] = 0.0
    res = assign(a, b, k=3, k_check=4)
    check_valid(res, a, b)
    assert res.cos[3] == 0.0 and res.cos[17] == 0.0
    assert res.total == pytest.approx(dense_total(a, b), abs=1e-9)


def test_metrics_of_the_result():
    res = Assignment(
        rows=np.arange(4), cols=np.array([2, 0, 1, 3]), cos=np.array([0.9, 0.71, 0.7, 0.1]),
        n_a=4, n_b=5, gap_bound=0.0, rounds=1, n_candidates=4, n_added=0,
    )
    assert res.total == pytest.approx(2.41)
    assert res.pw_mcc == pytest.approx(2.41 / 4)
    assert res.shared_share(0.7) == 0.5  # strict: 0.7 itself is not above tau


def test_bellman_ford_min_equals_scipy_shortest_paths():
    """Largest p <= init with p[dst] <= p[src] + w: distances from a source with arcs init[i] to every node."""
    rng = np.random.default_rng(4)
    n, m = 60, 400
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    w = rng.uniform(-0.2, 1.0, src.size)
    pot = rng.uniform(0, 1, n)  # w + pot[src] - pot[dst] ... shifted so that no cycle is negative
    w = np.maximum(w, pot[dst] - pot[src])
    init = rng.uniform(-1, 1, n)
    got = bellman_ford_min(n, src, dst, w, init)
    # reference: node n is the source; duplicate arcs keep their minimum
    key = src * (n + 1) + dst
    order = np.lexsort((w, key))
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    rs = np.r_[src[first], np.full(n, n)]
    rd = np.r_[dst[first], np.arange(n)]
    rw = np.r_[w[first], init]
    G = sp.csr_matrix((rw, (rs, rd)), shape=(n + 1, n + 1))
    ref = bellman_ford(G, directed=True, indices=n)[:n]
    np.testing.assert_allclose(got, ref, atol=1e-9)
    assert np.all(got[dst] <= got[src] + w + 1e-9)


def test_bad_inputs_raise_featgraph_errors_naming_the_problem():
    rng = np.random.default_rng(0)
    a, b = unit(rng, 10, 8), unit(rng, 12, 6)
    with pytest.raises(ShapeMismatchError, match=r"\[10, 8\].*\[12, 6\]"):
        assign(a, b)
    with pytest.raises(BadWeightsError, match="norm 3"):
        assign(3 * unit(rng, 5, 8), unit(rng, 5, 8))
    with pytest.raises(ConfigError, match="k must be a positive integer, got 0"):
        assign(unit(rng, 5, 8), unit(rng, 5, 8), k=0)
    with pytest.raises(ShapeMismatchError, match="no features"):
        assign(np.zeros((0, 8), np.float32), unit(rng, 5, 8))


def test_rows_without_a_strong_partner_get_longer_check_lists():
    """In d=256 no random row has a partner above 0.35, so every row keeps LONG_FACTOR x k_check entries."""
    from featgraph.compare import solver as asg

    rng = np.random.default_rng(12)
    a, b = unit(rng, 500, 256), unit(rng, 600, 256)
    solver = asg._Solver(a, b, 2, 4, "fp32", "cpu", 1 << 24, 1e-9)
    solver.candidates()
    per_row = np.bincount(solver.known_i, minlength=500)
    assert per_row.min() >= asg.LONG_FACTOR * 4
    res = assign(a, b, k=2, k_check=4, method="fp32")
    check_valid(res, a, b)
    assert res.total == pytest.approx(dense_total(a, b), abs=1e-9)


def _adversarial_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """2048 x 2176 in d=16 (large enough for the group-maxima pass): every row of A and of B leans towards +e1
    except A's row 5 and B's row 7, which are -e1 (all their cos but one are negative, so the key order of the
    group maxima says nothing there: the fallback and the 'no column bound' cases); exact duplicates (ties inside
    one group and across groups) and zero rows."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((2048, 16))
    b = rng.standard_normal((2176, 16))
    a[:, 0] = np.abs(a[:, 0]) + 0.5
    b[:, 0] = np.abs(b[:, 0]) + 0.5
    a[100:140] = a[99]  # one row repeated 41 times
    b[300:428:8] = b[299]  # one column repeated across cells of the column maxima
    a, b = normalize_rows(a)[0], normalize_rows(b)[0]
    a[5] = 0.0
    a[5, 0] = -1.0
    b[7] = 0.0
    b[7, 0] = -1.0
    a[[11, 2047]] = 0.0
    b[[0, 2175]] = 0.0
    return a, b


@pytest.mark.parametrize(("method", "adversarial"), [("bf16", True), ("fp32", True), ("bf16", False)])
def test_group_pass_bounds_every_entry_off_its_lists(method, adversarial):
    """The certificate's premise, checked entry by entry against float64: every entry off the check lists has
    cos <= min(row bound, column bound) + e_c, every listed value is within e_c of its cos, each listed once
    (without fallback rows the lists are deduplicated without a sort: the adversarial=False case)."""
    from featgraph.compare import assign_pass
    from featgraph.compare import solver as asg
    from featgraph.matching.blocked import COMPUTE
    from featgraph.matching.core import rounding_margin

    if adversarial:
        a, b = _adversarial_pair(21)
    else:
        rng = np.random.default_rng(23)
        a, b = unit(rng, 2048, 16), unit(rng, 2200, 16)
    assert assign_pass.groups_fit(a.shape[0], b.shape[0])
    s = asg._Solver(a, b, 4, 16, method, "cpu", 1 << 22, 1e-9)  # 1 << 22: several blocks of rows
    er, ec = s.candidates()
    e_c = rounding_margin(16, COMPUTE[method][1])
    S = a.astype(np.float64) @ b.astype(np.float64).T
    listed = np.zeros(S.shape, bool)
    listed[s.known_i, s.known_j] = True
    assert np.unique(s.known_i * S.shape[1] + s.known_j).size == s.known_i.size
    np.testing.assert_array_less(np.abs(s.known_v - S[s.known_i, s.known_j]), e_c)
    bound = np.minimum(s.row_kth[:, None], s.col_kth[None, :]) + e_c
    off = ~listed
    assert np.all(S[off] <= bound[off]), float((S - bound)[off].max())
    if adversarial:
        assert s.row_kth[5] < 0  # the -e1 row went to the exact top-k fallback
        assert np.isinf(s.col_kth[7])  # the -e1 column has no usable bound
    assert np.isfinite(s.col_kth).mean() > 0.99 and (np.bincount(s.known_i, minlength=2048) > 0).all()
    # the first graph: unique sorted edges holding the full matching (i, i)
    key = er * S.shape[1] + ec
    assert np.all(np.diff(key) > 0)
    assert np.isin(np.arange(2048) * S.shape[1] + np.arange(2048), key).all()


@pytest.mark.parametrize("swap", [False, True])
def test_group_pass_total_equals_dense_scipy(swap):
    """The group-maxima pass end to end (both orientations; bf16 candidates) on the adversarial pair and on a
    planted SAE pair: the same total as scipy's dense solve."""
    a, b = _adversarial_pair(22)
    (small, large), _ = planted_ladder([2048, 2304], 32, seed=13)
    c, d = normalize_rows(small)[0], normalize_rows(large)[0]
    for x, y in ((a, b), (c, d)):
        if swap:
            x, y = y, x
        res = assign(x, y, method="bf16", block_bytes=1 << 23)
        check_valid(res, x, y)
        assert res.total == pytest.approx(dense_total(x, y), abs=1e-9)
