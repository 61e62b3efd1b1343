"""explain's pass against brute force: top-k distinct contexts (ties included) equal an argsort over the dense
activations, statistics equal dense numpy, for every batch size (one context per batch, fewer tokens than k, the
whole store) and with or without BOS in the store."""

from __future__ import annotations

import numpy as np
import pytest

from featgraph.explain.config import ExplainConfig
from featgraph.explain.run import explain_sae, run_explain, store_layout
from featgraph.explain.stats import TokenStats
from featgraph.explain.tokens import id_strings

from .builders import brute_examples, brute_token_stats, dense_acts, integer_case, token_store


def _rows(df) -> list[tuple]:
    return [(r["feature"], r["rank"], r["activation"], r["context"], r["position"], r["token_ids"], r["acts"],
             r["center"]) for r in df.iter_rows(named=True)]


@pytest.mark.parametrize("exclude_bos", [True, False])
@pytest.mark.parametrize("batch_size", [1, 6, 13, 10_000])
def test_examples_equal_brute_force_argsort_with_ties(tmp_path, exclude_bos, batch_size):
    store, sae = integer_case(tmp_path / "acts", exclude_bos=exclude_bos)
    sae.save(tmp_path / "sae")
    A = dense_acts(sae, store)
    tokens = np.load(tmp_path / "acts" / "tokens.npy")
    first = int(exclude_bos)
    k, window = 4, 3
    res = run_explain(ExplainConfig(saes=(str(tmp_path / "sae"),), acts=str(tmp_path / "acts"),
                                    out=str(tmp_path / "out"), k=k, window=window, batch_size=batch_size,
                                    progress=False), decode=id_strings)
    want = brute_examples(A, tokens, first, k, window, window // 4)
    got = _rows(res.examples)
    assert got == want  # exact: integer activations, same order on ties
    # ties were really there: a repeated context ties every feature firing on it; the earlier context ranks first
    ctx_pairs = [(g[3], h[3]) for g, h in zip(got, got[1:], strict=False) if g[0] == h[0] and g[2] == h[2]]
    assert ctx_pairs and all(a < b for a, b in ctx_pairs)
    assert (res.stats["label"] == "").to_list()[-1]  # the feature that never fires has no label and no examples
    assert res.examples.filter(res.examples["feature"] == 9).height == 0


def test_more_k_than_contexts_and_batches_smaller_than_k(tmp_path):
    store, sae = integer_case(tmp_path / "acts", n_ctx=5)
    layout = store_layout(store)
    for batch in (1, 2, 1000):  # batch_size 1 < one context -> one context per batch; k = 50 > 5 contexts
        ex = explain_sae(sae, store, layout, k=50, window=2, batch_size=batch)
        n_fired_ctx = (dense_acts(sae, store).reshape(5, -1, sae.n_features).max(axis=1) > 0).sum(axis=0)
        assert ((ex.top.values > 0).sum(axis=1) == n_fired_ctx).all()
        assert ex.top.values.shape == (sae.n_features, 50)


@pytest.mark.parametrize("architecture", ["relu", "jumprelu", "topk"])
def test_random_floats_match_dense_encode(tmp_path, architecture):
    """Continuous data (no ties): every architecture, the windows' activations are the dense encode's."""
    from tests.conftest import tiny_sae

    rng = np.random.default_rng(3)
    n_ctx, ctx, d = 11, 9, 8
    x = rng.standard_normal((n_ctx * (ctx - 1), d)).astype(np.float32)
    tokens = np.concatenate([np.ones((n_ctx, 1)), rng.integers(2, 40, (n_ctx, ctx - 1))], 1).astype(np.int32)
    store = token_store(tmp_path / "acts", x, tokens, exclude_bos=True)
    sae = tiny_sae(24, d, seed=1, architecture=architecture, k=5 if architecture == "topk" else None)
    ex = explain_sae(sae, store, store_layout(store), k=3, window=4, batch_size=17)
    A = dense_acts(sae, store)
    want = brute_examples(A, tokens, 1, 3, 4, 1)
    top = ex.top
    got = [(f, r) for f, r in zip(*np.nonzero(top.values > 0), strict=True)]
    assert len(got) == len(want) > 20
    for (f, r), w in zip(got, want, strict=True):
        assert (f, r) == w[:2] and top.contexts[f, r] == w[3] and top.positions[f, r] + 1 == w[4]
        assert top.values[f, r] == pytest.approx(w[2], rel=1e-5, abs=1e-6)
        lo = 4 - w[7]  # the window's first slot inside the context
        np.testing.assert_allclose(top.windows[f, r, lo:lo + len(w[6])], w[6], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
def test_stats_equal_dense_numpy(tmp_path, batch_size):
    store, sae = integer_case(tmp_path / "acts", n_ctx=12, vocab=4)
    sae.save(tmp_path / "sae")
    A = dense_acts(sae, store)
    tokens = np.load(tmp_path / "acts" / "tokens.npy")
    res = run_explain(ExplainConfig(saes=(str(tmp_path / "sae"),), acts=str(tmp_path / "acts"),
                                    out=str(tmp_path / "out"), top_tokens=3, batch_size=batch_size,
                                    progress=False), decode=id_strings)
    want = brute_token_stats(A, tokens[:, 1:].reshape(-1), 3)
    n = A.shape[0]
    for row in res.stats.iter_rows(named=True):
        w = want[row["feature"]]
        assert (row["n_tokens"], row["n_active"]) == (n, w["n_active"])
        assert row["frequency"] == w["n_active"] / n
        assert row["max_act"] == w["max"]
        assert row["mean_act"] == (w["sum"] / w["n_active"] if w["n_active"] else None)
        assert list(zip(row["top_tokens"], row["top_token_counts"], strict=True)) == [
            (f"<{t}>", c) for t, c in w["by_count"]]
        assert list(zip(row["top_tokens_by_act"], row["top_token_act_sums"], strict=True)) == [
            (f"<{t}>", s) for t, s in w["by_sum"]]
    assert res.stats["n_active"].sum() > 0 and (res.stats["n_active"] == 0).sum() >= 1


def test_sparse_accumulator_merges_mid_stream(monkeypatch):
    """The COO table merged after every batch gives the same totals as merged once at the end."""
    rng = np.random.default_rng(5)
    batches = [(np.maximum(rng.integers(-3, 3, (20, 6)), 0).astype(np.float32), rng.integers(0, 4, 20))
               for _ in range(6)]
    results = []
    for merge_min in (1 << 22, 0):
        monkeypatch.setattr(TokenStats, "MERGE_MIN", merge_min)
        st = TokenStats(6)
        for a, t in batches:
            st.update(a, t)
            assert (st.keys.size > 0) == (merge_min == 0)  # merged after every batch, or only at the end
        results.append(st.result(2))
    a, b = results
    for field in ("n_active", "act_sum", "count_token", "count_value", "sum_token", "sum_value"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
