"""The interpolation path: one-pass per-step metrics equal the explicitly built hybrids; the order is
documented."""

from __future__ import annotations

import numpy as np
import pytest

from featgraph.stitch.interpolate import default_ce_steps, interpolation_path, path_sae, plan_interpolation
from tests.builders import stitch_pair
from tests.oracles import exact_mse_l0


def test_path_steps_equal_built_hybrids():
    small, large, x, truth = stitch_pair()
    plan = plan_interpolation(small, large, 0.7, progress=False)
    # the planted novel features are exactly the ones the matching calls novel
    assert set(plan.novel.tolist()) == set(np.flatnonzero(truth.parent_of < 0).tolist())
    calls = []

    def fake_ce(sae):  # stands in for a model forward: records which SAEs it saw
        calls.append(sae.n_features)
        return float(sae.n_features)

    steps = default_ce_steps(plan.n_steps, 4)
    path = interpolation_path(small, large, x, plan, ce_fn=fake_ce, ce_steps=steps, batch_size=600, progress=False)
    assert path.height == plan.n_steps == 2 + len(plan.families)
    assert path["action"].to_list()[:3] == ["base", "add_novel", "swap"]
    strengths = path["family_max_cos"].to_numpy()[2:]
    assert (np.diff(strengths) <= 0).all() and (strengths > 0.7).all()
    for st in sorted({0, 1, 2, plan.n_steps // 2, plan.n_steps - 1}):
        sae = path_sae(small, large, plan, st)
        mse, l0 = exact_mse_l0(sae, x)
        row = path.row(st, named=True)
        assert row["n_features"] == sae.n_features
        assert row["mse"] == pytest.approx(mse, rel=1e-6), st  # hybrid b_enc is folded in float32
        assert row["l0"] == pytest.approx(l0, rel=1e-6), st
    # the last step holds every large feature
    removed, added = plan.members_at(plan.n_steps - 1)
    assert sorted(added.tolist()) == list(range(large.n_features))
    assert path["ce_recovered"].is_not_null().sum() == len(steps) == len(calls)
    assert path["n_features"][-1] == large.n_features + small.n_features - len(removed)
    # adding the (planted, truly missing) novel features helps this pair
    assert path["mse"][1] < path["mse"][0]


def test_default_ce_steps():
    assert default_ce_steps(3) == [0, 1, 2]
    s = default_ce_steps(100, 6)
    assert s[0] == 0 and s[1] == 1 and s[-1] == 99 and len(s) <= 6
