"""One-pass delta-MSE / delta-L0 agree with building each hybrid and evaluating it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featgraph.errors import ConfigError
from featgraph.stitch.delta_mse import (
    active_inactive_mse,
    cumulative_add_mse,
    delta_mse_add,
    delta_mse_swap,
    family_groups,
    two_by_two,
)
from featgraph.stitch.hybrid import add_features, swap_family
from tests.builders import stitch_pair
from tests.oracles import exact_mse_l0


def planted_families(truth, n_small):
    """(parents, children) per small feature that has planted children (copies and splits)."""
    fams = []
    for p in range(n_small):
        kids = np.flatnonzero(truth.parent_of == p)
        if kids.size:
            fams.append(([p], kids.tolist()))
    return fams


@pytest.mark.parametrize("arch", ["relu", "jumprelu"])
def test_one_pass_add_equals_one_at_a_time(arch):
    small, large, x, _ = stitch_pair(arch=arch)
    res = delta_mse_add(small, large, x, batch_size=700, progress=False)
    base_mse, base_l0 = exact_mse_l0(small, x)
    assert res.mse_base == pytest.approx(base_mse, rel=1e-12)
    assert res.l0_base == pytest.approx(base_l0, rel=1e-12)
    ref = np.array([exact_mse_l0(add_features(small, large, [j]), x)[0] - base_mse for j in range(large.n_features)])
    assert (ref < 0).any() and (ref > 0).any(), "the test pair should have helpful and harmful candidates"
    np.testing.assert_allclose(res.dmse, ref, rtol=1e-5, atol=1e-9 * base_mse)
    ref_l0 = np.array([exact_mse_l0(add_features(small, large, [j]), x)[1] - base_l0 for j in range(0, 96, 7)])
    np.testing.assert_allclose(res.dl0[::7], ref_l0, rtol=1e-9, atol=1e-12)


def test_candidate_subset_keeps_the_given_order():
    small, large, x, _ = stitch_pair()
    full = delta_mse_add(small, large, x, progress=False)
    sub = delta_mse_add(small, large, x, candidates=[50, 3, 17], progress=False)
    np.testing.assert_allclose(sub.dmse, full.dmse[[50, 3, 17]], rtol=1e-12)


def test_one_pass_swap_equals_building_each_swap():
    small, large, x, truth = stitch_pair()
    fams = planted_families(truth, small.n_features)
    assert any(len(c) > 1 for _, c in fams) and any(len(c) == 1 for _, c in fams)
    res = delta_mse_swap(small, large, x, fams, batch_size=512, progress=False)
    base_mse, base_l0 = exact_mse_l0(small, x)
    for i, (parents, children) in enumerate(fams):
        mse, l0 = exact_mse_l0(swap_family(small, large, parents, children), x)
        assert res.dmse[i] == pytest.approx(mse - base_mse, rel=1e-5, abs=1e-9 * base_mse), i
        assert res.dl0[i] == pytest.approx(l0 - base_l0, rel=1e-9, abs=1e-12), i


def test_multi_parent_family_and_batch_size_invariance():
    small, large, x, _ = stitch_pair()
    fams = [([0, 1], [2, 3, 4]), ([5], []), ([], [9]), ([6, 7], [10])]
    a = delta_mse_swap(small, large, x, fams, batch_size=100000, progress=False)
    b = delta_mse_swap(small, large, x, fams, batch_size=333, progress=False)
    np.testing.assert_allclose(a.dmse, b.dmse, rtol=1e-10)
    base_mse, _ = exact_mse_l0(small, x)
    for i, (p, c) in enumerate(fams):
        mse, _ = exact_mse_l0(swap_family(small, large, p, c), x)
        assert a.dmse[i] == pytest.approx(mse - base_mse, rel=1e-5, abs=1e-9 * base_mse)


def test_overlapping_families_are_refused():
    with pytest.raises(ConfigError, match="disjoint"):
        family_groups([([0], [1]), ([0], [2])], 4, 4)
    with pytest.raises(ConfigError, match="out of range"):
        family_groups([([0], [9])], 4, 4)


def test_active_inactive_mse_matches_masks():
    small, large, x, _ = stitch_pair()
    feats = [0, 10, 40]
    res = active_inactive_mse(small, large, x, feats, batch_size=300, progress=False)
    with torch.no_grad():
        es = ((small(x).x_hat - x) ** 2).sum(-1).double()
        el = ((large(x).x_hat - x) ** 2).sum(-1).double()
        act = large.encode(x)[:, feats] > 0
    for i in range(len(feats)):
        m = act[:, i]
        assert res.active_frac[i] == pytest.approx(float(m.double().mean()))
        assert res.base_active[i] == pytest.approx(float(es[m].mean()), rel=1e-9)
        assert res.base_inactive[i] == pytest.approx(float(es[~m].mean()), rel=1e-9)
        assert res.donor_active[i] == pytest.approx(float(el[m].mean()), rel=1e-9)
        assert res.donor_inactive[i] == pytest.approx(float(el[~m].mean()), rel=1e-9)


def test_cumulative_add_mse_equals_building_each_prefix():
    small, large, x, _ = stitch_pair()
    order = [40, 3, 77, 12, 5, 60]
    curve = cumulative_add_mse(small, large, x, order, batch_size=450, progress=False)
    assert curve.shape == (7,)
    for k in range(7):
        mse, _ = exact_mse_l0(add_features(small, large, order[:k]), x)
        assert curve[k] == pytest.approx(mse, rel=1e-6), k


def test_two_by_two_counts():
    t = two_by_two(np.array([0.1, 0.2, 0.9, 0.95, 0.7, 0.3]), np.array([-1.0, 2.0, 3.0, -4.0, -5.0, 0.0]), 0.7)
    assert t["novel"] == {"dmse_lt_0": 2, "dmse_gt_0": 1, "dmse_eq_0": 1, "total": 4}  # 0.7 itself is novel
    assert t["reconstruction"] == {"dmse_lt_0": 1, "dmse_gt_0": 1, "dmse_eq_0": 0, "total": 2}
