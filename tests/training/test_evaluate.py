"""evaluate: metrics checked against hand computations on a tiny transformer-lens bridge (boot_native)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from featgraph.errors import HookNameError, ShapeMismatchError
from featgraph.sae import Sae, SaeConfig
from featgraph.training.evaluate import (
    TABLE_COLUMNS,
    ce_baselines,
    ce_metrics,
    evaluate_ladder,
    evaluate_sae,
    metrics_markdown,
    reconstruction_metrics,
)
from tests.conftest import tiny_bridge, tiny_sae

HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def bridge():
    return tiny_bridge(n_layers=2)


@pytest.fixture
def tokens():
    g = torch.Generator().manual_seed(1)
    t = torch.randint(1, 50, (6, 12), generator=g)
    t[:, 0] = 0  # the native model's BOS id (no tokenizer): position 0 is BOS
    return t


def identity_sae(d: int) -> Sae:
    """x_hat = relu(x) - relu(-x) = x exactly: W_enc = [I, -I], W_dec = [I; -I], zero biases."""
    eye = torch.eye(d)
    t = {
        "W_enc": torch.cat([eye, -eye], 1),
        "b_enc": torch.zeros(2 * d),
        "W_dec": torch.cat([eye, -eye], 0),
        "b_dec": torch.zeros(d),
    }
    return Sae.from_tensors(t, SaeConfig(d_in=d, n_features=2 * d, hook_name=HOOK))


@torch.no_grad()
def per_token_ce(model, tokens, hook=None) -> float:
    hooks = [(HOOK, hook)] if hook else []
    loss = model.run_with_hooks(tokens, fwd_hooks=hooks, return_type="loss", loss_per_token=True)
    return float(loss.double().mean())


def test_reconstruction_metrics_match_hand_computation():
    sae = tiny_sae(24, 8, seed=3)
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(0)) * 2 + 1
    with torch.no_grad():
        out = sae(x)
    err = (x.double() - out.x_hat.double()).pow(2).sum(1)
    var = x.double().var(0, unbiased=False).sum()
    got = reconstruction_metrics(sae, x, batch_size=64)
    assert got["mse"] == pytest.approx(float(err.mean()), rel=1e-9)
    assert got["mse_per_dim"] == pytest.approx(float(err.mean()) / 8, rel=1e-9)
    assert got["explained_variance"] == pytest.approx(1 - float(err.mean() / var), rel=1e-9)
    assert got["l0"] == pytest.approx(float((out.acts != 0).sum(1).double().mean()))
    assert got["dead_features"] == int(((out.acts != 0).sum(0) == 0).sum())
    assert got["n_tokens"] == 500
    # batch size and input form (one tensor vs an iterable of chunks) do not change the answer
    chunks = reconstruction_metrics(sae, [x[:123], x[123:]])
    assert chunks["mse"] == pytest.approx(got["mse"], rel=1e-12)


def test_dead_features_counts_never_active():
    sae = tiny_sae(16, 8, seed=0)
    with torch.no_grad():
        sae.b_enc[:5] = -1e6  # these can never fire
    got = reconstruction_metrics(sae, torch.randn(200, 8))
    assert got["dead_features"] >= 5


def test_identity_splice_recovers_exactly_one(bridge, tokens):
    sae = identity_sae(16)
    got = ce_metrics(sae, bridge, tokens, HOOK)
    assert got["ce_sae"] == got["ce_clean"]
    assert got["ce_recovered_zero"] == 1.0
    assert got["ce_recovered_mean"] == 1.0
    assert got["n_tokens_ce"] == tokens.shape[0] * (tokens.shape[1] - 1)


def test_zero_and_mean_ablation_match_hand_computation(bridge, tokens):
    base = ce_baselines(bridge, tokens, HOOK, batch_size=4)
    clean = per_token_ce(bridge, tokens)

    def zero(act, hook):
        act = act.clone()
        act[:, 1:] = 0.0  # BOS position left alone
        return act

    _, cache = bridge.run_with_cache(tokens, names_filter=[HOOK])
    mean = cache[HOOK][:, 1:].reshape(-1, 16).double().mean(0).float()

    def mean_ablate(act, hook):
        act = act.clone()
        act[:, 1:] = mean
        return act

    assert base["ce_clean"] == pytest.approx(clean, rel=1e-6)
    assert base["ce_zero"] == pytest.approx(per_token_ce(bridge, tokens, zero), rel=1e-6)
    assert base["ce_mean"] == pytest.approx(per_token_ce(bridge, tokens, mean_ablate), rel=1e-6)
    assert base["ce_zero"] != pytest.approx(clean, rel=1e-3)  # the ablation really changed something


def test_ablation_of_every_position_without_bos_handling(bridge, tokens):
    base = ce_baselines(bridge, tokens, HOOK, exclude_bos=False)
    _, cache = bridge.run_with_cache(tokens, names_filter=[HOOK])
    mean = cache[HOOK].reshape(-1, 16).double().mean(0).float()
    by_hand = per_token_ce(bridge, tokens, lambda act, hook: mean.expand_as(act).clone())
    assert base["first_position"] == 0
    assert base["ce_mean"] == pytest.approx(by_hand, rel=1e-6)
    assert base["ce_zero"] == pytest.approx(per_token_ce(bridge, tokens, lambda a, hook: a * 0), rel=1e-6)


def test_ce_recovered_formula_for_a_real_sae(bridge, tokens):
    sae = tiny_sae(32, 16, seed=5)
    sae.cfg.hook_name = HOOK
    got = ce_metrics(sae, bridge, tokens)

    def splice(act, hook):
        act = act.clone()
        act[:, 1:] = sae(act[:, 1:]).x_hat
        return act

    with torch.no_grad():
        ce_sae = per_token_ce(bridge, tokens, splice)
    assert got["ce_sae"] == pytest.approx(ce_sae, rel=1e-6)
    want = (got["ce_zero"] - ce_sae) / (got["ce_zero"] - got["ce_clean"])
    assert got["ce_recovered_zero"] == pytest.approx(want, rel=1e-6)


def test_evaluate_ladder_table_and_markdown(bridge, tokens, tmp_path):
    from featgraph.activations import hook_activations

    acts = hook_activations(bridge, tokens, HOOK)[:, 1:]
    folders = []
    for w in (16, 32):
        sae = tiny_sae(w, 16, seed=w)
        sae.cfg.hook_name = HOOK
        folders.append(sae.save(tmp_path / f"s{w}"))
    folders.append(identity_sae(16).save(tmp_path / "ident"))
    table = evaluate_ladder(folders, acts=acts, model=bridge, tokens=tokens, progress=False)
    assert isinstance(table, pl.DataFrame)
    assert tuple(table.columns) == TABLE_COLUMNS
    assert table["width"].to_list() == [16, 32, 32]
    ident = table.filter(pl.col("name") == "ident").row(0, named=True)
    assert ident["mse"] == 0.0 and ident["ce_recovered_zero"] == 1.0
    assert len(set(table["ce_clean"].to_list())) == 1  # one shared baseline
    md = metrics_markdown(table, note="note here")
    assert md.count("\n| ") == 3 and "blocks.1.hook_resid_pre" in md and "note here" in md


def test_evaluate_sae_without_model_has_nan_ce():
    row = evaluate_sae(tiny_sae(8, 4), acts=torch.randn(10, 4), name="x")
    assert row["name"] == "x" and math.isnan(row["ce_recovered_zero"]) and row["n_tokens"] == 10


def test_bad_inputs_raise_featgraph_errors(bridge, tokens):
    with pytest.raises(ShapeMismatchError, match="d_in=8"):
        ce_metrics(tiny_sae(8, 8), bridge, tokens, HOOK)
    with pytest.raises(ShapeMismatchError, match="d=5"):
        reconstruction_metrics(tiny_sae(8, 8), torch.zeros(3, 5))
    with pytest.raises(HookNameError, match="blocks.1.hook_resid_pre"):
        ce_metrics(identity_sae(16), bridge, tokens, "blocks.1.hook_resid_pr")
    with pytest.raises(ShapeMismatchError, match=r"\[12\]"):
        ce_metrics(identity_sae(16), bridge, tokens[0], HOOK)
    assert np.isfinite(ce_metrics(identity_sae(16), bridge, tokens[:2], HOOK)["ce_clean"])


def test_cli_eval_writes_table_and_config(bridge, tokens, tmp_path, monkeypatch):
    import json

    import featgraph.activations as acts_mod
    from tests.conftest import run_main

    # the CLI's model and text come from these two functions: point them at the tiny bridge
    monkeypatch.setattr(acts_mod, "load_model", lambda name=None: bridge)
    seen = {}

    def fake_contexts(model, paths, *, split, context_size, n_contexts, seed, corpus="default"):
        seen.update(split=split, n_contexts=n_contexts, context_size=context_size)
        return tokens[:n_contexts], {"corpus": corpus, "token_ids_sha256": "fake"}

    import featgraph.activations.text as text_mod

    monkeypatch.setattr(text_mod, "corpus_contexts_with_provenance", fake_contexts)
    ladder = tmp_path / "ladder"
    for w in (16, 32):
        sae = tiny_sae(w, 16, seed=w)
        sae.cfg.hook_name = HOOK
        sae.save(ladder / f"s{w}")
    identity_sae(16).save(ladder / "ident")
    code, stdout, err = run_main(
        "eval", ladder, "--tokens", 48, "--context-size", 12, "--out", tmp_path / "ev", "-q"
    )
    assert code == 0, err
    assert seen == {"split": "heldout", "n_contexts": 4, "context_size": 12}
    table = pl.read_parquet(tmp_path / "ev" / "metrics.parquet")
    assert sorted(table["name"].to_list()) == ["ident", "s16", "s32"]
    assert table.filter(pl.col("name") == "ident")["ce_recovered_mean"].item() == 1.0
    assert (tmp_path / "ev" / "metrics.md").read_text() in stdout
    assert json.loads((tmp_path / "ev" / "config.json").read_text())["hook_name"] == HOOK
    # health columns for every SAE; random SAEs (most features useless) get one warning line each, naming
    # the threshold; the identity SAE has no init record, so "moved" is unknown rather than a reason
    assert {"moved_share", "useless_share", "undertrained"} <= set(table.columns)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    flagged = table.filter(pl.col("undertrained") != "")["name"].to_list()
    assert len(warnings) == len(flagged) and all("threshold 5%" in w for w in warnings)
    assert "s32" in flagged and "ident" not in flagged  # every feature of the identity SAE carries signal


def test_cli_eval_mixed_hooks_is_one_line(tmp_path):
    from tests.conftest import run_main

    for i, hook in enumerate(("blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre")):
        sae = tiny_sae(8, 16, seed=i)
        sae.cfg.hook_name = hook
        sae.save(tmp_path / f"s{i}")
    code, _, err = run_main("eval", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "ev")
    assert code == 1 and "--hook" in err and "Traceback" not in err
