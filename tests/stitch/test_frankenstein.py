"""Frankenstein assembly across a ladder and decoder retraining with the encoder frozen."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featgraph.errors import ConfigError, UnsupportedError
from featgraph.stitch.frankenstein import assemble, retrain_decoder
from featgraph.synthetic import planted_ladder
from tests.builders import projection_sae

from ..conftest import tiny_sae


def ladder_and_acts(n_tokens: int = 3000, seed: int = 3):
    decs, _ = planted_ladder([32, 64, 128], 64, seed=seed)
    saes = [projection_sae(W, seed=i) for i, W in enumerate(decs)]
    rng = np.random.default_rng(seed)
    unit = decs[-1] / np.linalg.norm(decs[-1], axis=1, keepdims=True)
    code = rng.exponential(1.0, (n_tokens, 128)) * (rng.random((n_tokens, 128)) < 4.0 / 128)
    x = code @ unit + 0.05 * rng.standard_normal((n_tokens, 64))
    return saes, torch.from_numpy(x.astype(np.float32))


def test_one_sae_returns_that_sae():
    saes, _ = ladder_and_acts()
    a = assemble(saes[:1], ["only"], progress=False)
    assert a.sae is saes[0]
    assert a.origin["source"].unique().to_list() == ["only"] and a.origin.height == 32


def test_assembly_adds_exactly_the_features_below_tau_to_everything_so_far():
    saes, x = ladder_and_acts()
    a = assemble(list(reversed(saes)), ["w128", "w64", "w32"], tau=0.7, progress=False)  # any order in
    assert a.names == ["w32", "w64", "w128"]
    assert [s.n_features for s in a.stages][0] == 32
    by_name = dict(zip(["w32", "w64", "w128"], saes, strict=False))
    for k in (1, 2):
        prev = a.stages[k - 1].W_dec.detach().double().numpy()
        donor = by_name[a.names[k]].W_dec.detach().double().numpy()
        cos = (donor / np.linalg.norm(donor, axis=1, keepdims=True)) @ (
            prev / np.linalg.norm(prev, axis=1, keepdims=True)
        ).T
        want = np.flatnonzero(cos.max(1) < 0.7)
        got = a.origin.filter(a.origin["stage"] == k)["source_feature"].to_numpy()
        np.testing.assert_array_equal(got, want)
        assert 0 < want.size < donor.shape[0]
    # each feature of the result carries its source's decoder row and fires as in its source SAE
    final = a.sae
    acts = final.encode(x)
    for row in a.origin.iter_rows(named=True):
        if row["feature"] % 7:
            continue
        src = by_name[row["source"]]
        j = row["source_feature"]
        torch.testing.assert_close(final.W_dec[row["feature"]], src.W_dec[j])
        torch.testing.assert_close(acts[:, row["feature"]], src.encode(x)[:, j], rtol=1e-5, atol=1e-5)


def test_decoder_retraining_lowers_training_loss_and_keeps_the_encoder():
    saes, x = ladder_and_acts()
    sae = assemble(saes, progress=False).sae
    res = retrain_decoder(sae, x, n_tokens=30000, lr=3e-3, batch_size=500, progress=False)
    assert res.n_tokens == 30000 and len(res.losses) == 60

    def mse(s):
        with torch.no_grad():
            return float(((s(x).x_hat - x) ** 2).sum(-1).mean())

    assert np.mean(res.losses[-5:]) < 0.9 * res.losses[0]
    assert mse(res.sae) < 0.9 * mse(sae)
    # b_dec moved, yet the activations are unchanged: its shift was folded into b_enc
    assert not torch.equal(res.sae.b_dec, sae.b_dec)
    torch.testing.assert_close(res.sae.encode(x), sae.encode(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res.sae.W_enc, sae.W_enc, rtol=0, atol=0)
    assert res.sae.cfg.extra["decoder_retrained"]["n_tokens"] == 30000


def test_bad_inputs():
    saes, x = ladder_and_acts()
    with pytest.raises(ConfigError, match="at least one"):
        assemble([])
    with pytest.raises(ConfigError, match="tau"):
        assemble(saes, tau=1.5)
    with pytest.raises(UnsupportedError, match="TopK"):
        assemble([saes[0], tiny_sae(64, 64, architecture="topk", k=4)], ["a", "b"], progress=False)
    with pytest.raises(ConfigError, match="n_tokens"):
        retrain_decoder(saes[0], x, n_tokens=0)
