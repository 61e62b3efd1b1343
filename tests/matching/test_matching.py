"""Exact matching: every fast path against the float64 brute force, with pairs planted at tau +- 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featgraph.errors import BadWeightsError, ConfigError, ShapeMismatchError
from featgraph.matching import (
    PairMatch,
    match_brute64,
    match_ladder,
    match_pair,
    normalize_rows,
    rounding_margin,
)
from featgraph.matching.blocked import GROUP, PreparedUnits
from featgraph.synthetic import _child_at_cos, planted_ladder

TAU = 0.7
EXACT_METHODS = ("fp32", "bf16")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def assert_same(got: PairMatch, want: PairMatch, *, check_argmax: bool = True) -> None:
    np.testing.assert_array_equal(got.edge_large, want.edge_large)
    np.testing.assert_array_equal(got.edge_small, want.edge_small)
    np.testing.assert_allclose(got.edge_cos, want.edge_cos, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.max_cos, want.max_cos, rtol=0, atol=1e-6)
    if check_argmax:
        np.testing.assert_array_equal(got.argmax, want.argmax)
    for a in (got.argmax, got.edge_small, got.edge_large):
        assert a.dtype == np.int64
    assert got.max_cos.dtype == np.float64 and got.edge_cos.dtype == np.float64


def near_tau_pair(n_small: int = 300, n_large: int = 700, d: int = 48, seed: int = 3, eps: float = 1e-6):
    """Unit rows with planted pairs whose float64 cos (of the float32 rows) is within ~eps of tau, both sides.

    Half of them are a row's max (the planted ladder's near-tau children); the other half are not: their
    larger row also has a copy at cos 0.95, so only the edge margin (not the max window) can catch them.
    """
    rng = np.random.default_rng(seed)
    decoders, _ = planted_ladder(
        [n_small, n_large], d, seed=seed, near_tau=TAU, n_near_tau=40, near_tau_eps=eps
    )
    small, _ = normalize_rows(decoders[0])
    large, _ = normalize_rows(decoders[1])
    extra_small = []
    for i in range(40):
        row = large[rng.integers(n_large)].astype(np.float64)
        extra_small.append(_child_at_cos(row, 0.95, rng))
        extra_small.append(_child_at_cos(row, TAU + (eps if i % 2 == 0 else -eps), rng))
    small = np.vstack([small, normalize_rows(np.asarray(extra_small))[0]])
    return small, large


def test_normalize_rows_gives_unit_rows_and_keeps_zero_rows_zero():
    W = np.array([[3.0, 4.0], [0.0, 0.0], [1e-30, 0.0]], dtype=np.float32)
    unit, norms = normalize_rows(W)
    assert unit.dtype == np.float32 and norms.dtype == np.float32
    np.testing.assert_allclose(norms, [5.0, 0.0, 1e-30], rtol=1e-6)
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-7)
    with pytest.raises(ShapeMismatchError, match=r"\[3\]"):
        normalize_rows(np.ones(3, np.float32))


@pytest.mark.parametrize("compute", ["fp32", "bf16_out"])
def test_rounding_margin_bounds_the_observed_error(compute):
    rng = np.random.default_rng(0)
    d = 256
    a, _ = normalize_rows(rng.standard_normal((200, d)))
    # near-parallel rows make the largest products, where the relative bound is tightest
    b, _ = normalize_rows(
        np.vstack([a[:100] + 0.01 * rng.standard_normal((100, d)), rng.standard_normal((100, d))])
    )
    exact = a.astype(np.float64) @ b.astype(np.float64).T
    if compute == "fp32":
        approx = (torch.from_numpy(a) @ torch.from_numpy(b).T).double().numpy()
    else:
        approx = (torch.from_numpy(a).bfloat16() @ torch.from_numpy(b).bfloat16().T).double().numpy()
    err = np.abs(approx - exact).max()
    e = rounding_margin(d, compute)
    assert 0 < err <= e
    # the bound is meant to be rigorous, not absurd: within a couple of orders of magnitude of what we observe
    assert e < 300 * err


@pytest.mark.parametrize("method", EXACT_METHODS)
@pytest.mark.parametrize("block_bytes", [1 << 20, 1 << 30])
@pytest.mark.parametrize(("eps", "d"), [(1e-6, 48), (3e-8, 256)])
def test_fast_paths_equal_float64_brute_force_at_tau_plus_minus_eps(method, block_bytes, eps, d):
    # eps = 1e-6 is the issue's test; 3e-8 is below fp32's own rounding error, so the fp32 path passes only
    # because of its margin (checked by hand: with the margin set to zero both paths miss edges here)
    small, large = near_tau_pair(d=d, eps=eps)
    want = match_brute64(small, large, TAU)
    # the planted pairs really straddle tau in float64, as a row max and as a second-best match
    S = large.astype(np.float64) @ small.astype(np.float64).T
    near_above = (S > TAU) & (S < TAU + 10 * eps)
    near_below = (S <= TAU) & (S > TAU - 10 * eps)
    not_max = S < want.max_cos[:, None]
    for near in (near_above, near_below):
        assert (near & ~not_max).sum() >= 15 and (near & not_max).sum() >= 15
    got = match_pair(small, large, TAU, method=method, device="cpu", block_bytes=block_bytes, progress=False)
    assert_same(got, want)


def test_faiss_baseline_finds_the_same_edges():
    small, large = near_tau_pair()
    want = match_brute64(small, large, TAU)
    got = match_pair(small, large, TAU, method="faiss", progress=False)
    # faiss's argmax is fp32 (documented), its edges and max cos are decided in float64
    assert_same(got, want, check_argmax=False)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_zero_rows_ties_and_padding(method):
    rng = np.random.default_rng(5)
    d = 32
    n_small = 2 * GROUP + 7  # not a multiple of GROUP: the padded columns must never be candidates
    small, _ = normalize_rows(rng.standard_normal((n_small, d)))
    small[10] = 0.0  # a dead feature of the smaller SAE
    small[200] = small[17]  # exact duplicate: ties must go to the lower index, 17
    large, _ = normalize_rows(rng.standard_normal((150, d)))
    large[3] = 0.0  # a dead feature of the larger SAE: max cos 0 at index 0, no edges
    large[4] = small[200]  # matches 17 and 200 equally (cos 1 to both)
    # two small rows at cos c and c + 1e-7 to large[5]: well inside bf16 error, only float64 can order them
    base = large[5].astype(np.float64)
    small[30] = normalize_rows(_child_at_cos(base, 0.9, rng)[None])[0][0]
    small[31] = normalize_rows(_child_at_cos(base, 0.9 + 1e-7, rng)[None])[0][0]
    want = match_brute64(small, large, TAU)
    assert want.argmax[4] == 17 and want.max_cos[3] == 0.0 and want.argmax[3] == 0
    assert want.argmax[5] == 31
    got = match_pair(small, large, TAU, method=method, device="cpu", block_bytes=1 << 20, progress=False)
    assert_same(got, want)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_a_row_whose_every_cos_is_negative_still_gets_its_true_max(method):
    small = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    large, _ = normalize_rows(np.array([[-1.0, -2.0, 0.1], [1.0, 1.0, 0.0]], np.float32))
    got = match_pair(small, large, TAU, method=method, device="cpu", progress=False)
    assert_same(got, match_brute64(small, large, TAU))
    assert got.argmax[0] == 0 and got.max_cos[0] < 0


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_rows_nearly_orthogonal_to_the_smaller_sae(method):
    # best cos below the rounding margin (and some exactly 0 or negative): the threshold goes <= 0 and these
    # rows take the float comparison path instead of the integer-key one
    d = 16
    rng = np.random.default_rng(9)
    small = np.zeros((300, d), np.float32)
    small[:, :4] = normalize_rows(rng.standard_normal((300, 4)))[0]
    far = rng.standard_normal((6, d - 4))
    tiny = np.array([3e-3, 1e-7, -2e-3, 0.0, 5e-5, -1e-7])
    large = np.zeros((6, d))
    large[:, 4:] = far
    large[:, 0] = tiny * np.linalg.norm(far, axis=1)
    large = np.vstack([normalize_rows(large)[0], normalize_rows(rng.standard_normal((50, d)))[0]])
    want = match_brute64(small, large, TAU)
    assert (np.abs(want.max_cos[:6]) < 0.02).all()
    got = match_pair(small, large, TAU, method=method, device="cpu", progress=False)
    assert_same(got, want)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_tau_below_the_margin_is_still_exact(method):
    # tau = 0.005 is below the bf16 margin (0.0118), so with bf16 every row takes the float-comparison path;
    # rows whose best cos (~0.01) is inside the margin still get exactly their edges above tau, sorted
    rng = np.random.default_rng(4)
    d = 16
    small = np.zeros((200, d), np.float32)
    small[:, :4] = normalize_rows(rng.standard_normal((200, 4)))[0]
    ordinary = normalize_rows(rng.standard_normal((100, d)))[0]
    # last rows: best cos about 0.01, inside the bf16 margin, but above tau = 0.005 for several small rows
    faint = np.zeros((20, d))
    faint[:, 4:] = rng.standard_normal((20, d - 4))
    faint[:, :4] = (
        0.01 * normalize_rows(rng.standard_normal((20, 4)))[0] * np.linalg.norm(faint, axis=1)[:, None]
    )
    large = np.vstack([ordinary, normalize_rows(faint)[0]])
    want = match_brute64(small, large, 0.005)
    assert (want.edge_large >= 100).sum() > 20 and (want.max_cos[100:] < 0.011).all()
    got = match_pair(small, large, 0.005, method=method, device="cpu", block_bytes=1 << 20, progress=False)
    assert_same(got, want)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_ladder_matches_each_pair_and_uploads_each_sae_once(method, monkeypatch):
    decoders, _ = planted_ladder([64, 128, 256, 512], 24, seed=11, near_tau=TAU, n_near_tau=6)
    units = [normalize_rows(W)[0] for W in decoders]
    built = []
    orig = PreparedUnits.build.__func__

    def counting_build(cls, unit, device, m, zero_rows=None):
        built.append(unit.shape[0])
        return orig(cls, unit, device, m, zero_rows)

    monkeypatch.setattr(PreparedUnits, "build", classmethod(counting_build))
    got = match_ladder(units, TAU, method=method, device="cpu", block_bytes=1 << 20, progress=False)
    assert built == [64, 128, 256, 512]
    assert len(got) == 3
    for m, a, b in zip(got, units[:-1], units[1:], strict=True):
        assert_same(m, match_brute64(a, b, TAU))


def test_block_buffer_stays_within_the_budget(monkeypatch):
    from featgraph.matching.blocked import BlockBuffer

    reserved = []
    orig = BlockBuffer.reserve

    def recording_reserve(self, nbytes):
        reserved.append(nbytes)
        return orig(self, nbytes)

    monkeypatch.setattr(BlockBuffer, "reserve", recording_reserve)
    rng = np.random.default_rng(2)
    small, _ = normalize_rows(rng.standard_normal((2048, 32)))
    large, _ = normalize_rows(rng.standard_normal((2048, 32)))  # the full fp32 matrix would be 16 MiB
    budget = 4 << 20
    got = match_pair(small, large, TAU, method="fp32", device="cpu", block_bytes=budget, progress=False)
    assert reserved and max(reserved) <= 0.75 * budget
    assert_same(got, match_brute64(small, large, TAU))


def test_planted_copies_and_splits_are_found():
    decoders, truths = planted_ladder([200, 400], 64, seed=2)
    small, large = (normalize_rows(W)[0] for W in decoders)
    got = match_pair(small, large, TAU, progress=False)
    parent = truths[0].parent_of
    planted = parent >= 0
    # every planted child (cos >= 0.8 to its parent) has its parent as argmax; novel rows stay below tau
    np.testing.assert_array_equal(got.argmax[planted], parent[planted])
    assert (got.max_cos[planted] > 0.79).all() and (got.max_cos[~planted] < TAU).all()
    assert set(zip(got.edge_large.tolist(), got.edge_small.tolist(), strict=True)) >= set(
        zip(np.flatnonzero(planted).tolist(), parent[planted].tolist(), strict=True)
    )


def test_fp32_path_ignores_a_global_reduced_precision_setting():
    small, large = near_tau_pair(seed=4)
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # would let CPU fp32 matmuls run in bf16
    try:
        got = match_pair(small, large, TAU, method="fp32", device="cpu", progress=False)
        assert torch.get_float32_matmul_precision() == "medium"  # restored
    finally:
        torch.set_float32_matmul_precision(old)
    assert_same(got, match_brute64(small, large, TAU))


def test_progress_bar_shows_and_quiet_silences_it(capsys):
    small, large = near_tau_pair(n_small=100, n_large=200)
    match_pair(small, large, TAU, progress=True)
    assert "match" in capsys.readouterr().err
    match_pair(small, large, TAU, progress=False)
    assert capsys.readouterr().err == ""


def test_bad_inputs_raise_named_errors():
    a = np.zeros((4, 8), np.float32)
    with pytest.raises(ShapeMismatchError, match=r"\[4, 8\].*\[5, 9\]"):
        match_pair(a, np.zeros((5, 9), np.float32), progress=False)
    raw = np.ones((3, 8), np.float32)  # not normalised: the error bound would not hold
    with pytest.raises(BadWeightsError, match=r"SAE 1 .*row 0 has norm 2\.82843"):
        match_pair(a, raw, progress=False)
    with pytest.raises(ConfigError, match="1.5"):
        match_pair(a, a, 1.5, progress=False)
    with pytest.raises(ConfigError, match="'fast'"):
        match_pair(a, a, method="fast", progress=False)
    with pytest.raises(ConfigError, match="'tpu'"):
        match_pair(a, a, device="tpu", progress=False)
    with pytest.raises(ConfigError, match="block_bytes"):
        match_pair(a, a, block_bytes=1000, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            match_pair(a, a, device="cuda", progress=False)


def test_torch_recheck_used_on_cuda_equals_the_numpy_one():
    # the CUDA path decides candidates with torch ops; run them on the CPU so they are tested here too
    from featgraph.matching.blocked import _dot64_numpy, _dot64_torch

    rng = np.random.default_rng(1)
    a, _ = normalize_rows(rng.standard_normal((50, 40)))
    b, _ = normalize_rows(rng.standard_normal((70, 40)))
    ia, ib = rng.integers(0, 50, 500), rng.integers(0, 70, 500)
    want = np.einsum("ij,ij->i", a[ia].astype(np.float64), b[ib].astype(np.float64))
    got_t = _dot64_torch(
        torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(ia), torch.from_numpy(ib), 64
    )
    got_n = _dot64_numpy(a, b, ia, ib, 64)
    np.testing.assert_allclose(got_t, want, rtol=0, atol=1e-15)
    np.testing.assert_allclose(got_n, want, rtol=0, atol=1e-15)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("method", ["fp32", "bf16", "auto"])
def test_cuda_path_equals_float64_brute_force(method):
    small, large = near_tau_pair()
    got = match_pair(small, large, TAU, method=method, device="cuda", block_bytes=1 << 20, progress=False)
    assert_same(got, match_brute64(small, large, TAU))


@pytest.mark.gpu
@needs_cuda
def test_cuda_ladder_equals_cpu_ladder():
    decoders, _ = planted_ladder([64, 128, 256], 24, seed=12, near_tau=TAU, n_near_tau=6)
    units = [normalize_rows(W)[0] for W in decoders]
    gpu = match_ladder(units, TAU, device="cuda", progress=False)
    cpu = match_ladder(units, TAU, device="cpu", progress=False)
    for g, c in zip(gpu, cpu, strict=True):
        assert_same(g, c)
