"""featgraph atlas on a planted collection: every planted family, flow chain and seed match is recovered, every
pair equals a float64 brute force, reruns reuse finished pairs and are byte-identical, row blocks change nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import networkx as nx
import numpy as np
import polars as pl
import pytest

from featgraph.atlas.config import AtlasConfig
from featgraph.atlas.run import run_atlas
from featgraph.compare import assign_dense
from featgraph.matching import match_brute64, normalize_rows

from ..conftest import tiny_sae
from .planted import build_collection

TAU = 0.7
PLAN = [
    ("families", "l1-w32", "l1-w64"), ("families", "l2-w32", "l2-w64"), ("families", "l3-w32", "l3-w64"),
    ("families", "mlp2-w16", "mlp2-w48"),
    ("flow", "l1-w32", "l2-w32"), ("flow", "l1-w64", "l2-w64"), ("flow", "l2-w32", "l3-w32"),
    ("flow", "l2-w64", "l3-w64"),
    ("compare", "l2-w64", "l2-w64-seed1"),
]


def _run(manifest, out, **kw):
    return run_atlas(AtlasConfig(manifest=str(manifest), out=str(out), tau=TAU, progress=False, **kw))


def _digests(out: Path, skip=()) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in skip}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    truth = build_collection(root)
    result = _run(truth.manifest, root / "out")
    return truth, result, root


def _table(root: Path, kind: str, a: str, b: str, name: str) -> pl.DataFrame:
    return pl.read_parquet(root / "out" / kind / f"pair={a}~{b}" / name)


def test_plan_is_every_adjacent_width_layer_and_seed_pair(planted):
    _truth, result, _root = planted
    assert [(p.kind, p.a, p.b) for p in result.plan] == PLAN
    assert (result.reused, result.computed) == (0, len(PLAN))


def test_every_pair_equals_the_float64_brute_force(planted):
    truth, _result, root = planted
    units = {n: normalize_rows(W)[0] for n, W in truth.decoders.items()}
    for kind, a, b in PLAN:
        if kind == "compare":
            df = _table(root, kind, a, b, "assignment.parquet")
            dense = assign_dense(units[a], units[b])
            assert df["cos"].sum() == pytest.approx(dense.total, abs=1e-9)
            assert df.height == 64 and df["a_feature"].n_unique() == 64 and df["b_feature"].n_unique() == 64
            continue
        ref = match_brute64(units[a], units[b], TAU)
        df = _table(root, kind, a, b, "flow.parquet" if kind == "flow" else "features.parquet")
        np.testing.assert_allclose(df["max_cos"].to_numpy(), ref.max_cos, atol=1e-12)
        assert np.array_equal(df["predecessor" if kind == "flow" else "parent"].to_numpy(), ref.argmax)
        if kind == "families":
            e = _table(root, kind, a, b, "edges.parquet")
            assert np.array_equal(e["small_feature"].to_numpy(), ref.edge_small)
            assert np.array_equal(e["large_feature"].to_numpy(), ref.edge_large)
        else:
            assert np.array_equal(df["from_nowhere"].to_numpy(), ref.max_cos <= TAU)


def test_planted_families_are_recovered(planted):
    truth, _result, root = planted
    for L in (1, 2, 3):
        f = _table(root, "families", f"l{L}-w32", f"l{L}-w64", "features.parquet")
        assert f["parent"][:16].to_list() == truth.copy[L].tolist()
        assert f["parent"][16:40].to_list() == truth.split[L].tolist()
        assert f["novel"].to_list() == [False] * 40 + [True] * 24
        fams = _table(root, "families", f"l{L}-w32", f"l{L}-w64", "families.parquet")
        got = {(tuple(r["small_features"]), tuple(r["large_features"])) for r in fams.iter_rows(named=True)}
        want = {((int(p),), (i,)) for i, p in enumerate(truth.copy[L])}
        want |= {((int(p),), tuple(int(i) for i in np.flatnonzero(truth.split[L] == p) + 16))
                 for p in np.unique(truth.split[L])}
        assert got == want


def test_planted_flow_chains_are_recovered(planted):
    truth, result, root = planted
    chains = pl.read_parquet(root / "out" / "flow_chains.parquet")

    def chain(sae, i):
        return chains.filter((pl.col("sae") == sae) & (pl.col("feature") == i)).row(0, named=True)

    for L in (2, 3):
        f = _table(root, "flow", f"l{L - 1}-w32", f"l{L}-w32", "flow.parquet")
        assert f["predecessor"][:20].to_list() == truth.carry[L].tolist()
        assert f["from_nowhere"].to_list() == [False] * 20 + [True] * 12
    through = 0
    for i in range(20):
        mid = int(truth.carry[3][i])
        row = chain("l3-w32", i)
        assert row["chain"] == chain("l2-w32", mid)["chain"]
        if mid < 20:  # carried into layer 2 as well: the chain starts at layer 1
            through += 1
            first = chain("l1-w32", int(truth.carry[2][mid]))
            assert (row["chain"], row["depth"], first["depth"]) == (first["chain"], 2, 0)
    assert through > 0
    w32 = chains.filter(pl.col("sae").str.ends_with("w32")).group_by("chain").agg(pl.col("layer").n_unique())
    assert int((w32["layer"] == 3).sum()) == through
    # the other stream takes no part in flow, and the shares add up
    assert not chains.filter(pl.col("sae").str.starts_with("mlp")).height
    layers = pl.read_parquet(root / "out" / "flow_layers.parquet").filter(pl.col("born_share").is_not_null())
    assert np.allclose(layers["born_share"] + layers["carried_share"], 1.0)
    assert (root / "out" / "flow.png").stat().st_size > 1000
    assert result.summary["flow"]["chains"]["count"] == chains["chain"].n_unique()


def test_planted_seed_match_is_recovered(planted):
    truth, result, root = planted
    df = _table(root, "compare", "l2-w64", "l2-w64-seed1", "assignment.parquet")
    by_b = dict(zip(df["b_feature"].to_list(), df["a_feature"].to_list(), strict=True))
    assert [by_b[i] for i in range(48)] == truth.perm.tolist()
    assert df.filter(pl.col("b_feature") < 48)["shared"].all()
    assert not df.filter(pl.col("b_feature") >= 48)["shared"].any()
    stats = result.summary["plan"][-1]["stats"]
    assert stats["shared"] == 48 and stats["gap_bound"] < 1e-9


def test_graph_holds_every_feature_and_every_edge(planted):
    truth, result, root = planted
    g = nx.read_graphml(root / "out" / "graph.graphml")
    assert g.number_of_nodes() == sum(W.shape[0] for W in truth.decoders.values())
    kinds = [d["kind"] for _, _, d in g.edges(data=True)]
    plan = result.summary["plan"]
    assert kinds.count("families") == sum(p["stats"].get("edges", 0) for p in plan)
    assert kinds.count("flow") == sum(p["stats"]["features"] - p["stats"]["from_nowhere"]
                                      for p in plan if p["kind"] == "flow")
    assert kinds.count("compare") == 48
    assert g.nodes["l2-w64-seed1:0"]["seed"] == 1 and g.nodes["l3-w32:5"]["layer"] == 3
    data = json.loads((root / "out" / "graph.json").read_text())
    assert len(data["nodes"]) == g.number_of_nodes() and len(data["edges"]) == g.number_of_edges()


def test_rerun_reuses_every_pair_and_writes_the_same_bytes(planted, tmp_path):
    truth, _result, root = planted
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    before = _digests(out)
    again = _run(truth.manifest, out)
    assert (again.reused, again.computed) == (len(PLAN), 0)
    assert _digests(out, skip=("summary.json",)) == {k: v for k, v in before.items() if k != "summary.json"}
    old, new = (json.loads(p.read_text()) for p in (root / "out" / "summary.json", out / "summary.json"))
    assert new["run"] == {"pairs": len(PLAN), "reused": len(PLAN), "computed": 0}
    assert {k: v for k, v in old.items() if k != "run"} == {k: v for k, v in new.items() if k != "run"}
    fresh = _run(truth.manifest, tmp_path / "fresh")  # a second fresh run: every byte equal, summary too
    assert fresh.computed == len(PLAN)
    assert _digests(tmp_path / "fresh") == _digests(root / "out")


def test_row_blocks_and_json_manifest_give_identical_tables(planted, tmp_path):
    truth, _result, root = planted
    calls = []
    import featgraph.atlas.work as work

    original = work.pair_task

    def spy(task, a, b):
        calls.append(task.key)
        return original(task, a, b)

    import tomllib

    (root / "atlas.json").write_text(json.dumps(tomllib.loads(truth.manifest.read_text())))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("featgraph.atlas.run.pair_task", spy)
        # 80 rows of d = 64: a 32 x 64 families pair keeps its 32-row SAE whole and splits the other in 2 blocks
        split = _run(root / "atlas.json", tmp_path / "split", memory_budget=8 * 64 * 80)
    assert split.computed == len(PLAN)
    blocks = [k for k in calls if k.startswith("families/l1-w32~l1-w64/")]
    assert blocks == ["families/l1-w32~l1-w64/rows000000000000-000000000032",
                      "families/l1-w32~l1-w64/rows000000000032-000000000064"]
    skip = ("summary.json", "config.json")
    assert _digests(tmp_path / "split", skip) == _digests(root / "out", skip)
    calls.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("featgraph.atlas.run.pair_task", spy)
        # a third of a 64 x 64 pair: both SAEs are split, b into 3 blocks (22, 22, 20 rows), a likewise
        tiled = _run(truth.manifest, tmp_path / "tiled", memory_budget=8 * 64 * 48)
    assert tiled.computed == len(PLAN)
    blocks = [k for k in calls if k.startswith("flow/l1-w64~l2-w64/")]
    assert len(blocks) == 9
    assert blocks[1] == "flow/l1-w64~l2-w64/rows000000000000-000000000022/cols000000000022-000000000044"
    assert _digests(tmp_path / "tiled", skip) == _digests(root / "out", skip)


def test_tiles_cover_every_pair_within_the_budget():
    from featgraph.atlas.plan import tiles

    for n_a, n_b, d, budget in ((32, 64, 64, 8 * 64 * 48), (524_288, 1_048_576, 2304, 16 << 30),
                                (1_048_576, 1_048_576, 2304, 4 << 30), (100, 7, 8, 8 * 8 * 40)):
        got = tiles("flow", n_a, n_b, d, budget)
        cover = np.zeros((n_b, n_a), bool) if n_a * n_b < 10**6 else None
        for (b0, b1), (a0, a1) in got:
            assert 8 * d * ((b1 - b0) + (a1 - a0)) <= budget
            if cover is not None:
                assert not cover[b0:b1, a0:a1].any()
                cover[b0:b1, a0:a1] = True
        if cover is not None:
            assert cover.all()
        else:  # equal blocks: b's and a's ranges each partition their SAE
            assert sorted({b for b, _ in got})[-1][1] == n_b and sorted({a for _, a in got})[-1][1] == n_a
    assert tiles("compare", 10**6, 10**6, 2304, 1 << 20) == [((0, 10**6), (0, 10**6))]


def test_a_changed_sae_recomputes_only_its_pairs(planted, tmp_path):
    truth, _result, root = planted
    coll = tmp_path / "coll"
    shutil.copytree(root / "saes", coll / "saes")
    shutil.copy(truth.manifest, coll / "atlas.toml")
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    W = truth.decoders["l2-w32"].copy()
    W[25] = -W[25]  # one born feature flipped: the pairs with l2-w32 change, nothing else does
    shutil.rmtree(coll / "saes" / "l2-w32")
    tiny_sae(W_dec=W, seed=3).save(coll / "saes" / "l2-w32")
    calls = []
    import featgraph.atlas.work as work

    def spy(task, a, b):
        calls.append(task.params["pair"])
        return work.pair_task(task, a, b)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("featgraph.atlas.run.pair_task", spy)
        again = _run(coll / "atlas.toml", out)
    changed = {"l2-w32~l2-w64", "l1-w32~l2-w32", "l2-w32~l3-w32"}
    assert set(calls) == changed and (again.reused, again.computed) == (len(PLAN) - 3, 3)
    fresh = _run(coll / "atlas.toml", tmp_path / "fresh")
    skip = ("summary.json", "config.json")
    assert _digests(out, skip) == _digests(tmp_path / "fresh", skip)
    untouched = [f"{k}/pair={a}~{b}" for k, a, b in PLAN if f"{a}~{b}" not in changed]
    old, new = _digests(root / "out"), _digests(out)
    assert all(new[k] == old[k] for k in old if any(k.startswith(u) for u in untouched))
    assert fresh.summary["plan"] == again.summary["plan"]


def test_tables_read_back_as_one_partitioned_dataset(planted):
    _truth, result, root = planted
    flow = pl.read_parquet(root / "out" / "flow" / "*" / "flow.parquet", hive_partitioning=True)
    sizes = dict(flow.group_by("pair").len().iter_rows())
    assert sizes == {p.name: p.b.endswith("w64") and 64 or 32 for p in result.plan if p.kind == "flow"}


def test_zero_rows_are_in_no_chain_and_survive_reuse(tmp_path):
    from .planted import write_manifest

    rng = np.random.default_rng(3)
    lower = rng.standard_normal((8, 16)).astype(np.float32)
    upper = np.vstack([lower[:4] + 0.01 * rng.standard_normal((4, 16)), np.zeros((1, 16)),
                       rng.standard_normal((3, 16))]).astype(np.float32)
    lower[7] = 0
    for name, W in (("lo", lower), ("up", upper)):
        tiny_sae(W_dec=W, seed=1).save(tmp_path / name)
    write_manifest(tmp_path / "m.toml", [{"path": "lo", "site": "blocks.1.x"}, {"path": "up", "site": "blocks.2.x"}])
    first = _run(tmp_path / "m.toml", tmp_path / "out")
    flow = first.tables["lo~up"]["flow.parquet"]
    assert flow["zero_norm"].to_list() == [False] * 4 + [True] + [False] * 3
    assert flow["predecessor"][:5].to_list() == [0, 1, 2, 3, None]
    chains = pl.read_parquet(tmp_path / "out" / "flow_chains.parquet")
    up = chains.filter(pl.col("sae") == "up")
    assert up["chain"][4] is None and up["from_nowhere"][4] is None and up["depth"][:4].to_list() == [1] * 4
    lo = chains.filter(pl.col("sae") == "lo")
    assert lo["ends"].to_list() == [False] * 4 + [True] * 3 + [None]
    before = _digests(tmp_path / "out", skip=("summary.json",))
    again = _run(tmp_path / "m.toml", tmp_path / "out")
    assert again.reused == 1 and _digests(tmp_path / "out", skip=("summary.json",)) == before


def test_python_api_is_the_callable_package_and_imports_no_ray(planted, tmp_path):
    import subprocess
    import sys

    truth, _result, root = planted
    code = ("import sys, featgraph; r = featgraph.atlas(manifest=sys.argv[1], out=sys.argv[2], progress=False, "
            "only='compare'); assert 'ray' not in sys.modules; print(r.computed, [p.name for p in r.plan])")
    done = subprocess.run([sys.executable, "-c", code, str(truth.manifest), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "1 ['l2-w64~l2-w64-seed1']"
    skip = ("summary.json", "config.json", "graph.graphml", "graph.json", ".featgraph-manifest.json")
    want = {k: v for k, v in _digests(root / "out", skip).items() if k.startswith("compare/")}
    assert _digests(tmp_path / "out", skip) == want


def test_only_and_site_select_parts_of_the_plan_and_reuse_them(planted, tmp_path):
    truth, _result, root = planted
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    part = _run(truth.manifest, out, sites=("blocks.2.hook_resid_post", "blocks.3.hook_resid_post"),
                only=("families", "flow"))
    assert [(p.kind, p.a, p.b) for p in part.plan] == [
        ("families", "l2-w32", "l2-w64"), ("families", "l3-w32", "l3-w64"),
        ("flow", "l2-w32", "l3-w32"), ("flow", "l2-w64", "l3-w64")]
    assert (part.reused, part.computed) == (4, 0)
    assert sorted(p.name for p in (out / "families").iterdir()) == ["pair=l2-w32~l2-w64", "pair=l3-w32~l3-w64"]
    assert not (out / "compare").exists()
    old = _digests(root / "out")
    assert all(old[k] == v for k, v in _digests(out).items() if k.endswith(".parquet") and "pair=" in k)


def test_a_damaged_earlier_result_is_recomputed_not_reused(planted, tmp_path):
    truth, _result, root = planted
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    damaged = out / "flow" / "pair=l1-w64~l2-w64" / "flow.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])  # truncated: not a readable Parquet file any more
    summary = json.loads((out / "summary.json").read_text())
    summary["plan"][0]["key"] = "0" * 64  # a key that matches nothing: that pair is recomputed too
    (out / "summary.json").write_text(json.dumps(summary))
    again = _run(truth.manifest, out)
    assert (again.reused, again.computed) == (len(PLAN) - 2, 2)
    skip = ("summary.json",)
    assert _digests(out, skip) == _digests(root / "out", skip)


def test_merged_tiles_equal_the_brute_force_with_ties_and_zero_rows():
    from featgraph.atlas.engines import LocalEngine
    from featgraph.atlas.plan import Pair
    from featgraph.atlas.work import make_tasks, merge_blocks, pair_task

    rng = np.random.default_rng(5)
    a = rng.standard_normal((40, 16)).astype(np.float32)
    a[30], a[12] = a[5], 0  # an exact tie across a's blocks, and a zero row
    b = rng.standard_normal((50, 16)).astype(np.float32)
    b[7], b[44], b[20] = a[5], 0, a[33] * 2
    ua, ub = normalize_rows(a)[0], normalize_rows(b)[0]
    for kind in ("families", "flow"):
        tasks = make_tasks(Pair(kind, "a", "b"), "A", "B", {"A": ua.shape, "B": ub.shape}, tau=TAU, method="fp32",
                           device="cpu", budget_bytes=8 * 16 * 32)
        assert len(tasks) == 12  # 16 rows of each side per tile: a in 3 blocks, b in 4
        got = merge_blocks(kind, list(LocalEngine().map(pair_task, tasks[::-1], {"A": ua, "B": ub})))
        ref = match_brute64(ua, ub, TAU)
        assert np.array_equal(got["argmax"], ref.argmax) and got["argmax"][7] == 5 and got["argmax"][44] == 0
        np.testing.assert_allclose(got["max_cos"], ref.max_cos, atol=1e-12)
        if kind == "families":
            assert np.array_equal(got["edge_a"], ref.edge_small) and np.array_equal(got["edge_b"], ref.edge_large)


def test_cli_prints_the_plan_the_flow_shares_and_the_reuse(planted, tmp_path):
    from ..conftest import run_main

    truth, _result, root = planted
    shutil.copytree(root / "out", tmp_path / "out")
    rc, stdout, stderr = run_main("atlas", truth.manifest, "--out", tmp_path / "out", "-q")
    assert rc == 0, stderr
    lines = stdout.splitlines()
    assert lines[:3] == ["families: 4 pairs", "flow: 4 pairs", "compare: 1 pairs"]
    # planted: 20 of 32 features carried at each layer from 20 distinct parents, so 12 of 32 end
    assert "flow l2-w32 (layer 2, from l1-w32): born  37.5%, carried  62.5%, ending  37.5%" in lines
    assert "flow l1-w32 (layer 1, from -): born   -  , carried   -  , ending  37.5%" in lines
    assert "pairs: 9 reused, 0 computed" in lines


@pytest.mark.parametrize("point", ["results-written", "mid-swap"])
def test_a_killed_rerun_leaves_the_earlier_result_or_nothing(planted, tmp_path, point):
    import os
    import signal
    import subprocess
    import sys
    import time

    from featgraph.io.files import parse_temp_name

    truth, _result, root = planted
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    before = _digests(out)
    marker = tmp_path / "marker"
    env = {**os.environ, "FEATGRAPH_FAULT_AT": point, "FEATGRAPH_FAULT_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "featgraph.cli.main", "atlas", str(truth.manifest), "--out",
                             str(out), "-q", "--tau", "0.75"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # another tau: every pair is recomputed, then the swap
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    marker.unlink()
    if point == "results-written":
        assert _digests(out) == before  # the earlier result, untouched
    else:
        assert not out.exists()  # between the two renames: the earlier result waits under a stale .old name
    strays = [n for n in os.listdir(tmp_path) if n != "out"]  # the killed run's temporary (or the earlier .old)
    assert strays and all(parse_temp_name(n) for n in strays), strays
    again = _run(truth.manifest, out)
    assert again.reused == len(PLAN)  # mid-swap: read from the earlier result's stale .old folder
    assert _digests(out, ("summary.json",)) == {k: v for k, v in before.items() if k != "summary.json"}
    assert os.listdir(tmp_path) == ["out"]  # the stale temporaries of the killed run are gone


def test_atlas_on_one_ladder_gives_the_families_commands_tables(tmp_path, small_ladder):
    from featgraph.config import FamiliesConfig
    from featgraph.families import run_families

    from ..conftest import write_ladder
    from .planted import write_manifest

    decoders, _ = small_ladder  # widths 48, 96, 192 with near-tau pairs (tau +- 1e-6)
    ladder = write_ladder(tmp_path, decoders)
    fam = run_families(FamiliesConfig(saes=(str(ladder),), out=str(tmp_path / "fam"), progress=False))
    names = [f"sae{W.shape[0]}" for W in decoders]
    write_manifest(tmp_path / "m.toml", [{"path": f"ladder/{n}", "site": "s"} for n in names])
    atlas = _run(tmp_path / "m.toml", tmp_path / "atlas")
    assert [(p.a, p.b) for p in atlas.plan] == list(zip(names[:-1], names[1:], strict=True))
    cols = ["feature", "max_cos", "parent", "novel", "family"]
    for a, b in zip(names[:-1], names[1:], strict=True):
        t = atlas.tables[f"{a}~{b}"]
        pair = (pl.col("small") == a) & (pl.col("large") == b)
        assert fam.edges.filter(pair).drop("small", "large").equals(t["edges.parquet"])
        assert fam.families.filter(pair).drop("small", "large").equals(t["families.parquet"])
        assert fam.features.filter(pl.col("sae") == b).select(cols).equals(t["features.parquet"].select(cols))
