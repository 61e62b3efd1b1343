"""BCa intervals (featgraph.stitch.bootstrap): seeded, covering a planted mean, agreeing with
``scipy.stats.bootstrap(method="BCa")``, falling back (and saying so) where BCa is undefined, and what they do and do
not fix for a count of signs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtri

from featgraph.stitch import bootstrap as bs
from featgraph.stitch.bootstrap import (
    acceleration,
    bca_interval,
    context_weights,
    feature_bca,
    pair_intervals,
    percentile_interval,
    ratio_interval,
)


def _moments(seed: int, *, n_ctx: int = 100, n_clear: int = 300, n_near: int = 100, near_z: float = 1.5):
    """A fake :class:`~featgraph.stitch.stream.PairMoments` with a planted 2x2 table: ``n_clear`` reconstruction
    features whose delta-MSE is clearly > 0 and ``n_near`` novel features whose true delta-MSE is > 0 but only
    ``near_z`` standard errors from 0 (per-context means have sd 1). So the true count of novel features with
    delta-MSE < 0 is 0, and the noisy estimate and its replicates count some anyway."""
    rng = np.random.default_rng(seed)
    n = rng.integers(100, 128, n_ctx).astype(np.float64)
    f = n_clear + n_near
    mu = np.concatenate([np.full(n_clear, 1.0), np.full(n_near, near_z / np.sqrt(n_ctx))])
    ctx_dmse = n[:, None] * (mu[None, :] + rng.standard_normal((n_ctx, f)))
    est = ctx_dmse.sum(0) / n.sum()
    m = SimpleNamespace(ctx_n=n, ctx_dmse=ctx_dmse, ctx_unit="context",
                        ctx_sse_small=n * (10 + rng.standard_normal(n_ctx)),
                        ctx_sse_large=n * (8 + rng.standard_normal(n_ctx)),
                        ctx_sse_novel=n * (9 + rng.standard_normal(n_ctx)),
                        add_each=lambda: (est, np.zeros(f)))
    return m, np.arange(f) >= n_clear


def test_pair_intervals_are_seeded_and_record_the_method():
    m, novel = _moments(0)
    a, b, c = (pair_intervals(m, novel, n_boot=300, seed=s) for s in (5, 5, 6))
    assert a == b and a != c
    assert (a["method"], a["n_boot"], a["seed"], a["level"], a["unit"], a["n_contexts"]) == (
        "bca", 300, 5, 0.95, "context", 100)
    assert a["description"].startswith("BCa bootstrap over held-out contexts")
    assert a["two_by_two"]["novel"]["dmse_lt_0"] != c["two_by_two"]["novel"]["dmse_lt_0"]
    # never fires / never changes: every replicate equals the estimate, said so in the record
    assert a["two_by_two"]["reconstruction"]["dmse_lt_0"] == [0.0, 0.0]
    assert "every replicate equals the estimate" in a["fallbacks"]["two_by_two.reconstruction.dmse_lt_0"]
    # smooth numbers: ordinary BCa, no fallback, and the interval holds its estimate
    for key, (num, den) in {"mse_small": (m.ctx_sse_small, m.ctx_n), "mse_large": (m.ctx_sse_large, m.ctx_n)}.items():
        lo, hi = a[key]
        assert key not in a["fallbacks"] and lo < num.sum() / den.sum() < hi


def test_blocks_give_the_same_counts_as_one_pass(monkeypatch):
    m, novel = _moments(1, n_ctx=30, n_clear=40, n_near=30)
    whole = pair_intervals(m, novel, n_boot=200, seed=0)
    monkeypatch.setattr(bs, "_BLOCK_ELEMENTS", 7 * novel.size)  # 7 replicates / contexts per block
    assert pair_intervals(m, novel, n_boot=200, seed=0) == whole


def test_bca_of_a_mean_covers_the_planted_truth():
    """200 seeded data sets of 80 per-context values (chi-square 3: skewed, mean 3): the 95% BCa interval of the
    mean covers 3 in 90-99% of them."""
    truth, covered = 3.0, 0
    for rep in range(200):
        x = np.random.default_rng(rep).chisquare(3, 80)
        lo, hi = ratio_interval(x, np.ones(x.size), context_weights(x.size, n_boot=1000, seed=rep))
        covered += lo <= truth <= hi
    assert 180 <= covered <= 198, covered


def test_bca_agrees_with_scipy_on_a_mean():
    """Same data, 20,000 replicates each (different random draws): the ends agree within 4% of the interval's
    width, while the percentile interval's upper end is 3 times that far off (the test tells BCa from it)."""
    x = np.random.default_rng(7).lognormal(0.0, 1.0, 60)
    ours = ratio_interval(x, np.ones(x.size), context_weights(x.size, n_boot=20_000, seed=0))
    ref = stats.bootstrap((x,), np.mean, method="BCa", n_resamples=20_000,
                          random_state=np.random.default_rng(100)).confidence_interval
    width = ref.high - ref.low
    assert ours == pytest.approx([ref.low, ref.high], abs=0.04 * width)
    perc = percentile_interval(context_weights(x.size, n_boot=20_000, seed=0) @ x / x.size)
    assert abs(perc[1] - ref.high) > 0.12 * width
    # the acceleration is scipy's jackknife formula: leave-one-out means of the values
    loo = (x.sum() - x) / (x.size - 1)
    d = loo.mean() - loo
    assert acceleration(loo) == pytest.approx((d**3).sum() / (6 * (d**2).sum() ** 1.5), rel=1e-12)


def test_fallbacks_where_bca_is_undefined_are_said():
    jack = np.linspace(0.0, 1.0, 10)
    assert bca_interval(np.full(50, 2.0), 2.0, jack) == ([2.0, 2.0], pytest.approx(
        "every replicate equals the estimate: the interval is the estimate"))
    reps = np.arange(100.0) + 10  # every replicate above the estimate 5: z0 = -inf
    iv, note = bca_interval(reps, 5.0, jack)
    assert iv == percentile_interval(reps) and "z0 infinite" in note and "above" in note
    iv, note = bca_interval(np.arange(100.0), float("nan"), jack)
    assert all(v != v for v in iv) and note.startswith("undefined")
    iv, note = bca_interval(np.arange(100.0), 50.0, np.array([0.0] * 9 + [-1e3]))  # acceleration 0.14: fine
    assert iv[0] < 50.0 < iv[1] and note is None
    # |a| <= 1/6 always, so 1 - a (z0 + z) <= 0 needs |z0 + z| >= 6: one replicate in 100,000 below the estimate
    # (z0 = -4.3) and a single jackknife outlier (a = -0.166)
    reps = np.arange(100_000.0)
    iv, note = bca_interval(reps, 0.5, np.array([0.0] * 999 + [1e3]))
    assert iv == percentile_interval(reps) and "acceleration" in note
    assert acceleration(np.array([1.0])) == 0.0 and acceleration(np.full(5, 3.0)) == 0.0


def test_ties_counted_as_half_let_bca_hold_a_count_its_percentile_interval_misses():
    """A count's replicates: 0.5% below the estimate 16, 1.5% equal to it, the rest above. The percentile interval
    [17, ...] misses 16; BCa's bias correction (z0 from 1.25% = 0.5% below + half the 1.5% ties) reaches the
    ties: [15, 16]."""
    reps = np.concatenate([np.full(5, 15.0), np.full(15, 16.0), 17.0 + np.arange(980) % 14])
    assert percentile_interval(reps)[0] > 16.0
    iv, note = bca_interval(reps, 16.0, np.zeros(5))
    assert note is None and iv == pytest.approx([15.0, 16.0])


def test_bca_holds_a_continuous_estimate_exactly_when_the_percentile_interval_does():
    """Why BCa cannot repair every count of signs: its ends are percentiles at Phi(z0 + (z0 + z) / (1 - a (z0 + z))),
    which lie on either side of the estimate's own level Phi(z0) iff |z0| <= 1.96, the percentile interval's
    condition. Checked on 300 seeded replicate sets with random bias and skew."""
    rng = np.random.default_rng(0)
    agree = 0
    for _ in range(300):
        reps = rng.standard_normal(1000) + rng.uniform(-3.5, 3.5)
        jack = rng.standard_normal(50) ** 2 * rng.choice([-1.0, 1.0])
        iv, note = bca_interval(reps, 0.0, jack)
        perc = percentile_interval(reps)
        if note is None:
            agree += (iv[0] <= 0.0 <= iv[1]) == (perc[0] <= 0.0 <= perc[1])
        else:
            agree += 1
    assert agree >= 298, agree  # linear interpolation between replicates can tip a case at the boundary


def test_a_count_of_near_zero_signs_moves_toward_the_truth_and_is_flagged():
    """The failure seen on the bundled ladder, planted: 100 novel features whose true delta-MSE is > 0 but 1.5
    standard errors from 0. The estimate counts 10 of them below 0 (truth: 0); resampling adds noise, so every
    replicate counts more, and the percentile interval [12, 23] misses 10 on the far side of the truth. BCa moves
    the interval toward the truth, past the estimate: the record lists the cell in ``estimate_outside_interval``."""
    m, novel = _moments(1)
    iv = pair_intervals(m, novel, n_boot=1000, seed=0)
    w = context_weights(m.ctx_n.size, n_boot=1000, seed=0)
    reps = (((w @ m.ctx_dmse) / (w @ m.ctx_n)[:, None])[:, novel] < 0).sum(1).astype(np.float64)
    est = int((m.add_each()[0][novel] < 0).sum())
    perc = percentile_interval(reps)
    lo, hi = iv["two_by_two"]["novel"]["dmse_lt_0"]
    assert est == 10 and perc[0] > est  # the percentile interval misses its own estimate
    z0 = ndtri(((reps < est).sum() + 0.5 * (reps == est).sum()) / reps.size)
    assert z0 < -1.96  # hence BCa cannot hold it either (see the test above)
    assert hi < perc[0] and hi <= est and abs(lo + hi) / 2 < abs(perc[0] + perc[1]) / 2
    assert "two_by_two.novel.dmse_lt_0" in iv["estimate_outside_interval"]
    assert "share_novel_lowering_mse" in iv["estimate_outside_interval"]
    assert iv["share_novel_lowering_mse"] == pytest.approx([v / novel.sum() for v in (lo, hi)])


def test_feature_bca_is_bca_interval_column_by_column():
    rng = np.random.default_rng(3)
    reps = rng.standard_normal((400, 6)) * [1, 2, 1, 1, 0, 1] + [0, 1, 0, 0, 0, 0]
    reps[:, 2] = rng.integers(0, 5, 400)  # a count: many ties
    est = np.array([0.1, 0.5, 2.0, -9.0, 0.0, 0.3])  # column 3: every replicate above (z0 infinite); 4: all equal
    jack = rng.standard_normal((30, 6)) ** 3
    ends = feature_bca(reps, est, jack)
    for j in range(6):
        iv, _ = bca_interval(reps[:, j], est[j], jack[:, j])
        assert ends[:, j] == pytest.approx(iv, rel=1e-12, abs=1e-12), j


def test_decided_signs_bound_a_count_of_near_zero_signs():
    """The planted case above: the 300 clear reconstruction features are decided > 0; most of the 100 near-zero
    novel features are undecided, none is decided < 0 (truth: all > 0), and the estimated count of novel features
    below 0 (10) lies between the decided count and decided + undecided."""
    m, novel = _moments(1)
    dec = pair_intervals(m, novel, n_boot=1000, seed=0)["two_by_two_decided"]
    assert dec["reconstruction"] == {"dmse_lt_0": 0, "dmse_gt_0": 300, "undecided": 0}
    nv = dec["novel"]
    assert nv["dmse_lt_0"] == 0 and nv["undecided"] >= 50 and nv["dmse_gt_0"] + nv["undecided"] == 100
    assert nv["dmse_lt_0"] <= 10 <= nv["dmse_lt_0"] + nv["undecided"]


def test_report_note_says_the_interval_is_bca_and_what_misses_its_value():
    from featgraph.report.html import _interval_note

    m, novel = _moments(1)
    iv = pair_intervals(m, novel, n_boot=1000, seed=0)
    note = _interval_note(iv)
    assert "95% interval, BCa bootstrap over held-out contexts, 1000 replicates, seed 0" in note
    assert "Not containing their value here: two_by_two.novel.dmse_lt_0" in note
    assert f"novel: {iv['two_by_two_decided']['novel']['undecided']} features whose own delta-MSE interval" in note
    # a summary written before BCa (method was the description) still renders
    old = {"level": 0.95, "method": "percentile bootstrap over held-out contexts", "n_contexts": 3, "unit": "context"}
    assert "95% interval, percentile bootstrap over held-out contexts (3 units" in _interval_note(old)


def test_an_end_a_rounding_error_off_its_count_is_not_outside(monkeypatch):
    monkeypatch.setattr(bs, "bca_interval", lambda *a, **k: ([340.0, 343.0 - 2.2e-9], None))
    rec = bs._Record(0.95)
    rec("at the end", np.zeros(3), 343.0, np.zeros(3))
    rec("past the end", np.zeros(3), 343.5, np.zeros(3))
    assert rec.fields() == {"fallbacks": {}, "estimate_outside_interval": ["past the end"]}
