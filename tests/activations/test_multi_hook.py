"""collect_hooks: several hooks from one forward pass into one store per hook (the multi-layer demo's collection)."""

from __future__ import annotations

import json

import pytest
import torch

import featgraph.activations.collect as collect_mod
from featgraph.activations.collect import collect_activations, collect_hooks, hook_activations, hooks_activations
from featgraph.activations.store import ActivationStore
from featgraph.errors import ConfigError, HookNameError
from tests.conftest import tiny_bridge

HOOKS = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"]
ARGS = {"batch_size": 4, "shard_tokens": 30, "dtype": "float32", "progress": False}


@pytest.fixture(scope="module")
def bridge():
    return tiny_bridge(n_layers=4)


@pytest.fixture
def tokens():
    t = torch.randint(1, 50, (18, 9), generator=torch.Generator().manual_seed(3))
    t[:, 0] = 0  # BOS of a tokenizer-less native model
    return t


def _meta(folder):
    return json.loads((folder / "meta.json").read_text())


def test_each_store_equals_a_one_hook_collection(bridge, tokens, tmp_path):
    multi = collect_hooks(bridge, tokens, {h: tmp_path / f"m{i}" for i, h in enumerate(HOOKS)}, **ARGS)
    assert list(multi) == HOOKS
    for i, h in enumerate(HOOKS):
        single = collect_activations(bridge, tokens, h, tmp_path / f"s{i}", **ARGS)
        assert torch.equal(multi[h].read(), single.read())
        assert _meta(tmp_path / f"m{i}") == _meta(tmp_path / f"s{i}")  # same shards, hook, tokens, everything
        assert multi[h].meta["complete"] and multi[h].n_tokens == 18 * 8
    # the layers really differ (a mix-up of hooks would not be caught otherwise)
    assert not torch.equal(multi[HOOKS[0]].read(), multi[HOOKS[2]].read())
    direct = hooks_activations(bridge, tokens, HOOKS)
    for h in HOOKS:
        assert torch.equal(direct[h], hook_activations(bridge, tokens, h))


def test_one_forward_pass_per_batch_stopped_after_the_deepest_hook(bridge, tokens, tmp_path, monkeypatch):
    calls = []
    real = type(bridge).run_with_cache

    def counting(self, *a, **k):
        calls.append((tuple(k["names_filter"]), k["stop_at_layer"]))
        return real(self, *a, **k)

    monkeypatch.setattr(type(bridge), "run_with_cache", counting)
    collect_hooks(bridge, tokens, {h: tmp_path / f"m{i}" for i, h in enumerate(HOOKS)}, **ARGS)
    assert len(calls) == 5  # ceil(18 / 4) batches, not 3 x 5
    assert set(calls) == {(tuple(HOOKS), 3)}  # blocks 0..2 run, block 3 skipped


def test_stores_at_different_progress_resume_to_the_same_result(bridge, tokens, tmp_path, monkeypatch):
    full = collect_hooks(bridge, tokens, {h: tmp_path / f"f{i}" for i, h in enumerate(HOOKS[:2])}, **ARGS)
    real = collect_mod.hook_activations
    calls = {"n": 0}

    def dies_on_fourth(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    # the first hook's store alone gets three batches in, then the run is killed
    monkeypatch.setattr(collect_mod, "hook_activations", dies_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        collect_hooks(bridge, tokens, {HOOKS[0]: tmp_path / "r0"}, **ARGS)
    monkeypatch.setattr(collect_mod, "hook_activations", real)
    ahead = ActivationStore(tmp_path / "r0")
    assert not ahead.meta["complete"] and 0 < ahead.meta["contexts_done"] < 18
    # both hooks together: the second starts from 0, the first skips the contexts it already holds
    both = collect_hooks(bridge, tokens, {HOOKS[0]: tmp_path / "r0", HOOKS[1]: tmp_path / "r1"}, **ARGS)
    for h in HOOKS[:2]:
        assert both[h].meta["complete"] and torch.equal(both[h].read(), full[h].read())
    # a finished set is returned as it is, without running the model
    monkeypatch.setattr(type(bridge), "run_with_cache", lambda *a, **k: pytest.fail("model ran again"))
    again = collect_hooks(bridge, tokens, {HOOKS[0]: tmp_path / "r0", HOOKS[1]: tmp_path / "r1"}, **ARGS)
    assert torch.equal(again[HOOKS[1]].read(), full[HOOKS[1]].read())


def test_refusals_name_the_problem_before_writing(bridge, tokens, tmp_path):
    with pytest.raises(ConfigError, match="at least one"):
        collect_hooks(bridge, tokens, {}, **ARGS)
    with pytest.raises(ConfigError, match="its own store folder"):
        collect_hooks(bridge, tokens, {HOOKS[0]: tmp_path / "same", HOOKS[1]: tmp_path / "same"}, **ARGS)
    with pytest.raises(HookNameError, match="blocks.1.hook_resid_pre"):
        collect_hooks(bridge, tokens, {HOOKS[0]: tmp_path / "a", "blocks.1.hook_resid_pr": tmp_path / "b"}, **ARGS)
    assert not any(tmp_path.iterdir())
    collect_hooks(bridge, tokens[:6], {HOOKS[0]: tmp_path / "a"}, **ARGS)
    with pytest.raises(ConfigError, match="another model, hook or token set"):
        collect_hooks(bridge, tokens[:6], {HOOKS[1]: tmp_path / "a"}, **ARGS)
