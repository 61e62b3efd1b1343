"""featgraph.compare.act_similarity: the sparse one-pass statistics against dense numpy computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from featgraph.activations.store import ActivationStore
from featgraph.compare.act_similarity import ActSimAccumulator, activation_similarity, decoder_vs_activation
from featgraph.errors import ConfigError, ShapeMismatchError
from featgraph.matching import normalize_rows
from tests.conftest import tiny_sae


def dense_reference(fa: np.ndarray, fb: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric straight from its definition, pair by pair, in float64 (the masked cos on the masked tokens)."""
    A, B = fa.astype(np.float64), fb.astype(np.float64)
    on_a, on_b = A != 0, B != 0
    F_a, F_b = A.shape[1], B.shape[1]
    out = {k: np.full((F_a, F_b), np.nan) for k in ("jaccard", "pearson", "masked_cos")}
    for i in range(F_a):
        for j in range(F_b):
            union = on_a[:, i] | on_b[:, j]
            if union.any():
                out["jaccard"][i, j] = (on_a[:, i] & on_b[:, j]).sum() / union.sum()
            x, y = A[union, i], B[union, j]
            if x @ x > 0 and y @ y > 0:
                out["masked_cos"][i, j] = x @ y / np.sqrt((x @ x) * (y @ y))
            if A[:, i].std() > 0 and B[:, j].std() > 0:
                out["pearson"][i, j] = np.corrcoef(A[:, i], B[:, j])[0, 1]
    return out


def sparse_acts(rng: np.random.Generator, n: int, F: int, shift: float = 1.6) -> np.ndarray:
    return np.maximum(rng.standard_normal((n, F)) - shift, 0).astype(np.float32)


def assert_same(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    for k in ref:
        assert np.array_equal(np.isnan(got[k]), np.isnan(ref[k])), k
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-12, equal_nan=True, err_msg=k)


@pytest.mark.parametrize("dense_share", [1.0, 1e-4])  # stays sparse / moves to dense sums after the first batch
def test_metrics_equal_dense_numpy_on_every_pair(dense_share):
    rng = np.random.default_rng(0)
    fa, fb = sparse_acts(rng, 2500, 30), sparse_acts(rng, 2500, 45)
    fb[:, 0] = 2 * fa[:, 0]  # a perfectly correlated pair
    fb[:, 1] = fa[:, 2] * (fa[:, 3] > 0)  # fires on a subset of feature 2's tokens
    fa[:, 5] = 0.0  # dead: Pearson and masked cos undefined
    fb[:, 7] = 0.0
    acc = ActSimAccumulator(30, 45, dense_share=dense_share)
    for s in range(0, 2500, 300):  # the last batch is shorter
        acc.update(torch.from_numpy(fa[s : s + 300]), fb[s : s + 300])
    assert (acc._dense_sum is not None) == (dense_share < 1)
    res = acc.result()
    assert res.n_tokens == 2500
    assert_same(res.dense(), dense_reference(fa, fb))
    m = res.metrics(np.array([0]), np.array([0]))
    assert m["pearson"][0] == pytest.approx(1.0, abs=1e-12) and m["masked_cos"][0] == pytest.approx(1.0, abs=1e-12)
    # the co-active pairs are exactly those that fired together
    both = (fa != 0).astype(np.int64).T @ (fb != 0).astype(np.int64)
    i, j = res.coactive_pairs()
    assert np.array_equal(np.flatnonzero(both.ravel()), i * 45 + j)
    assert np.array_equal(res.co_count.toarray(), both)


def test_masked_cos_over_the_union_equals_the_cos_over_all_tokens():
    """Why per-feature sums suffice: f_i is 0 off its support, so summing over the union or all tokens agrees."""
    rng = np.random.default_rng(1)
    fa, fb = sparse_acts(rng, 800, 6), sparse_acts(rng, 800, 5)
    acc = ActSimAccumulator(6, 5)
    acc.update(fa, fb)
    got = acc.result().dense()["masked_cos"]
    A, B = fa.astype(np.float64), fb.astype(np.float64)
    plain = (A.T @ B) / np.sqrt(np.outer((A * A).sum(0), (B * B).sum(0)))
    np.testing.assert_allclose(got, plain, rtol=0, atol=1e-12)
    assert_same({"masked_cos": got}, {"masked_cos": dense_reference(fa, fb)["masked_cos"]})


def test_one_pass_over_a_synthetic_store_equals_dense_numpy(tmp_path):
    """Two tiny SAEs over a real on-disk activation store, batches as the store yields them."""
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((700, 16)).astype(np.float32))
    st = ActivationStore.create(
        tmp_path / "store", model="m", hook_name="h", d_in=16, tokens=np.zeros((1, 2), np.int32),
        exclude_bos=False, dtype="float32",
    )
    for s in range(0, 700, 160):
        st.write(x[s : s + 160])
    sae_a = tiny_sae(24, 16, seed=3)
    sae_b = tiny_sae(20, 16, seed=4, architecture="topk", k=3)
    res = activation_similarity(st.iter_batches(128, seed=0), sae_a, sae_b)
    with torch.no_grad():
        xs = st.read()
        fa, fb = sae_a.encode(xs).numpy(), sae_b.encode(xs).numpy()
    assert res.n_tokens == 700 and 0 < (fa != 0).mean() < 1 and (fb != 0).sum(1).max() == 3
    # sums over a shuffled order: equal to float64 summation rounding
    got, ref = res.dense(), dense_reference(fa, fb)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-10, equal_nan=True, err_msg=k)
    np.testing.assert_array_equal(res.count_a, (fa != 0).sum(0))
    np.testing.assert_allclose(res.sumsq_b, (fb.astype(np.float64) ** 2).sum(0), rtol=1e-12)


def test_decoder_vs_activation_against_brute_force():
    rng = np.random.default_rng(5)
    d, F_a, F_b = 12, 40, 50
    dec_a = normalize_rows(rng.standard_normal((F_a, d)))[0]
    dec_b = normalize_rows(rng.standard_normal((F_b, d)))[0]
    dec_b[:10] = normalize_rows(dec_a[:10] + 0.2 * rng.standard_normal((10, d)).astype(np.float32))[0]
    fa = sparse_acts(rng, 1500, F_a, 1.2)
    fb = sparse_acts(rng, 1500, F_b, 1.2)
    fb[:, :10] = fa[:, :10] * rng.uniform(0.5, 1.5, (1500, 10)).astype(np.float32)  # related pairs co-fire
    acc = ActSimAccumulator(F_a, F_b)
    acc.update(fa, fb)
    sim = acc.result()
    got = decoder_vs_activation(sim, dec_a, dec_b, tau=0.7, act_metric="masked_cos", act_threshold=0.5)
    # brute force: every pair's decoder cos and activation metric from dense arrays
    ref = dense_reference(fa, fb)
    S = dec_a.astype(np.float64) @ dec_b.astype(np.float64).T
    co = ((fa != 0).astype(int).T @ (fb != 0).astype(int)) > 0
    dec_edges = S > 0.7
    act_edges = ref["masked_cos"] > 0.5
    assert got.n_coactive == int(co.sum())
    assert got.n_decoder_edges == int(dec_edges.sum()) and got.n_activation_edges == int(np.nansum(act_edges))
    assert got.n_both == int((dec_edges & act_edges).sum())
    assert got.precision == pytest.approx((dec_edges & act_edges).sum() / dec_edges.sum())
    assert got.recall == pytest.approx((dec_edges & act_edges).sum() / act_edges.sum())
    for name in ("jaccard", "pearson", "masked_cos"):
        v = ref[name][co]
        ok = np.isfinite(v)
        assert got.spearman[name] == pytest.approx(spearmanr(S[co][ok], v[ok]).statistic, abs=1e-12)
    # the planted related pairs are edges on both sides (the other co-active pairs are random)
    assert got.n_both >= 8 and np.all(act_edges[np.arange(10), np.arange(10)])


def test_bad_inputs_raise_featgraph_errors_naming_the_problem():
    acc = ActSimAccumulator(4, 5)
    with pytest.raises(ShapeMismatchError, match=r"\[n, 4\] and \[n, 5\], got \[3, 4\] and \[2, 5\]"):
        acc.update(np.ones((3, 4), np.float32), np.ones((2, 5), np.float32))
    bad = np.ones((3, 5), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ShapeMismatchError, match="NaN/inf"):
        acc.update(np.ones((3, 4), np.float32), bad)
    with pytest.raises(ConfigError, match="0 tokens"):
        ActSimAccumulator(4, 5).result()
    with pytest.raises(ShapeMismatchError, match="d_in differs"):
        activation_similarity([], tiny_sae(8, 16), tiny_sae(8, 12))
    acc.update(np.ones((3, 4), np.float32), np.ones((3, 5), np.float32))
    with pytest.raises(ConfigError, match="act_metric"):
        decoder_vs_activation(acc.result(), np.eye(4, 6, dtype=np.float32), np.eye(5, 6, dtype=np.float32),
                              act_metric="cos")
