"""The families run's fast paths keep its outputs: GraphML written straight from the tables (same bytes as the
networkx graph's file), column-wise families table, blockwise normalisation; and ``--examples`` labels."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from featgraph.families import run_families
from featgraph.graph import Family, ladder_graph
from featgraph.graphml import LadderTables, read_graphml, write_graphml
from featgraph.synthetic import planted_ladder
from featgraph.tables import FAMILIES_SCHEMA, families_table
from tests.conftest import invoke, write_ladder
from tests.hostile import assert_refused


@pytest.fixture(scope="module")
def awkward_run(tmp_path_factory):
    """A run on SAEs whose names need XML escaping (&, <, both quote kinds), with a zero decoder row."""
    tmp = tmp_path_factory.mktemp("awkward")
    decoders, _ = planted_ladder([40, 80, 160], 16, seed=3, near_tau=0.7, n_near_tau=4)
    decoders[1][5] = 0
    root = write_ladder(tmp, decoders, names=["a&<b>", 'q"x', "s'3"])
    return run_families([root], tmp / "out", progress=False)


def test_graphml_from_the_tables_is_the_graphs_file_byte_for_byte(awkward_run, tmp_path):
    r = awkward_run
    via_graph = write_graphml(ladder_graph(r.features, r.edges, tau=r.tau), tmp_path / "g.graphml").read_bytes()
    assert (r.out_dir / "graph.graphml").read_bytes() == via_graph
    assert r.edges.height > 10 and r.features["zero_norm"].any()
    # an extra string column (a label, nulls included) is a node attribute on both paths, "" where null
    labels = pl.Series("label", [None if i % 3 == 0 else f"tok<{i}>&" for i in range(r.features.height)])
    feats = r.features.with_columns(labels)
    a = write_graphml(LadderTables(feats, r.edges, r.tau), tmp_path / "a.graphml").read_bytes()
    b = write_graphml(ladder_graph(feats, r.edges, tau=r.tau), tmp_path / "b.graphml").read_bytes()
    assert a == b and b"tok&lt;1&gt;&amp;" in a
    g = read_graphml(tmp_path / "a.graphml")
    assert g.nodes["a&<b>:1"]["label"] == "tok<1>&" and g.nodes["a&<b>:0"]["label"] == ""
    # no edges at all: no edge keys, same bytes
    none = r.edges.clear()
    c = write_graphml(LadderTables(r.features, none, r.tau), tmp_path / "c.graphml").read_bytes()
    assert c == write_graphml(ladder_graph(r.features, none, tau=r.tau), tmp_path / "d.graphml").read_bytes()
    assert b'for="edge"' not in c
    # a non-string extra column cannot silently become a node attribute
    with pytest.raises(ValueError, match="'score'"):
        write_graphml(LadderTables(r.features.with_columns(pl.lit(1.5).alias("score")), r.edges, r.tau),
                      tmp_path / "e.graphml")


def test_lazy_graph_and_column_wise_families_table_match_the_row_wise_ones(awkward_run):
    r = awkward_run
    assert r.graph.number_of_nodes() == r.features.height and r.graph.number_of_edges() == r.edges.height
    rows = [{"small": r.names[k], "large": r.names[k + 1], "family": f.family, "kind": f.kind,
             "small_features": f.small_features.tolist(), "large_features": f.large_features.tolist(),
             "n_small": len(f.small_features), "n_large": len(f.large_features), "n_edges": f.n_edges}
            for k, fams in enumerate(r.pair_families) for f in fams]
    assert r.families.equals(pl.DataFrame(rows, schema=FAMILIES_SCHEMA))
    assert set(r.families["kind"]) >= {"copy", "split"}
    # every kind, including merges and n:m, from hand-made families
    fams = [Family(0, np.array([0]), np.array([1]), 1), Family(1, np.array([1]), np.array([2, 3]), 2),
            Family(2, np.array([2, 3]), np.array([4]), 2), Family(3, np.array([4, 5]), np.array([5, 6]), 3)]
    t = families_table(["s", "l"], [fams, []])
    assert t["kind"].to_list() == ["copy", "split", "merge", "n:m"]
    assert t["large_features"].to_list() == [[1], [2, 3], [4], [5, 6]]
    assert families_table(["s", "l"], [[]]).height == 0


def test_blockwise_normalisation_gives_the_same_rows(monkeypatch, tmp_path):
    import featgraph.families as fam_mod

    decoders, _ = planted_ladder([24, 48], 8, seed=4)
    root = write_ladder(tmp_path, decoders)
    whole = run_families([root], tmp_path / "whole", progress=False)
    monkeypatch.setattr(fam_mod, "_NORM_ROWS", 5)  # blocks that do not divide the widths
    blocks = run_families([root], tmp_path / "blocks", progress=False)
    for name in ("features.parquet", "edges.parquet", "families.parquet", "graph.graphml"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "blocks" / name).read_bytes()
    assert whole.features["norm"].to_list() == blocks.features["norm"].to_list()


def _write_stats(folder, rows):
    """A tiny explain output: feature_stats.parquet with the columns read_labels needs."""
    folder.mkdir()
    pl.DataFrame(rows, schema={"sae": pl.String, "feature": pl.Int32, "label": pl.String},
                 orient="row").write_parquet(folder / "feature_stats.parquet")
    return folder


def test_examples_put_labels_on_features_and_graph_nodes(tmp_path):
    decoders, _ = planted_ladder([16, 32], 8, seed=5)
    root = write_ladder(tmp_path, decoders)
    ex = _write_stats(tmp_path / "explain", [("sae16", 0, "Monday|Tuesday"), ("sae16", 3, ""),
                                             ("sae32", 31, "<b>&"), ("other", 1, "x")])
    res = invoke("families", root, "--out", tmp_path / "out", "--examples", ex, "--quiet")
    assert res.exit_code == 0, res.output
    f = pl.read_parquet(tmp_path / "out" / "features.parquet")
    assert f.columns[-1] == "label" and f.height == 48
    lab = {(s, i): v for s, i, v in f.select("sae", "feature", "label").iter_rows()}
    assert lab["sae16", 0] == "Monday|Tuesday" and lab["sae16", 3] == "" and lab["sae32", 31] == "<b>&"
    assert lab["sae16", 1] is None and lab["sae32", 0] is None  # not labelled: null, not a guess
    g = read_graphml(tmp_path / "out" / "graph.graphml")
    assert g.nodes["sae16:0"]["label"] == "Monday|Tuesday" and g.nodes["sae32:31"]["label"] == "<b>&"
    assert g.nodes["sae16:1"]["label"] == ""
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["examples"] == str(ex)
    # without --examples: no label column, no label attribute, no examples key (default outputs unchanged)
    assert invoke("families", root, "--out", tmp_path / "plain", "--quiet").exit_code == 0
    assert "label" not in pl.read_parquet(tmp_path / "plain" / "features.parquet").columns
    assert b"label" not in (tmp_path / "plain" / "graph.graphml").read_bytes()
    assert "examples" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    for name in ("edges.parquet", "families.parquet"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()


def test_examples_refusals(tmp_path):
    decoders, _ = planted_ladder([16, 32], 8, seed=6)
    root = write_ladder(tmp_path, decoders)
    out = tmp_path / "out"
    assert_refused(["families", root, "--out", out, "--examples", tmp_path / "nowhere"], inputs=[root], out=out,
                   needles=("feature_stats.parquet", "not found"))
    other = _write_stats(tmp_path / "other", [("gpt2-768", 0, "x")])
    assert_refused(["families", root, "--out", out, "--examples", other], inputs=[root, other], out=out,
                   needles=("gpt2-768", "sae16"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "feature_stats.parquet").write_text("not parquet")
    assert_refused(["families", root, "--out", out, "--examples", broken], inputs=[root, broken], out=out,
                   needles=("feature_stats.parquet",))
    ok = _write_stats(tmp_path / "ok", [("sae16", 0, "x")])
    assert_refused(["families", root, "--out", ok / "inside", "--examples", ok], inputs=[root, ok],
                   needles=("--out",))
