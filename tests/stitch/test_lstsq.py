"""The exact (ridge least-squares) decoder of a frozen encoder: equal to a brute-force solve, deterministic ridge
choice, encoder untouched, nested stages from one pass, and the Frankenstein analysis on top of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featgraph.errors import ConfigError
from featgraph.stitch.evaluator import Evaluator
from featgraph.stitch.frankenstein import analyze_frankenstein, assemble, retrain_decoder
from featgraph.stitch.lstsq import decoder_moments, fit_exact_decoder, solve_decoder, split_fit_val

from .test_frankenstein import ladder_and_acts


def brute_force(sae, x: torch.Tensor, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """np.linalg.lstsq on the design matrix [F, 1], the ridge as extra rows sqrt(n lam s) [I, 0] (live features)."""
    with torch.no_grad():
        f = sae.encode(x).double().numpy()
    X = x.double().numpy()
    n = f.shape[0]
    live = np.flatnonzero((f**2).sum(0) > 0)
    A = np.hstack([f[:, live], np.ones((n, 1))])
    Y = X
    if ridge > 0:
        s = float(np.mean((f[:, live] ** 2).sum(0))) / n
        pen = np.hstack([np.sqrt(n * ridge * s) * np.eye(live.size), np.zeros((live.size, 1))])
        A, Y = np.vstack([A, pen]), np.vstack([X, np.zeros((live.size, X.shape[1]))])
    sol = np.linalg.lstsq(A, Y, rcond=None)[0]
    W = sae.W_dec.detach().double().numpy().copy()
    W[live] = sol[:-1]
    return W, sol[-1]


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 0.1])
def test_exact_decoder_equals_brute_force_lstsq(ridge):
    saes, x = ladder_and_acts(n_tokens=1500)
    sae = assemble(saes, progress=False).sae
    m = decoder_moments(sae, x, batch_size=400, progress=False)  # batches: the sums must not depend on them
    W, b = solve_decoder(m, ridge, sae.W_dec.detach().double().numpy())
    W_ref, b_ref = brute_force(sae, x, ridge)
    np.testing.assert_allclose(W, W_ref, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(b, b_ref, rtol=1e-7, atol=1e-8)
    # the MSE from the sums is the MSE of the decoder on the tokens
    with torch.no_grad():
        f = sae.encode(x).double().numpy()
    direct = float((((f @ W + b) - x.double().numpy()) ** 2).sum(1).mean())
    assert m.mse(W, b) == pytest.approx(direct, rel=1e-9)


def test_never_firing_features_keep_their_row_and_the_system_stays_solvable():
    saes, x = ladder_and_acts(n_tokens=1500)
    sae = saes[1]
    with torch.no_grad():
        sae.b_enc[:5] = -1e4  # five features that never fire
    m = decoder_moments(sae, x, progress=False)
    W_old = sae.W_dec.detach().double().numpy()
    W, _ = solve_decoder(m, 0.0, W_old)
    np.testing.assert_array_equal(W[:5], W_old[:5])
    assert not np.allclose(W[5:], W_old[5:])


def test_ridge_choice_is_on_validation_and_deterministic():
    saes, x = ladder_and_acts(n_tokens=2000)
    sae = assemble(saes, progress=False).sae
    fit, val = split_fit_val(x, None, 0.25)
    assert fit.shape[0] == 1500 and val.shape[0] == 500
    grid = (0.0, 1e-4, 1e-2, 1.0)
    a = fit_exact_decoder(sae, fit, val, ridges=grid, progress=False)
    b = fit_exact_decoder(sae, fit, val, ridges=grid, progress=False)
    assert a.ridge == b.ridge and a.val_mse == b.val_mse
    torch.testing.assert_close(a.sae.W_dec, b.sae.W_dec, rtol=0, atol=0)
    # the chosen value is the first minimiser of the validation MSE recomputed here from scratch
    with torch.no_grad():
        f = sae.encode(val).double().numpy()
    scores = []
    for lam in grid:
        W, bb = brute_force(sae, fit, lam)
        scores.append(float((((f @ W + bb) - val.double().numpy()) ** 2).sum(1).mean()))
    assert a.ridge == grid[int(np.argmin(scores))]
    np.testing.assert_allclose([a.val_mse[repr(g)] for g in grid], scores, rtol=1e-8)
    rec = a.sae.cfg.extra["decoder_retrained"]
    assert rec["ridge"] == a.ridge and rec["n_fit"] == 1500 and rec["n_val"] == 500


def test_encoder_is_unchanged_and_the_fit_beats_adam():
    saes, x = ladder_and_acts(n_tokens=3000)
    sae = assemble(saes, progress=False).sae
    fit, val = split_fit_val(x, None)
    res = fit_exact_decoder(sae, fit, val, progress=False)
    assert not torch.equal(res.sae.b_dec, sae.b_dec)  # b_dec moved; its shift went into b_enc
    torch.testing.assert_close(res.sae.encode(x), sae.encode(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res.sae.W_enc, sae.W_enc, rtol=0, atol=0)
    adam = retrain_decoder(sae, fit, n_tokens=30000, lr=3e-3, batch_size=500, progress=False).sae

    def mse(s, on):
        with torch.no_grad():
            return float(((s(on).x_hat.double() - on.double()) ** 2).sum(-1).mean())

    assert mse(res.sae, fit) <= mse(adam, fit) * (1 + 1e-6)  # the optimum on the fitting tokens
    assert mse(res.sae, fit) == pytest.approx(res.train_mse, rel=1e-5)


def test_nested_stages_from_one_pass_equal_their_own_pass():
    saes, x = ladder_and_acts(n_tokens=1500)
    asm = assemble(saes, progress=False)
    final = decoder_moments(asm.sae, x, progress=False)
    for stage in asm.stages[:-1]:
        own = decoder_moments(stage, x, progress=False)
        sub = final.prefix(stage.n_features)
        np.testing.assert_allclose(sub.G, own.G, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(sub.C, own.C, rtol=1e-12, atol=1e-9)


def test_frankenstein_analysis_uses_the_exact_fit_and_records_it():
    saes, x = ladder_and_acts(n_tokens=3000)
    ev = Evaluator(x[:1000])
    a = analyze_frankenstein(saes, ["w32", "w64", "w128"], train_acts=x[1000:], evaluator=ev, n_tokens=2000,
                             progress=False, ridges=(0.0, 1e-3))
    assert a.decoder_fit == "exact" and len(a.fits) == 3 + 2  # 3 stages + 2 ladder controls (stage 0 reused)
    assert all(f["n_fit"] == 1800 and f["n_val"] == 200 and f["ridge"] in (0.0, 1e-3) for f in a.fits)
    t = a.table
    for k in range(3):  # retraining never raises the fitting MSE, and here it lowers the held-out one
        before = t.filter(t["name"] == f"frank-{k + 1}sae")["mse"][0]
        after = t.filter(t["name"] == f"frank-{k + 1}sae-retrained")["mse"][0]
        assert after < before
    with pytest.raises(ConfigError, match="decoder_fit"):
        analyze_frankenstein(saes, ["a", "b", "c"], train_acts=x, evaluator=ev, decoder_fit="sgd", progress=False)


def test_bad_ridge_inputs():
    saes, x = ladder_and_acts(n_tokens=500)
    with pytest.raises(ConfigError, match="ridge"):
        fit_exact_decoder(saes[0], x, x, ridges=(), progress=False)
    with pytest.raises(ConfigError, match="val_fraction"):
        split_fit_val(x, None, 1.5)
    with pytest.raises(ConfigError, match="too few"):
        split_fit_val(x[:1], None)
