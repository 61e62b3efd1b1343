"""Bootstrap intervals over held-out contexts: seeded, covering a planted truth, and built from per-context sums that
add up exactly to the pass's point estimates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featgraph.activations.batches import StoreRows
from featgraph.errors import ConfigError
from featgraph.stitch.bootstrap import (
    comparison_intervals,
    context_layout,
    context_weights,
    percentile_interval,
    ratio_interval,
)
from featgraph.stitch.evaluator import Evaluator
from featgraph.stitch.frankenstein import analyze_frankenstein
from featgraph.stitch.interpolate import plan_interpolation
from featgraph.stitch.pair import analyze_pair
from featgraph.stitch.stream import stream_pair

from .test_frankenstein import ladder_and_acts
from .test_pipeline import _pair, _store


def _contexts(rng: np.random.Generator, n_ctx: int = 100, per: int = 20, truth: float = 0.8):
    """Per-context sums of a ratio whose population value is ``truth``: contexts differ in scale (lognormal) and in
    their own ratio (mean ``truth``); tokens within a context are correlated through both."""
    scale = rng.lognormal(0.0, 0.5, n_ctx)
    own = truth + 0.25 * rng.standard_normal(n_ctx)
    den_tok = scale[:, None] * rng.chisquare(3, (n_ctx, per))
    num_tok = own[:, None] * den_tok * (1 + 0.05 * rng.standard_normal((n_ctx, per)))
    return num_tok, den_tok


def test_context_bootstrap_covers_the_planted_truth_and_a_token_bootstrap_does_not():
    truth, covered, covered_tokens = 0.8, 0, 0
    for rep in range(100):
        rng = np.random.default_rng(1000 + rep)
        num_tok, den_tok = _contexts(rng, truth=truth)
        # the estimator sum num / sum den is consistent for E[scale * own * chi2] / E[scale * chi2] = truth (own is
        # independent of scale)
        w = context_weights(num_tok.shape[0], n_boot=200, seed=rep)
        lo, hi = ratio_interval(num_tok.sum(1), den_tok.sum(1), w)
        covered += lo <= truth <= hi
        wt = context_weights(num_tok.size, n_boot=200, seed=rep)  # every token its own unit: too narrow here
        lo_t, hi_t = ratio_interval(num_tok.ravel(), den_tok.ravel(), wt)
        covered_tokens += lo_t <= truth <= hi_t
    assert covered >= 90, covered
    assert covered_tokens < 60, covered_tokens  # why the bootstrap resamples contexts, not tokens


def test_weights_are_seeded_and_resample_with_replacement():
    a, b, c = (context_weights(50, n_boot=20, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a.sum(1) == 50).all() and (a == 0).any()
    assert percentile_interval(np.arange(101.0)) == pytest.approx([2.5, 97.5])
    with pytest.raises(ConfigError, match="context"):
        context_weights(0)


def test_per_context_sums_add_up_to_the_point_estimates(tmp_path):
    small, large, x = _pair("relu")
    store = _store(tmp_path, x)  # 15 contexts of 100 rows
    rows = StoreRows(store)
    per, phase, unit = context_layout(rows)
    assert (per, phase, unit) == (100, 0, "context")
    assert context_layout(StoreRows(store, 300, offset=250))[:2] == (100, 50)
    assert context_layout(torch.from_numpy(x))[2].startswith("block of 128")
    plan = plan_interpolation(small, large, 0.7)
    # a batch size that cuts contexts: pieces of one context must be summed back together
    m = stream_pair(small, large, rows, plan.families, batch_size=256, progress=False,
                    novel=np.asarray(plan.novel), context_rows=per, context_phase=phase)
    assert m.ctx_n.tolist() == [100.0] * 15
    dmse, _ = m.add_each()
    np.testing.assert_allclose(m.ctx_dmse.sum(0) / m.n_tokens, dmse, rtol=1e-9, atol=1e-12 * m.mse_small)
    assert m.ctx_sse_small.sum() / m.n_tokens == pytest.approx(m.mse_small, rel=1e-12)
    assert m.ctx_sse_large.sum() / m.n_tokens == pytest.approx(m.mse_large, rel=1e-12)
    path_mse, _ = m.path([np.asarray(plan.novel)])
    assert m.ctx_sse_novel.sum() / m.n_tokens == pytest.approx(path_mse[1], rel=1e-9)
    # each context's sums are that context's own: recompute context 3's SSE directly
    with torch.no_grad():
        xc = torch.from_numpy(x[300:400]).double()
        s64 = small.double()
        sse3 = float(((s64(xc).x_hat - xc) ** 2).sum())
    assert m.ctx_sse_small[3] == pytest.approx(sse3, rel=1e-9)


def test_pair_summary_intervals_are_seeded_and_bracket_the_estimates(tmp_path):
    small, large, x = _pair("relu")
    rows = StoreRows(_store(tmp_path, x))
    a = analyze_pair(small, large, rows, progress=False, n_boot=400, boot_seed=1)
    b = analyze_pair(small, large, rows, progress=False, n_boot=400, boot_seed=1)
    c = analyze_pair(small, large, rows, progress=False, n_boot=400, boot_seed=2)
    iv = a.summary["intervals"]
    assert iv == b.summary["intervals"] and iv != c.summary["intervals"]
    assert iv["n_contexts"] == 15 and iv["unit"] == "context" and iv["level"] == 0.95
    s = a.summary
    for key, point in (("mse_small", s["mse_small"]), ("mse_large", s["mse_large"]),
                       ("add_all_novel_relative_change", s["add_all_novel"]["relative_change"]),
                       ("share_novel_lowering_mse", s["share_novel_lowering_mse"])):
        lo, hi = iv[key]
        assert lo <= point <= hi and lo < hi, key
    for cat in ("novel", "reconstruction"):
        for cell in ("dmse_lt_0", "dmse_gt_0"):
            lo, hi = iv["two_by_two"][cat][cell]
            assert lo <= s["two_by_two"][cat][cell] <= hi
    assert "intervals" not in analyze_pair(small, large, rows, progress=False, n_boot=0).summary


def test_frankenstein_comparison_intervals_are_paired_and_from_the_evaluation_pass():
    saes, x = ladder_and_acts(n_tokens=3000)
    ev = Evaluator(x[:1280])  # a plain tensor: blocks of 128 rows stand for contexts (10 of them)
    a = analyze_frankenstein(saes, ["w32", "w64", "w128"], train_acts=x[1280:], evaluator=ev, progress=False,
                             ridges=(0.0, 1e-3), n_boot=300)
    iv = a.intervals
    assert iv["n_contexts"] == 10 and iv["unit"].startswith("block")
    # the evaluator's per-context sums are each row's own: compare one with a direct computation
    sse, n = ev.per_context["frank-3sae-retrained"]
    sae = a.retrained[-1]
    with torch.no_grad():
        xb = x[256:384]
        direct = float(((sae(xb).x_hat.double() - xb.double()) ** 2).sum())
    assert n.tolist() == [128.0] * 10 and sse[2] == pytest.approx(direct, rel=1e-6)
    for r in a.table.iter_rows(named=True):
        lo, hi = iv["mse"][r["name"]]
        assert lo <= r["mse"] <= hi
    pairs = iv["frankenstein_vs_ladder"]
    assert len(pairs) == 3 * 3
    for p in pairs:
        lo, hi = p["mse_difference_interval"]
        assert lo <= p["mse_difference"] <= hi and 0.0 <= p["share_frankenstein_better"] <= 1.0
    # paired: a row against itself differs by exactly 0 in every replicate
    same = comparison_intervals(
        [{"kind": "frankenstein (retrained)", "name": "a", "width": 1, "l0": 1.0, "mse": 1.0},
         {"kind": "ladder (decoder retrained)", "name": "b", "width": 1, "l0": 1.0, "mse": 1.0}],
        {"a": (sse, n), "b": (sse.copy(), n)}, n_boot=50)
    assert same["frankenstein_vs_ladder"][0]["mse_difference_interval"] == [0.0, 0.0]
