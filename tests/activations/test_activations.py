"""activations: text sources, context packing, the sharded store, collection and resuming on a tiny bridge."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from featgraph.activations import (
    Document,
    activations_in_memory,
    collect_activations,
    hook_activations,
    split_documents,
    text_source,
    tokenize_contexts,
)
from featgraph.activations.store import ActivationStore
from featgraph.activations.text import pydoc_topics
from featgraph.errors import ConfigError, HookNameError, SaeFormatError, ShapeMismatchError
from tests.conftest import tiny_bridge

HOOK = "blocks.1.hook_resid_pre"


@pytest.fixture(scope="module")
def bridge():
    return tiny_bridge(n_layers=3)


@pytest.fixture
def tokens():
    t = torch.randint(1, 50, (20, 10), generator=torch.Generator().manual_seed(2))
    t[:, 0] = 0  # BOS of a tokenizer-less native model
    return t


class CharTokenizer:
    """A stand-in for a HF tokenizer: one id per character (ids 3..), BOS 1, EOS 2."""

    bos_token_id, eos_token_id = 1, 2

    def __call__(self, texts, add_special_tokens=False):
        assert add_special_tokens is False
        return {"input_ids": [[3 + (ord(c) % 40) for c in t] for t in texts]}


def test_tokenize_contexts_bos_and_packing():
    docs = [Document("a", "abcdefg"), Document("b", "hijk")]
    out = tokenize_contexts(CharTokenizer(), docs, 4, bos=True)
    # stream: a..g EOS h..k EOS = 13 ids -> 4 contexts of 3 text ids, each behind BOS
    assert out.shape == (4, 4) and out.dtype == torch.long
    assert torch.all(out[:, 0] == 1)
    stream = out[:, 1:].flatten().tolist()
    assert stream[7] == 2 and stream[:3] == [3 + ord(c) % 40 for c in "abc"]
    plain = tokenize_contexts(CharTokenizer(), docs, 4, bos=False)
    assert plain.shape == (3, 4) and 1 not in plain.tolist()[0]
    assert tokenize_contexts(CharTokenizer(), docs, 4, max_contexts=2).shape == (2, 4)
    with pytest.raises(ConfigError, match="fewer than one context of 64"):
        tokenize_contexts(CharTokenizer(), docs, 64)


def test_split_is_by_document_name_disjoint_and_stable():
    docs = [Document(f"doc{i}", f"text {i}") for i in range(400)]
    train, held = split_documents(docs, 0.1)
    assert {d.name for d in train}.isdisjoint({d.name for d in held})
    assert len(train) + len(held) == 400 and 20 < len(held) < 60
    again, held2 = split_documents(list(reversed(docs)), 0.1)
    assert {d.name for d in held2} == {d.name for d in held}
    with pytest.raises(ConfigError, match="1.5"):
        split_documents(docs, 1.5)


def test_text_source_files_folders_and_errors(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("alpha")
    (tmp_path / "d" / "b.md").write_text("beta")
    (tmp_path / "d" / "skip.bin").write_bytes(b"\0")
    (tmp_path / "c.txt").write_text("gamma")
    docs = text_source([tmp_path / "d", tmp_path / "c.txt"])
    assert [d.text for d in docs] == ["alpha", "beta", "gamma"]
    with pytest.raises(ConfigError, match="nope.txt"):
        text_source(tmp_path / "nope.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no text files"):
        text_source(tmp_path / "empty")


def test_offline_corpus_has_pydoc_topics():
    docs = pydoc_topics()
    assert len(docs) > 50 and sum(len(d.text) for d in docs) > 100_000
    assert all(d.name.startswith("pydoc:") for d in docs)


def test_collect_matches_direct_hook_and_leaves_out_bos(bridge, tokens, tmp_path):
    store = collect_activations(
        bridge, tokens, HOOK, tmp_path / "s", batch_size=3, shard_tokens=40, dtype="float32", progress=False
    )
    direct = hook_activations(bridge, tokens, HOOK)
    assert direct.shape == (20, 10, 16)
    assert torch.equal(store.read(), direct[:, 1:].reshape(-1, 16))
    assert torch.equal(activations_in_memory(bridge, tokens, HOOK, batch_size=7), store.read())
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["exclude_bos"] and meta["complete"] and meta["n_tokens"] == 180 and meta["context_size"] == 10
    assert meta["hook_name"] == HOOK and meta["model"] and meta["dtype"] == "float32"
    assert len(meta["shards"]) > 1  # sharded: 40-row shards
    assert torch.equal(store.tokens(), tokens)
    # reads with offsets cross shard boundaries correctly
    assert torch.equal(store.read(50, offset=35), store.read()[35:85])
    # float16 stores round to half precision and nothing else
    half = collect_activations(bridge, tokens, HOOK, tmp_path / "h", progress=False)
    assert torch.equal(half.read(), store.read().half().float())


def test_collection_resumes_after_a_kill(bridge, tokens, tmp_path, monkeypatch):
    import featgraph.activations.collect as acts_mod

    full = collect_activations(
        bridge,
        tokens,
        HOOK,
        tmp_path / "full",
        batch_size=4,
        shard_tokens=30,
        dtype="float32",
        progress=False,
    )
    calls = {"n": 0}
    real = acts_mod.hook_activations

    def dies_on_fourth(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(acts_mod, "hook_activations", dies_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        collect_activations(
            bridge,
            tokens,
            HOOK,
            tmp_path / "r",
            batch_size=4,
            shard_tokens=30,
            dtype="float32",
            progress=False,
        )
    part = ActivationStore(tmp_path / "r")
    assert not part.meta["complete"] and 0 < part.meta["contexts_done"] < 20
    monkeypatch.setattr(acts_mod, "hook_activations", real)
    resumed = collect_activations(
        bridge, tokens, HOOK, tmp_path / "r", batch_size=4, shard_tokens=30, dtype="float32", progress=False
    )
    assert resumed.meta["complete"] and torch.equal(resumed.read(), full.read())
    with pytest.raises(ConfigError, match="another model, hook or token set"):
        collect_activations(bridge, tokens[:5], HOOK, tmp_path / "r", progress=False)


def test_unknown_hook_lists_the_nearest_valid_names(bridge, tokens, tmp_path):
    with pytest.raises(HookNameError) as e:
        collect_activations(bridge, tokens, "blocks.1.hook_resid_pr", tmp_path / "x", progress=False)
    assert "blocks.1.hook_resid_pre" in str(e.value) and "blocks.1.hook_resid_pr'" in str(e.value)
    assert not (tmp_path / "x").exists()


def test_iter_batches_shuffles_every_row_once_deterministically(tmp_path):
    x = torch.arange(1000 * 4, dtype=torch.float32).view(1000, 4)
    st = ActivationStore.create(
        tmp_path / "s",
        model="m",
        hook_name="h",
        d_in=4,
        tokens=np.zeros((1, 2), np.int32),
        exclude_bos=False,
        dtype="float32",
    )
    for i in range(0, 1000, 130):
        st.write(x[i : i + 130])
    rows = torch.cat(list(st.iter_batches(64, seed=3, buffer_tokens=300)))
    assert sorted(rows[:, 0].tolist()) == x[:, 0].tolist()  # a permutation of all rows
    assert not torch.equal(rows, x)
    again = torch.cat(list(st.iter_batches(64, seed=3, buffer_tokens=300)))
    other = torch.cat(list(st.iter_batches(64, seed=4, buffer_tokens=300)))
    assert torch.equal(rows, again) and not torch.equal(rows, other)
    batches = list(st.iter_batches(64, seed=3, drop_last=True))
    assert all(len(b) == 64 for b in batches) and len(batches) == 1000 // 64
    assert torch.equal(torch.cat(list(st.iter_batches(100, shuffle=False))), x)
    assert sum(len(b) for b in st.iter_batches(64, n_tokens=500)) == 500


def test_store_errors(tmp_path):
    with pytest.raises(SaeFormatError, match="meta.json not found"):
        ActivationStore(tmp_path)
    st = ActivationStore.create(
        tmp_path / "s", model="m", hook_name="h", d_in=4, tokens=np.zeros((1, 2)), exclude_bos=False
    )
    with pytest.raises(ShapeMismatchError, match=r"\[3, 5\]"):
        st.write(torch.zeros(3, 5))
    with pytest.raises(ConfigError, match="bfloat16"):
        ActivationStore.create(
            tmp_path / "t",
            model="m",
            hook_name="h",
            d_in=4,
            tokens=np.zeros((1, 2)),
            exclude_bos=False,
            dtype="bfloat16",
        )
