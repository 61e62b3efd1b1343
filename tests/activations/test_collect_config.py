"""`featgraph collect` writes its resolved config beside the store (house rule), and the store's folder check
accepts that file on a resumed run while still refusing anything foreign.

The model run itself is replaced by a store writer with the same contract as ``collect_corpus`` (check the folder,
create or resume the store in place): what is under test here is the config and the folder rule, not the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from featgraph.activations.store import ActivationStore
from featgraph.commands import run_collect
from featgraph.config import CollectConfig
from featgraph.errors import ConfigError
from featgraph.io.output import check_store_output
from tests.conftest import run_main


@pytest.fixture
def fake_collect(monkeypatch):
    """``collect_corpus`` without a model: the real folder check, then a small seeded store (created once,
    left as is when it is already complete, as a resumed finished run does). Returns the list of calls."""
    calls = []

    def collect_corpus(store_dir, *, model_name_or_path=None, text_paths=None, hook_name="h", split="train",
                       n_tokens=10, context_size=8, seed=0, progress=True, corpus="default"):
        calls.append(store_dir)
        check_store_output(store_dir, inputs=list(text_paths or []))
        store_dir_path = Path(store_dir)
        if (store_dir_path / "meta.json").exists():
            return ActivationStore(store_dir_path)
        store = ActivationStore.create(store_dir_path, model="synthetic", hook_name=hook_name, d_in=4,
                                       tokens=np.zeros((2, context_size), np.int32), exclude_bos=True,
                                       dtype="float32")
        store.write(np.random.default_rng(seed).standard_normal((n_tokens, 4)).astype(np.float32))
        store.mark_complete()
        return store

    monkeypatch.setattr("featgraph.activations.collect_corpus", collect_corpus)
    return calls


def test_run_collect_writes_the_resolved_config_beside_the_store(tmp_path, fake_collect):
    text = tmp_path / "notes.txt"
    text.write_text("a user's corpus\n")
    cfg = CollectConfig(out=str(tmp_path / "store"), text=(str(text),), hook="blocks.0.hook_resid_pre",
                        split="train", n_tokens=12, context_size=8, seed=3, progress=False)
    store = run_collect(cfg)
    assert store.meta["complete"] and len(fake_collect) == 1
    written = json.loads((tmp_path / "store" / "config.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(cfg.to_json()))  # the config object itself, through JSON
    assert written["command"] == "collect" and written["n_tokens"] == 12 and written["split"] == "train"
    assert written["hook"] == "blocks.0.hook_resid_pre" and written["seed"] == 3
    assert written["text"] == [str(text.resolve())]  # input paths resolved
    assert "out" not in written and "progress" not in written  # run-only fields stay out
    # nothing else beside the store's own files (the write was atomic: no temporary left)
    assert sorted(p.name for p in (tmp_path / "store").iterdir() if not p.name.startswith("acts_")) == [
        "config.json", "meta.json", "tokens.npy"]


def test_a_store_holding_config_json_resumes_and_foreign_files_are_still_refused(tmp_path, fake_collect):
    out = tmp_path / "store"
    assert run_main("collect", "--out", out, "--tokens", "10", "--context-size", "8", "-q")[0] == 0
    first = (out / "config.json").read_bytes()
    # a second run over the finished store passes the folder check with config.json in it and rewrites the same
    code, stdout, _ = run_main("collect", "--out", out, "--tokens", "10", "--context-size", "8", "-q")
    assert code == 0 and "wrote 10 activations" in stdout and len(fake_collect) == 2
    assert (out / "config.json").read_bytes() == first
    assert check_store_output(out) == out.resolve()
    (out / "notes.txt").write_text("not a store file\n")
    with pytest.raises(ConfigError, match="notes.txt"):
        check_store_output(out)
