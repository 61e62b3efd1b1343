"""``featgraph stitch``, ``frankenstein`` and ``report`` end to end on a tiny planted ladder (no model, no
CE)."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner
from featgraph.cli.main import cli, main

from featgraph.activations.store import ActivationStore
from featgraph.formats import load_sae
from featgraph.sae import Sae
from featgraph.synthetic import planted_ladder
from tests.builders import projection_sae


@pytest.fixture
def ladder_and_store(tmp_path):
    decs, _ = planted_ladder([32, 64, 128], 64, seed=5)
    root = tmp_path / "ladder"
    for i, W in enumerate(decs):
        sae = projection_sae(W, seed=i)
        sae.cfg.hook_name = "blocks.0.hook_resid_pre"
        sae.save(root / f"w{W.shape[0]}")
    rng = np.random.default_rng(5)
    unit = decs[-1] / np.linalg.norm(decs[-1], axis=1, keepdims=True)
    n = 2000
    code = rng.exponential(1.0, (n, 128)) * (rng.random((n, 128)) < 4.0 / 128)
    x = (code @ unit + 0.05 * rng.standard_normal((n, 64))).astype(np.float32)
    store = ActivationStore.create(
        tmp_path / "acts",
        model="synthetic",
        hook_name="blocks.0.hook_resid_pre",
        d_in=64,
        tokens=np.zeros((20, 100), np.int32),
        exclude_bos=False,
        dtype="float32",
    )
    store.write(x)
    store.mark_complete()
    return root, tmp_path / "acts"


def run(args):
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_stitch_writes_tables_summary_and_figures(ladder_and_store, tmp_path):
    root, acts = ladder_and_store
    out = tmp_path / "stitch"
    text = run(["stitch", str(root / "w32"), str(root / "w64"), "--out", str(out), "--acts", str(acts), "-q"])
    assert "dMSE < 0" in text and "adding all" in text
    dmse = pl.read_parquet(out / "dmse.parquet")
    assert dmse.height == 64 and set(dmse["category"].unique()) <= {"novel", "reconstruction"}
    summary = json.loads((out / "summary.json").read_text())
    t = summary["two_by_two"]
    assert summary["intervals"]["n_contexts"] == 20 and summary["intervals"]["unit"] == "context"
    assert t["novel"]["total"] + t["reconstruction"]["total"] == 64
    assert t["novel"]["total"] == int((dmse["max_cos"] <= 0.7).sum())
    path = pl.read_parquet(out / "interpolation.parquet")
    assert path["action"][0] == "base" and path["mse"][0] == pytest.approx(summary["mse_small"])
    assert json.loads((out / "config.json").read_text())["n_tokens"] == 2000
    for png in ("two_by_two", "dmse_vs_max_cos", "cumulative_mse", "active_inactive", "interpolation"):
        assert (out / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # byte-identical tables on a rerun
    out2 = tmp_path / "stitch2"
    run(["stitch", str(root / "w32"), str(root / "w64"), "--out", str(out2), "--acts", str(acts), "-q"])
    for f in ("dmse.parquet", "interpolation.parquet", "swaps.parquet", "summary.json"):
        assert (out / f).read_bytes() == (out2 / f).read_bytes(), f


def test_frankenstein_writes_both_formats_and_comparison(ladder_and_store, tmp_path):
    root, acts = ladder_and_store
    out = tmp_path / "frank"
    run(
        [
            "frankenstein",
            str(root),
            "--out",
            str(out),
            "--acts",
            str(acts),
            "--retrain-tokens",
            "2000",
            "--retrain-batch-size",
            "500",
            "-q",
        ]
    )
    ours = Sae.load(out / "sae")
    theirs = load_sae(out / "sae_saelens")
    assert ours.n_features == theirs.n_features > 32
    # the exact decoder reads each training token once: the second half of --acts (1,000 tokens), not 2,000 asked
    rec = ours.cfg.extra["decoder_retrained"]
    assert rec["n_tokens"] == 1000 and rec["n_fit"] + rec["n_val"] == 1000 and rec["method"].startswith("exact")
    table = pl.read_parquet(out / "comparison.parquet")
    assert table.filter(pl.col("kind") == "ladder")["width"].to_list() == [32, 64, 128]
    assert table.filter(pl.col("kind") == "frankenstein (retrained)").height == 3
    assert table.filter(pl.col("kind") == "ladder (decoder retrained)").height == 3
    origin = pl.read_parquet(out / "origin.parquet")
    assert origin.height == ours.n_features
    assert (out / "frankenstein.png").exists() and json.loads((out / "metrics.json").read_text())["final"]
    # bootstrap intervals over the store's evaluation contexts (the first half of --acts: 10 contexts of 100 rows)
    iv = json.loads((out / "summary.json").read_text())["intervals"]
    assert iv["n_contexts"] == 10 and iv["unit"] == "context" and len(iv["frankenstein_vs_ladder"]) == 9


def test_report_is_one_self_contained_page(ladder_and_store, tmp_path):
    root, acts = ladder_and_store
    out = tmp_path / "report"
    run(["report", str(root), "--out", str(out), "--acts", str(acts), "--retrain-tokens", "2000", "-q"])
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 * 5 + 1  # five figures per pair, one Frankenstein figure
    assert not re.search(r"""(src|href)=["'](https?:|//)""", page) and "<link" not in page and "<script" not in page
    assert (out / "pairs" / "w64__w128" / "dmse.parquet").exists()


def test_errors_are_one_line(ladder_and_store, tmp_path, capsys):
    root, acts = ladder_and_store
    topk = tmp_path / "topk"
    from ..conftest import tiny_sae

    tiny_sae(32, 64, architecture="topk", k=4).save(topk)
    with pytest.raises(SystemExit) as e:
        main(["stitch", str(topk), str(root / "w64"), "--out", str(tmp_path / "o"), "--acts", str(acts), "-q"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "TopK" in err and err.count("\n") == 1


def test_pair_analysis_with_ce_on_a_tiny_model():
    """CE recovered at chosen path steps and for the pair, through a tiny random transformer-lens bridge."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    from featgraph.activations import hook_activations
    from featgraph.stitch import Evaluator, analyze_pair

    cfg = TransformerBridgeConfig(
        d_model=16, d_head=4, n_layers=2, n_ctx=32, n_heads=4, d_vocab=50, seed=0, act_fn="gelu"
    )
    model = TransformerBridge.boot_native(cfg)
    hook = "blocks.1.hook_resid_pre"
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, 50, (6, 12), generator=g)
    tokens[:, 0] = 0  # BOS of the native model
    acts = hook_activations(model, tokens, hook)[:, 1:].reshape(-1, 16)
    decs, _ = planted_ladder([12, 24], 16, seed=2)
    small, large = (projection_sae(W, seed=i, bias=0.1) for i, W in enumerate(decs))
    for s in (small, large):
        s.cfg.hook_name = hook
    ev = Evaluator(acts, model=model, tokens=tokens)
    a = analyze_pair(small, large, acts, evaluator=ev, ce_points=3, progress=False)
    ce = a.path["ce_recovered"]
    assert ce.is_not_null().sum() == 3 and ce[0] is not None and ce[-1] is not None
    assert np.isfinite(a.points["ce_recovered_zero"].to_numpy()).all()
    # step 0 of the path is the small SAE itself: the same CE recovered as its own evaluation
    assert ce[0] == pytest.approx(a.points["ce_recovered_zero"][0], rel=1e-6)
