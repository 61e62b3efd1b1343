"""Hostile manifests and options for featgraph atlas: each is refused with one line naming the file, entry, key or
value, exit 1, no traceback, inputs untouched and nothing written at --out."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from ..conftest import run_main, tiny_sae
from ..hostile import assert_refused
from .planted import write_manifest


@pytest.fixture
def coll(tmp_path):
    """Three tiny SAEs (widths 8 and 16 at blocks.1, 8 at blocks.2; d = 16) and a valid manifest over them."""
    rng = np.random.default_rng(0)
    for name, w in (("a8", 8), ("a16", 16), ("b8", 8)):
        tiny_sae(W_dec=rng.standard_normal((w, 16)).astype(np.float32), seed=w).save(tmp_path / "saes" / name)
    entries = [{"path": "saes/a8", "site": "blocks.1.hook_resid_post"},
               {"path": "saes/a16", "site": "blocks.1.hook_resid_post"},
               {"path": "saes/b8", "site": "blocks.2.hook_resid_post"}]
    return tmp_path, entries


def _refuse(tmp_path, entries, needles, *, name="atlas.toml", extra=(), raw=None, defaults=None, named=True):
    manifest = tmp_path / name
    if raw is not None:
        manifest.write_text(raw)
    else:
        write_manifest(manifest, entries, defaults)
    out = tmp_path / "out"
    return assert_refused(["atlas", manifest, "--out", out, "-q", *extra],
                          inputs=[manifest, tmp_path / "saes"], out=out,
                          needles=(*([str(manifest)] if named else []), *needles))


def test_the_valid_manifest_runs(coll):
    tmp_path, entries = coll
    write_manifest(tmp_path / "atlas.toml", entries)
    rc, stdout, stderr = run_main("atlas", tmp_path / "atlas.toml", "--out", tmp_path / "out", "-q")
    assert rc == 0, stderr
    assert "families: 1 pairs" in stdout and "flow: 1 pairs" in stdout
    assert "pairs: 0 reused, 2 computed" in stdout
    assert stderr == ""  # --quiet: no progress bar
    rc, stdout, stderr = run_main("atlas", tmp_path / "atlas.toml", "--out", tmp_path / "out")
    assert rc == 0 and "pairs: 2 reused, 0 computed" in stdout
    rc, stdout, stderr = run_main("atlas", tmp_path / "atlas.toml", "--out", tmp_path / "out2")
    assert rc == 0 and "atlas (local)" in stderr and "2/2" in stderr  # the task bar


@pytest.mark.parametrize("key,value,needles", [
    ("colour", "red", ("sae entry 2", "'colour'")),
    ("layer", "three", ("sae entry 2", "'layer'", "three")),
    ("seed", -1, ("'seed'", "-1")),
    ("width", 99, ("'a16'", "states width 99", "16 features")),
    ("name", "bad/name", ("'bad/name'", "must match")),
    ("tags", [1, 2], ("'tags'",)),
    ("site", "", ("'site'",)),
])
def test_bad_entries(coll, key, value, needles):
    tmp_path, entries = coll
    entries[1][key] = value
    _refuse(tmp_path, entries, needles)


def test_unknown_top_level_and_default_keys(coll):
    tmp_path, entries = coll
    obj = {"sae": entries, "saes": []}
    _refuse(tmp_path, entries, ("unknown top-level key 'saes'",), name="atlas.json", raw=json.dumps(obj))
    _refuse(tmp_path, entries, ("'width'", "defaults"), defaults={"width": 8})
    _refuse(tmp_path, entries, ("non-empty list 'sae'",), name="atlas.json", raw=json.dumps({"sae": []}))


def test_unreadable_manifests(coll):
    tmp_path, entries = coll
    _refuse(tmp_path, entries, ("not valid TOML",), raw="[[sae]\npath = 'x'\n")
    _refuse(tmp_path, entries, ("duplicate key 'path'",), name="atlas.json",
            raw='{"sae": [{"path": "saes/a8", "path": "saes/a16", "site": "s"}]}')
    _refuse(tmp_path, entries, (".toml or .json",), name="atlas.yaml", raw="sae: []\n")
    _refuse(tmp_path, entries, ("expected a table",), name="atlas.json", raw="[1, 2]")
    _refuse(tmp_path, entries, ("not valid TOML",), raw="sae = " + "[" * 50_000 + "]" * 50_000 + "\n")
    (tmp_path / "atlas.toml").write_bytes(b"[[sae]]\npath = '\xff'\n")
    assert_refused(["atlas", tmp_path / "atlas.toml", "--out", tmp_path / "out"], inputs=[tmp_path / "atlas.toml"],
                   out=tmp_path / "out", needles=("not UTF-8",))


def test_missing_sae_and_duplicate_paths(coll, tmp_path):
    _, entries = coll
    _refuse(tmp_path, [*entries, {"path": "saes/nope", "site": "s"}], ("sae entry 4", "saes/nope", "no such"))
    dup = [*entries, {"path": "saes/./a8", "site": "blocks.3.x", "name": "again"}]
    _refuse(tmp_path, dup, ("the same SAE is given twice", "a8"))
    os.symlink(tmp_path / "saes" / "a16", tmp_path / "link16")
    _refuse(tmp_path, [*entries, {"path": "link16", "site": "blocks.3.x"}], ("the same SAE is given twice",))
    _refuse(tmp_path, [{**entries[1], "name": "dup"}, entries[2], {"path": "saes/a8", "site": "x", "name": "dup"}],
            ("duplicate SAE name 'dup'",))


def test_copies_mixed_d_in_and_ambiguous_widths(coll, tmp_path):
    _, entries = coll
    shutil.copytree(tmp_path / "saes" / "a8", tmp_path / "copy8")
    _refuse(tmp_path, [*entries, {"path": "copy8", "site": "blocks.3.x"}], ("identical decoders", "'a8'"))
    tiny_sae(8, 12, seed=5).save(tmp_path / "d12")
    _refuse(tmp_path, [*entries, {"path": "d12", "site": "blocks.1.hook_resid_post", "seed": 1}],
            ("mixes d_in", "d_in=16", "d_in=12"))
    tiny_sae(16, 16, seed=6).save(tmp_path / "other16")
    _refuse(tmp_path, [*entries, {"path": "other16", "site": "blocks.1.hook_resid_post"}],
            ("both width 16", "distinct seeds or tags"))


def test_bad_options(coll, tmp_path):
    _, entries = coll
    _refuse(tmp_path, entries, ("--site 'blocks.9.x'",), extra=("--site", "blocks.9.x"))
    for extra, needles in ((("--only", "flows"), ("--only", "'flows'")),
                           (("--address", "10.0.0.1:6379"), ("--address", "--engine ray")),
                           (("--memory-budget", "5"), ("memory_budget", "5")), (("--tau", "1.5"), ("tau", "1.5"))):
        _refuse(tmp_path, entries, needles, extra=extra, named=False)


def test_out_inside_an_input_or_a_foreign_folder(coll, tmp_path):
    _, entries = coll
    manifest = write_manifest(tmp_path / "atlas.toml", entries)
    inputs = [manifest, tmp_path / "saes"]
    assert_refused(["atlas", manifest, "--out", tmp_path / "saes" / "a8" / "out", "-q"], inputs=inputs,
                   needles=("a8",))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert_refused(["atlas", manifest, "--out", tmp_path / "mine", "-q"], inputs=inputs, out=tmp_path / "mine",
                   needles=("notes.txt",))


def test_folder_tree_collection(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((8, 16)).astype(np.float32)
    seed1 = base + 0.01 * rng.standard_normal((8, 16)).astype(np.float32)
    for path, W in (("blocks.1.hook_resid_post/w8", base), ("blocks.1.hook_resid_post/w8-seed1", seed1),
                    ("blocks.1.hook_resid_post/w16", rng.standard_normal((16, 16)).astype(np.float32)),
                    ("blocks.2.hook_resid_post/w8", rng.standard_normal((8, 16)).astype(np.float32))):
        tiny_sae(W_dec=W, seed=1).save(tmp_path / "tree" / path)
    (tmp_path / "tree" / "README.txt").write_text("ignored")
    rc, stdout, stderr = run_main("atlas", tmp_path / "tree", "--out", tmp_path / "out", "-q")
    assert rc == 0, stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    pairs = {(p["kind"], p["pair"]) for p in summary["plan"]}
    assert pairs == {("families", "blocks.1.hook_resid_post-w8~blocks.1.hook_resid_post-w16"),
                     ("flow", "blocks.1.hook_resid_post-w8~blocks.2.hook_resid_post-w8"),
                     ("compare", "blocks.1.hook_resid_post-w8~blocks.1.hook_resid_post-w8-seed1")}
    compare = [p for p in summary["plan"] if p["kind"] == "compare"][0]
    assert compare["stats"]["shared"] == 8  # the perturbed copy matches every feature
    (tmp_path / "empty").mkdir()
    assert_refused(["atlas", tmp_path / "empty", "--out", tmp_path / "out2"], inputs=[tmp_path / "empty"],
                   out=tmp_path / "out2", needles=("no SAE folders",))


def test_default_names_are_folder_names_unless_two_share_one(tmp_path):
    from featgraph.atlas.collection import read_collection

    rng = np.random.default_rng(2)
    for path in ("l1/w8", "l2/w8", "l2/w16"):
        tiny_sae(W_dec=rng.standard_normal((int(path[4:]), 16)).astype(np.float32)).save(tmp_path / path)
    entries = [{"path": p, "site": f"blocks.{p[1]}.x"} for p in ("l1/w8", "l2/w8", "l2/w16")]
    coll = read_collection(write_manifest(tmp_path / "m.json", entries))
    assert coll.names() == ["l1-w8", "l2-w8", "w16"]
    assert [s.layer for s in coll.saes] == [1, 2, 2] and coll.saes[0].stream == "blocks.*.x"


def test_an_sae_name_in_the_manifest_resolves_through_the_hub(coll, monkeypatch):
    import featgraph.hub

    tmp_path, entries = coll
    cache = tmp_path / "cache" / "snapshots" / "abc123" / "layer_2" / "width_8"
    shutil.copytree(tmp_path / "saes" / "b8", cache)
    shutil.rmtree(tmp_path / "saes" / "b8")
    monkeypatch.setattr(featgraph.hub, "looks_like_name", lambda raw: raw.startswith("fake-release/"))
    monkeypatch.setattr(featgraph.hub, "resolve", lambda raw: [cache] if raw.endswith("width_8") else [cache, cache])
    monkeypatch.setattr(featgraph.hub, "display_name", lambda p: "layer_2/width_8")
    entries[2]["path"] = "fake-release/layer_2/width_8"
    write_manifest(tmp_path / "atlas.toml", entries)
    from featgraph.atlas.collection import read_collection

    coll_ = read_collection(tmp_path / "atlas.toml")
    assert coll_.names() == ["a8", "a16", "layer_2-width_8"] and coll_.saes[2].path == cache
    entries[2]["path"] = "fake-release/layer_2"
    _refuse(tmp_path, entries, ("'fake-release/layer_2' names 2 SAEs",))
    entries[2]["path"] = "saes/b8"
    _refuse(tmp_path, entries, ("sae entry 3", "no such file or folder"))


def test_layers_told_apart_by_the_layer_key_alone(tmp_path):
    from featgraph.atlas.collection import read_collection
    from featgraph.atlas.plan import make_plan

    rng = np.random.default_rng(4)
    entries = []
    for layer in (4, 5):
        for w in (8, 16):
            tiny_sae(W_dec=rng.standard_normal((w, 16)).astype(np.float32)).save(tmp_path / f"L{layer}w{w}")
            entries.append({"path": f"L{layer}w{w}", "site": "resid_post", "layer": layer})
    coll_ = read_collection(write_manifest(tmp_path / "m.toml", entries))
    plan = make_plan(coll_, {s.name: int(s.name[-1] == "6") * 8 + 8 for s in coll_.saes})
    assert [(p.kind, p.a, p.b) for p in plan] == [
        ("families", "L4w8", "L4w16"), ("families", "L5w8", "L5w16"),
        ("flow", "L4w8", "L5w8"), ("flow", "L4w16", "L5w16")]


def test_flow_pairs_each_sae_with_the_equal_or_nearest_width_one_layer_down(tmp_path):
    from featgraph.atlas.collection import Collection, SaeSpec
    from featgraph.atlas.plan import make_plan

    widths = {"a8": 8, "a32": 32, "b8": 8, "b16": 16, "b20": 20, "b24": 24, "b64": 64, "c64": 64}

    def spec(name, layer, seed=0):
        return SaeSpec(name, tmp_path / name, f"blocks.{layer}.x", layer, "blocks.*.x", seed, "", None, ())

    coll_ = Collection(tmp_path, [spec("a8", 1), spec("a32", 1), *(spec(n, 2) for n in ("b8", "b16", "b20", "b24",
                                                                                        "b64")), spec("c64", 3)])
    plan = make_plan(coll_, widths, parts=("flow",))
    assert [(p.a, p.b) for p in plan] == [("a8", "b8"), ("a8", "b16"), ("a8", "b20"), ("a32", "b24"), ("a32", "b64"),
                                          ("b64", "c64")]
