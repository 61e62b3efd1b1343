"""The families pipeline end to end (in-memory ladders, real matcher, real Parquet/GraphML files) against the
float64 brute force and union-find oracle of test_graph.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from featgraph.errors import ConfigError
from featgraph.families import SUMMARY_KIND, check_out_dir, check_tau, run_families
from featgraph.graph import node_id
from featgraph.graphml import read_graphml
from featgraph.ladder import Ladder, LadderEntry
from featgraph.synthetic import planted_ladder
from featgraph.tables import EDGES_SCHEMA, FAMILIES_SCHEMA, FEATURES_SCHEMA, read_table
from tests.oracles import brute_pair, union_find_families

TAU = 0.7


def make_ladder(decoders, names=None) -> Ladder:
    names = names or [f"sae{W.shape[0]}" for W in decoders]
    return Ladder(
        [LadderEntry(n, Path(f"/mem/{n}"), "featgraph", W) for n, W in zip(names, decoders, strict=True)]
    )


@pytest.fixture
def planted():
    """Widths 48, 96, 192 at d=24 with planted copies, splits, novel and near-tau (tau +- 1e-6) features; two
    all-zero rows in the middle SAE."""
    decoders, _ = planted_ladder([48, 96, 192], 24, seed=7, near_tau=TAU, n_near_tau=4)
    decoders[1][[3, 50]] = 0.0
    return decoders


def read_outputs(out: Path):
    return (
        read_table(out / "features.parquet", FEATURES_SCHEMA),
        read_table(out / "edges.parquet", EDGES_SCHEMA),
        read_table(out / "families.parquet", FAMILIES_SCHEMA),
        json.loads((out / "summary.json").read_text()),
    )


@pytest.mark.parametrize("method", ["auto", "fp32", "bf16", "faiss", "brute64"])
def test_outputs_equal_the_float64_brute_force(tmp_path, planted, method):
    res = run_families(make_ladder(planted), tmp_path / "out", tau=TAU, method=method, progress=False)
    features, edges, families, summary = read_outputs(tmp_path / "out")
    # every file written is listed, and featgraph's manifest (featgraph.io.output) says so too
    manifest = ".featgraph-manifest.json"
    assert sorted([*res.files, manifest]) == sorted(p.name for p in (tmp_path / "out").iterdir())
    assert json.loads((tmp_path / "out" / manifest).read_text())["files"] == sorted(res.files)
    names = ["sae48", "sae96", "sae192"]
    near_tau_checked = 0
    for k, (small, large) in enumerate(zip(names[:-1], names[1:], strict=True)):
        want = brute_pair(planted[k], planted[k + 1], TAU)
        # identical edge sets, cosines within 1e-6
        e = edges.filter((pl.col("small") == small) & (pl.col("large") == large))
        assert e["small_feature"].to_list() == want.edge_small.tolist()
        assert e["large_feature"].to_list() == want.edge_large.tolist()
        np.testing.assert_allclose(e["cos"].to_numpy(), want.edge_cos, atol=1e-6, rtol=0)
        # max cos within 1e-6, same argmax, identical novel sets; zero rows have none of them
        f = features.filter(pl.col("sae") == large).sort("feature")
        zero = np.linalg.norm(planted[k + 1], axis=1) == 0
        assert f["zero_norm"].to_list() == zero.tolist()
        defined = ~zero
        np.testing.assert_allclose(f["max_cos"].to_numpy()[defined], want.max_cos[defined], atol=1e-6, rtol=0)
        assert f["parent"].to_numpy()[defined].tolist() == want.argmax[defined].tolist()
        assert set(np.flatnonzero(f["novel"].fill_null(False).to_numpy())) == set(
            np.flatnonzero((want.max_cos <= TAU) & defined)
        )
        assert (
            f.filter(pl.col("zero_norm"))[["max_cos", "parent", "novel", "family"]].null_count().row(0)
            == (int(zero.sum()),) * 4
        )
        # the near-tau features (|max cos - tau| < 1e-5) are decided as the brute force decides them
        near = np.flatnonzero(np.abs(want.max_cos - TAU) < 1e-5)
        near_tau_checked += near.size
        assert [f["novel"][int(j)] for j in near] == [bool(want.max_cos[j] <= TAU) for j in near]
        # identical families, ids ordered by smallest small feature
        fam = families.filter((pl.col("small") == small) & (pl.col("large") == large))
        got = list(
            zip(
                map(tuple, fam["small_features"].to_list()),
                map(tuple, fam["large_features"].to_list()),
                strict=True,
            )
        )
        assert got == union_find_families(want.edge_small, want.edge_large)
        assert fam["family"].to_list() == list(range(fam.height))
        # family columns agree with the families table
        for row in fam.iter_rows(named=True):
            assert f["family"].gather(row["large_features"]).to_list() == [row["family"]] * row["n_large"]
        p = summary["pairs"][k]
        assert (p["small"], p["large"], p["features"]) == (small, large, len(planted[k + 1]))
        assert p["novel"] == int(((want.max_cos <= TAU) & defined).sum())
        assert p["reconstruction"] == int(((want.max_cos > TAU) & defined).sum())
        assert p["edges"] == want.edge_cos.size and p["families"] == fam.height
        assert p["families_by_kind"] == {
            k_: int((fam["kind"] == k_).sum()) for k_ in ("copy", "split", "merge", "n:m")
        }
    assert near_tau_checked >= 4  # the planted near-tau children really sit at tau +- 1e-6
    smallest = features.filter(pl.col("sae") == "sae48")
    assert smallest[["max_cos", "parent", "novel", "family"]].null_count().row(0) == (48,) * 4
    assert summary["kind"] == SUMMARY_KIND
    assert [s["zero_norm_rows"] for s in summary["saes"]] == [0, 2, 0]
    assert summary["saes"][1]["zero_norm_first"] == [3, 50]
    assert summary["config"]["tau"] == TAU and summary["config"]["method"] == method
    assert summary["config"]["names"] == names and summary["config"]["d_in"] == 24


def test_graphml_of_a_run_reads_back_with_every_attribute(tmp_path, planted):
    res = run_families(make_ladder(planted), tmp_path / "out", progress=False)
    g = read_graphml(tmp_path / "out" / "graph.graphml")
    assert g.number_of_nodes() == res.features.height and g.number_of_edges() == res.edges.height
    for row in res.features.iter_rows(named=True):
        node = g.nodes[node_id(row["sae"], row["feature"])]
        assert {k: node[k] for k in row} == row
        assert node["has_parent"] == (row["max_cos"] is not None)
    for row in res.edges.iter_rows(named=True):
        data = g.edges[
            node_id(row["small"], row["small_feature"]), node_id(row["large"], row["large_feature"])
        ]
        assert data == {"cos": row["cos"], "family": row["family"]}


def test_two_runs_are_byte_identical(tmp_path, planted):
    for name in ("a", "b"):
        run_families(make_ladder([W.copy() for W in planted]), tmp_path / name, plots=True, progress=False)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [
        ".featgraph-manifest.json",
        "config.json",
        "edges.parquet",
        "families.parquet",
        "features.parquet",
        "graph.graphml",
        "max_cos_hist.png",
        "summary.json",
    ]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_failed_run_leaves_nothing_and_keeps_the_previous_output(tmp_path, planted, monkeypatch):
    import featgraph.families as fam_mod

    out = tmp_path / "out"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(fam_mod, "write_graphml", boom)
    with pytest.raises(OSError, match="disk full"):
        run_families(make_ladder(planted), out, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary folder

    monkeypatch.undo()
    run_families(make_ladder(planted), out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(fam_mod, "write_graphml", boom)
    with pytest.raises(OSError):
        run_families(make_ladder(planted), out, tau=0.8, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_out_dir_must_be_new_empty_or_a_previous_run(tmp_path, planted):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    with pytest.raises(
        ConfigError, match=r"mine: exists, is not empty \(e.g. notes.txt\) and was not written by featgraph"
    ):
        run_families(make_ladder(planted), keep, progress=False)
    assert (keep / "notes.txt").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="file: exists and is not a folder"):
        check_out_dir(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty") == (tmp_path / "empty").resolve()
    run_families(make_ladder(planted), tmp_path / "prev", progress=False)
    res = run_families(make_ladder(planted), tmp_path / "prev", tau=0.9, progress=False)  # replaces it
    assert json.loads((tmp_path / "prev" / "summary.json").read_text())["config"]["tau"] == 0.9
    assert res.summary["config"]["tau"] == 0.9


@pytest.mark.parametrize("tau", [0, 1, 0.0, 1.0, -0.1, 1.5, math.nan, math.inf, True, "0.5", None])
def test_tau_outside_the_open_unit_interval_is_refused(tmp_path, planted, tau):
    with pytest.raises(ConfigError, match=r"tau must be a number in \(0, 1\), got"):
        run_families(make_ladder(planted), tmp_path / "out", tau=tau, progress=False)
    assert not (tmp_path / "out").exists()


def test_tau_changes_the_edges_as_the_brute_force_does(tmp_path, planted):
    assert check_tau(0.5) == 0.5
    res = run_families(make_ladder(planted), tmp_path / "out", tau=0.5, progress=False)
    want = brute_pair(planted[0], planted[1], 0.5)
    e = res.edges.filter(pl.col("small") == "sae48")
    assert e.height == want.edge_cos.size > brute_pair(planted[0], planted[1], TAU).edge_cos.size


def test_a_single_sae_is_refused(tmp_path, planted):
    with pytest.raises(ConfigError, match="at least 2 SAEs"):
        run_families(make_ladder(planted[:1]), tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="names apply only"):
        run_families(make_ladder(planted), tmp_path / "out", names=["a", "b", "c"], progress=False)


def test_histogram_plots_draw_on_a_given_axes(planted, tmp_path):
    from matplotlib.figure import Figure

    from featgraph.plots import max_cos_histogram, max_cos_histograms

    res = run_families(make_ladder(planted), tmp_path / "out", progress=False)
    fig = Figure()
    ax = fig.add_subplot()
    assert max_cos_histogram(res.features, "sae96", tau=TAU, small="sae48", ax=ax) is fig
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    n_novel = int(res.features.filter(pl.col("sae") == "sae96")["novel"].sum())
    assert labels[0].startswith(f"novel (<= 0.7): {n_novel} (")
    assert "2 zero rows left out" in ax.get_title()
    grid = max_cos_histograms(res.features, tau=TAU)
    assert sum(a.get_visible() for a in grid.axes) == 2
    with pytest.raises(ValueError, match="no features of SAE 'nope'"):
        max_cos_histogram(res.features, "nope", tau=TAU)


def test_quickstart_example_runs(tmp_path, monkeypatch, capsys):
    import importlib.util
    import sys
    import tempfile

    path = Path(__file__).resolve().parents[2] / "examples" / "families_quickstart.py"
    spec = importlib.util.spec_from_file_location("families_quickstart", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [str(path)])
    example.main()
    out = capsys.readouterr().out
    assert "toy-256 -> toy-512: 384/512 novel" in out
    assert "features over 3 widths" in out
    assert len(list(tmp_path.glob("featgraph-families-*/families/graph.graphml"))) == 1


def test_splitting_trees_equal_union_find_over_the_whole_ladder(tmp_path, planted):
    res = run_families(make_ladder(planted), tmp_path / "out", progress=False)
    # brute-force edges of both pairs as one graph on (sae index, feature) nodes, components by union-find
    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for k in range(2):
        m = brute_pair(planted[k], planted[k + 1], TAU)
        for s, l_ in zip(m.edge_small, m.edge_large, strict=True):
            parent[find((k + 1, int(l_)))] = find((k, int(s)))
    members: dict = {}
    for node in sorted(parent):  # ladder order: (sae index, feature)
        members.setdefault(find(node), []).append(node)
    want_trees = sorted(members.values())  # each sorted; ordered by first node
    by_tree: dict = {}
    sae_index = {n: i for i, n in enumerate(res.names)}
    for row in res.features.filter(pl.col("tree").is_not_null()).iter_rows(named=True):
        by_tree.setdefault(row["tree"], []).append((sae_index[row["sae"]], row["feature"]))
    assert [by_tree[t] for t in sorted(by_tree)] == want_trees
    trees = res.summary["trees"]
    assert trees["count"] == len(want_trees)
    spans = {}
    for t in want_trees:
        w = len({i for i, _ in t})
        spans[str(w)] = spans.get(str(w), 0) + 1
    assert trees["by_widths_spanned"] == spans and "3" in spans
    biggest = max(want_trees, key=len)
    assert trees["largest"]["features"] == len(biggest)
    assert trees["largest"]["first_feature"] == f"{res.names[biggest[0][0]]}:{biggest[0][1]}"
