"""health: planted SAEs with untouched rows, dead or harmful features are flagged; a trained one is not."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from featgraph.sae import Sae
from featgraph.stitch.batches import as_dtype
from featgraph.training import TrainConfig, initial_decoder, train_ladder
from featgraph.training.evaluate import evaluate_ladder
from featgraph.training.health import (
    frequency_histogram,
    init_cosines,
    random_like_share,
    random_max_cos_threshold,
    removal_delta_mse,
    sae_health,
    undertrained_reasons,
)
from tests.builders import planted, store_of
from tests.conftest import tiny_sae

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 40-wide ReLU SAE trained on 48 planted atoms (k=3: every feature has work), folder, held-out data."""
    x, atoms = planted(40_000)
    store = store_of(x, tmp_path_factory.mktemp("health") / "store")
    cfg = TrainConfig(l1_coefficient=2.0, lr=3e-3, batch_size=256, epochs=3, dead_window=5000, resample_every=200)
    out = tmp_path_factory.mktemp("health") / "out"
    (folder,) = train_ladder(store, [40], cfg, out, progress=False, health_acts=planted(8000, seed=1)[0],
                             health_note="planted held-out")
    held, _ = planted(8000, seed=1)
    return Sae.load(folder), folder, held


def with_rows_reset(sae: Sae, rows: np.ndarray) -> Sae:
    """``sae`` with the decoder rows ``rows`` put back to their recorded initial rows (untouched by training)."""
    t = {k: v.clone() for k, v in sae.tensors().items()}
    W0 = initial_decoder(sae.n_features, sae.d_in, sae.cfg.extra["init"]["init_seed"])
    t["W_dec"][rows] = W0[rows]
    return Sae.from_tensors(t, sae.cfg)


def test_trained_sae_is_healthy_and_health_json_is_written(trained):
    sae, folder, held = trained
    h = sae_health(sae, held)
    assert h["moved_share"] >= 0.9 and h["useless_share"] < 0.05, h
    assert h["undertrained"] == []
    written = json.loads((folder / "health.json").read_text())
    assert written["eval_set"] == "planted held-out"
    assert written["moved_share"] == pytest.approx(h["moved_share"])
    assert sum(written["frequency_histogram"].values()) == sae.n_features


def test_untouched_rows_are_flagged(trained):
    sae, _, held = trained
    reset = with_rows_reset(sae, np.arange(0, 40, 2))  # half the rows never left their init
    cos = init_cosines(reset)
    assert np.allclose(cos[::2], 1.0, atol=1e-6) and (cos[1::2] < 0.9).mean() >= 0.9
    h = sae_health(reset, held)
    assert h["moved_share"] == pytest.approx((cos < 0.9).mean()) and h["moved_share"] <= 0.5
    assert any("moved below cos 0.9" in r and "90%" in r for r in h["undertrained"]), h["undertrained"]


def test_dead_and_harmful_features_are_useless(trained):
    sae, _, held = trained
    t = {k: v.clone() for k, v in sae.tensors().items()}
    t["b_enc"][:8] = -1e6  # 8 features can never fire: removing them changes nothing
    t["W_dec"][8:12] *= -1  # 4 features now push the reconstruction the wrong way: removing them helps
    broken = Sae.from_tensors(t, sae.cfg)
    dmse, mse = removal_delta_mse(broken, held)
    assert np.all(dmse[:8] == 0) and np.all(dmse[8:12] < 0)
    h = sae_health(broken, held)
    assert h["dead_share"] >= 8 / 40 and h["harmful_share"] >= 4 / 40 and h["useless_share"] >= 12 / 40
    assert any("useless or harmful" in r and "5%" in r for r in h["undertrained"])


def test_removal_delta_mse_equals_removing_each_feature():
    sae = tiny_sae(20, 8, seed=4)
    x = torch.randn(600, 8, generator=torch.Generator().manual_seed(2)) * 3
    dmse, mse = removal_delta_mse(sae, x, batch_size=128)
    s = as_dtype(sae, torch.float64)
    x64 = x.double()
    with torch.no_grad():
        f = s.encode(x64)
        base = ((f @ s.W_dec + s.b_dec - x64) ** 2).sum(1).mean()
        for j in range(20):
            g = f.clone()
            g[:, j] = 0
            brute = ((g @ s.W_dec + s.b_dec - x64) ** 2).sum(1).mean() - base
            assert dmse[j] == pytest.approx(float(brute), rel=1e-9, abs=1e-12)
    assert mse == pytest.approx(float(base), rel=1e-12)


def test_frequency_histogram_bins():
    freq = np.array([0.0, 0.0, 5e-8, 3e-5, 2e-4, 0.05, 0.5, 1.0])
    h = frequency_histogram(freq)
    assert h["dead"] == 2 and h["<1e-6"] == 1 and h["1e-5..1e-4"] == 1 and h["1e-4..1e-3"] == 1
    assert h["1e-2..1e-1"] == 1 and h[">=1e-1"] == 2 and sum(h.values()) == len(freq)


def test_random_like_features_against_a_trained_sae(trained):
    sae, _, _ = trained
    W = sae.W_dec.detach()
    thr = random_max_cos_threshold(W, seed=0)
    assert thr == random_max_cos_threshold(W, seed=0) and 0 < thr < 1
    # a wider SAE made of the trained rows plus small perturbations is not random-like ...
    g = torch.Generator().manual_seed(3)
    close = torch.cat([W, W + 0.05 * torch.randn(W.shape, generator=g)])
    wide = tiny_sae(W_dec=close.numpy(), seed=1)
    assert random_like_share(wide, sae)["random_like_share"] == 0.0
    # ... random rows are, about as often as the 99th percentile says (1% exceed it)
    rnd = tiny_sae(W_dec=torch.randn(2000, W.shape[1], generator=g).numpy(), seed=2)
    assert random_like_share(rnd, sae)["random_like_share"] > 0.95


def test_unknown_init_is_not_a_reason():
    sae = tiny_sae(16, 8)  # not trained by featgraph: no init recorded
    assert init_cosines(sae) is None
    h = sae_health(sae, torch.randn(300, 8) + 0.1)
    assert h["moved_share"] is None and not any("moved" in r for r in h["undertrained"])
    assert undertrained_reasons({"moved_share": 0.95, "useless_share": 0.01}) == []


def test_evaluate_ladder_reports_health_columns(trained):
    sae, _, held = trained
    reset = with_rows_reset(sae, np.arange(40))
    small = Sae.from_tensors({k: v[:32] if k in ("W_dec", "b_enc") else v[:, :32] if k == "W_enc" else v
                              for k, v in sae.tensors().items()}, sae.cfg.__class__(d_in=32, n_features=32))
    table = evaluate_ladder([sae, reset, small], acts=held, names=["trained", "reset", "small"], progress=False)
    rows = {r["name"]: r for r in table.iter_rows(named=True)}
    assert rows["trained"]["moved_share"] >= 0.9 and rows["trained"]["undertrained"] == ""
    assert rows["reset"]["moved_share"] == 0.0 and "moved below cos 0.9" in rows["reset"]["undertrained"]
    assert np.isnan(rows["small"]["moved_share"]) and np.isnan(rows["small"]["random_like_share"])


def test_init_of_a_legacy_featgraph_sae_comes_from_its_recorded_seed(trained):
    sae, _, _ = trained
    legacy_extra = {"train": {"seed": 0, "resample_every": 200}}  # featgraph 0.1 recorded settings, no init
    legacy = Sae.from_tensors(sae.tensors(), sae.cfg.__class__(**{**sae.cfg.__dict__, "extra": legacy_extra}))
    assert np.array_equal(init_cosines(legacy), init_cosines(sae))  # seed 0: init_seed = width, both ways


def test_topk_health_reports_removal_shares_as_unknown():
    """Removing a feature from a TopK SAE lets another into the top k: no closed form, so the removal shares are
    unknown (None) instead of an error that would stop `featgraph eval` on every TopK SAE."""
    from featgraph.errors import UnsupportedError
    from featgraph.training.health import removal_delta_mse, sae_health

    from ..conftest import tiny_sae

    sae = tiny_sae(64, 16, architecture="topk", k=4)
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(1))
    h = sae_health(sae, x)
    assert h["useless_share"] is None and h["harmful_share"] is None and h["median_removal_dmse_rel"] is None
    with torch.no_grad():
        want = float(((sae.decode(sae.encode(x)) - x).double() ** 2).sum(1).mean())
    assert abs(h["mse"] - want) <= 1e-6 * want
    assert h["dead_share"] == float(((sae.encode(x) != 0).sum(0) == 0).double().mean())
    with pytest.raises(UnsupportedError, match="TopK"):
        removal_delta_mse(sae, x)
