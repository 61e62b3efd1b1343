"""featgraph compare: planted cases against float64 brute force, activation metrics against dense numpy, the
outputs (tables, graph files, labels), byte-identical reruns and the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import polars as pl
import pytest
import torch

import featgraph
from featgraph.compare.assignment import assign_dense
from featgraph.compare.config import CompareConfig
from featgraph.compare.run import run_compare
from featgraph.compare.tables import EDGES_SCHEMA, FEATURES_SCHEMA, PAIRS_SCHEMA
from featgraph.matching import normalize_rows
from featgraph.synthetic import planted_ladder
from tests.builders import projection_sae, store_of
from tests.conftest import run_main, tiny_sae
from tests.oracles import brute_pair, union_find_families

from .test_act_similarity import dense_reference

TAU = 0.7


def _save(W: np.ndarray, folder, seed: int = 0):
    tiny_sae(W_dec=np.ascontiguousarray(W, np.float32), seed=seed).save(folder)
    return folder


def _planted_copy(n=60, d=24, extra=20, seed=0):
    """A, and B = a permuted, noised copy of A's rows (rescaled) plus ``extra`` random rows."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d)).astype(np.float32)
    perm = rng.permutation(n)
    noised = A[perm] * rng.uniform(0.5, 2.0, (n, 1)) + 0.05 * rng.standard_normal((n, d))
    B = np.concatenate([noised, rng.standard_normal((extra, d))]).astype(np.float32)
    shuffle = rng.permutation(n + extra)  # the copies are not the first rows of B
    return A, B[shuffle], perm, shuffle


def test_planted_permuted_noised_copy_is_recovered_exactly(tmp_path):
    A, B, perm, shuffle = _planted_copy()
    a, b = _save(A, tmp_path / "a"), _save(B, tmp_path / "b", seed=1)
    rc, out, err = run_main("compare", a, b, "--out", tmp_path / "out", "-q")
    assert rc == 0, err
    pairs = pl.read_parquet(tmp_path / "out" / "pairs.parquet")
    # B's row shuffle[k] came from noised[k] = A[perm[k]] (k < n): so A feature perm[k] <-> B feature where(shuffle==k)
    where = np.argsort(shuffle)
    want = np.empty(60, np.int64)
    want[perm] = where[:60]
    assert pairs["a_feature"].to_list() == list(range(60))
    assert np.array_equal(pairs["b_feature"].to_numpy(), want)
    assert (pairs["cos"].to_numpy() > 0.95).all()
    feats = pl.read_parquet(tmp_path / "out" / "features.parquet")
    assert feats.filter(pl.col("side") == "A")["status"].unique().to_list() == ["shared"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["results"]["assignment"]["shared_share"] == 1.0
    # families: every copy is one (random extra rows of B may join one above tau: count those from brute force)
    ref = brute_pair(B, A, TAU)  # per A row against B; edges (edge_large = A, edge_small = B)
    fams = union_find_families(ref.edge_large, ref.edge_small)
    copies = sum(len(s_) == 1 and len(l_) == 1 for s_, l_ in fams)
    assert 55 <= summary["results"]["families_by_kind"]["copy"] == copies
    assert "PW-MCC" in out and "shared share 100.0%" in out


def test_both_directions_lost_novel_assignment_and_families_equal_brute_force(tmp_path):
    (S, L), _ = planted_ladder([48, 96], 24, seed=3, near_tau=TAU, n_near_tau=4)
    for A, B in ((L, S), (S, L)):  # the wider SAE on either side
        a, b = _save(A, tmp_path / f"a{len(A)}"), _save(B, tmp_path / f"b{len(B)}", seed=1)
        out = tmp_path / f"out{len(A)}"
        res = run_compare(CompareConfig(a=str(a), b=str(b), out=str(out), tau=TAU, plots=False, progress=False))
        ab, ba = brute_pair(B, A, TAU), brute_pair(A, B, TAU)  # per A row: max over B; per B row: max over A
        feats = pl.read_parquet(out / "features.parquet")
        fa, fb = feats.filter(pl.col("side") == "A"), feats.filter(pl.col("side") == "B")
        np.testing.assert_allclose(fa["max_cos"].to_numpy(), ab.max_cos, rtol=0, atol=1e-6)
        assert np.array_equal(fa["argmax"].to_numpy(), ab.argmax)
        assert np.array_equal(fb["argmax"].to_numpy(), ba.argmax)
        assert set(np.flatnonzero(fa["status"].to_numpy() == "lost")) == set(np.flatnonzero(ab.max_cos <= TAU))
        assert set(np.flatnonzero(fb["status"].to_numpy() == "novel")) == set(np.flatnonzero(ba.max_cos <= TAU))
        assert set(res.analysis.lost()) == set(np.flatnonzero(ab.max_cos <= TAU))
        # the assignment's total equals scipy's dense Hungarian on the float64 cos of the same float32 unit rows
        ref = assign_dense(normalize_rows(A)[0], normalize_rows(B)[0])
        pairs = pl.read_parquet(out / "pairs.parquet")
        assert pairs.height == min(len(A), len(B))
        assert pairs["cos"].sum() == pytest.approx(ref.total, abs=1e-9)
        assert len(set(pairs["b_feature"].to_list())) == pairs.height
        s = json.loads((out / "summary.json").read_text())["results"]["assignment"]
        assert s["pw_mcc"] == pytest.approx(ref.total / pairs.height, abs=1e-12)
        assert s["shared_share"] == pytest.approx(float(np.mean(pairs["cos"].to_numpy() > TAU)))
        # edges and split-aware families: the brute-force edges and a pure-Python union-find
        edges = pl.read_parquet(out / "edges.parquet")
        assert sorted(zip(edges["a_feature"], edges["b_feature"], strict=True)) == sorted(
            zip(ab.edge_large.tolist(), ab.edge_small.tolist(), strict=True))
        fams = pl.read_parquet(out / "families.parquet")
        got = [(tuple(r["a_features"]), tuple(r["b_features"])) for r in fams.iter_rows(named=True)]
        assert got == union_find_families(ab.edge_large, ab.edge_small)
        assert feats.schema == FEATURES_SCHEMA and edges.schema == EDGES_SCHEMA and pairs.schema == PAIRS_SCHEMA


def test_activation_similarities_of_pairs_equal_dense_numpy(tmp_path):
    (S, L), _ = planted_ladder([24, 40], 16, seed=5)
    sa, sb = projection_sae(S, seed=1, bias=0.2), projection_sae(L, seed=2, bias=0.2)
    sa.save(tmp_path / "a")
    sb.save(tmp_path / "b")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1500, 16, generator=g) * 1.5
    store_of(x, tmp_path / "store", shard=400)
    res = run_compare(CompareConfig(a=str(tmp_path / "a"), b=str(tmp_path / "b"), out=str(tmp_path / "out"),
                                    acts=str(tmp_path / "store"), batch_size=256, progress=False))
    with torch.inference_mode():
        fa, fb = sa.encode(x).numpy(), sb.encode(x).numpy()
    ref = dense_reference(fa, fb)
    co = (fa != 0).astype(np.int64).T @ (fb != 0).astype(np.int64)
    for name in ("pairs", "edges"):
        t = pl.read_parquet(tmp_path / "out" / f"{name}.parquet")
        i, j = t["a_feature"].to_numpy(), t["b_feature"].to_numpy()
        assert np.array_equal(t["co_count"].to_numpy(), co[i, j])
        for m in ("jaccard", "pearson", "masked_cos"):
            got = t[m].fill_null(np.nan).to_numpy()
            np.testing.assert_allclose(got, ref[m][i, j], rtol=0, atol=1e-9, equal_nan=True, err_msg=f"{name} {m}")
    feats = pl.read_parquet(tmp_path / "out" / "features.parquet")
    assert np.array_equal(feats["n_active"].to_numpy(), np.concatenate([(fa != 0).sum(0), (fb != 0).sum(0)]))
    act = res.summary["results"]["activations"]
    assert act["n_tokens"] == 1500 and act["coactive_pairs"] == int((co > 0).sum())
    assert (tmp_path / "out" / "decoder_vs_activation.png").stat().st_size > 1000
    assert res.summary["store"]["n_tokens_used"] == 1500


def test_graph_files_labels_and_byte_identical_reruns(tmp_path):
    A, B, _, _ = _planted_copy(n=30, extra=10, seed=2)
    a, b = _save(A, tmp_path / "sae_a"), _save(B, tmp_path / "sae_b", seed=1)
    ex = tmp_path / "explain"
    ex.mkdir()
    pl.DataFrame({"sae": ["sae_a", "sae_a", "sae_b", "other"], "feature": pl.Series([0, 3, 5, 1], dtype=pl.Int32),
                  "label": ["Monday|Tuesday", "", "def|class", "x"]}).write_parquet(ex / "feature_stats.parquet")
    store_of(torch.randn(400, 24, generator=torch.Generator().manual_seed(1)), tmp_path / "store")
    for out in ("o1", "o2"):
        rc, _, err = run_main("compare", a, b, "--out", tmp_path / out, "--examples", ex, "--acts", tmp_path / "store",
                              "-q")
        assert rc == 0, err
    files = sorted(p.name for p in (tmp_path / "o1").iterdir())
    assert "decoder_vs_activation.png" in files
    assert files == sorted(p.name for p in (tmp_path / "o2").iterdir())
    for f in files:
        assert (tmp_path / "o1" / f).read_bytes() == (tmp_path / "o2" / f).read_bytes(), f
    o = tmp_path / "o1"
    feats = pl.read_parquet(o / "features.parquet")
    lab = dict(zip(zip(feats["sae"], feats["feature"], strict=True), feats["label"], strict=True))
    assert lab["sae_a", 0] == "Monday|Tuesday" and lab["sae_b", 5] == "def|class" and lab["sae_a", 1] == ""
    gml = nx.read_graphml(o / "graph.graphml")
    assert gml.nodes["sae_a:0"]["label"] == "Monday|Tuesday" and gml.number_of_nodes() == 30 + 40
    data = json.loads((o / "graph.json").read_text())
    g = nx.node_link_graph(data, edges="edges")
    assert set(g.nodes) == set(gml.nodes) and g.number_of_edges() == gml.number_of_edges()
    pairs = pl.read_parquet(o / "pairs.parquet")
    for i, j in zip(pairs["a_feature"], pairs["b_feature"], strict=True):  # every assigned pair is an edge
        assert g.edges[f"sae_a:{i}", f"sae_b:{j}"]["assigned"]
    # Cytoscape.js elements: unique ids, every edge's ends are nodes, no reserved "parent" key
    ids = [n["data"]["id"] for n in data["elements"]["nodes"]]
    assert len(ids) == len(set(ids)) == 70 and all("parent" not in n["data"] for n in data["elements"]["nodes"])
    assert all(e["data"]["source"] in g and e["data"]["target"] in g for e in data["elements"]["edges"])
    assert "NaN" not in (o / "graph.json").read_text()


def test_python_api_callable_package_and_keywords(tmp_path):
    A, B, _, _ = _planted_copy(n=20, extra=4, seed=4)
    a, b = _save(A, tmp_path / "x"), _save(B, tmp_path / "y", seed=1)
    r1 = featgraph.compare(featgraph.CompareConfig(a=str(a), b=str(b), out=str(tmp_path / "o1"), progress=False))
    r2 = featgraph.compare(a=str(a), b=str(b), out=str(tmp_path / "o2"), name_a="first", name_b="second",
                           plots=False, progress=False)
    assert r1.summary["results"] == r2.summary["results"]
    assert r2.tables["features"]["sae"].unique(maintain_order=True).to_list() == ["first", "second"]
    assert r1.summary["saes"][0]["fingerprint"] != r1.summary["saes"][1]["fingerprint"]
    with pytest.raises(TypeError):
        featgraph.compare(CompareConfig(a=str(a), b=str(b), out=str(tmp_path / "o3")), tau=0.5)
    # any supported format: B as a SAELens folder gives the same comparison
    featgraph.save_saelens(tiny_sae(W_dec=B, seed=1), tmp_path / "y_saelens")
    r3 = featgraph.compare(a=str(a), b=str(tmp_path / "y_saelens"), out=str(tmp_path / "o4"), name_b="y",
                           plots=False, progress=False)
    assert r3.summary["saes"][1]["format"] == "saelens"
    assert r3.summary["results"] == r1.summary["results"]
    assert r3.summary["saes"][1]["fingerprint"] == r1.summary["saes"][1]["fingerprint"]


def test_zero_rows_are_neither_lost_nor_novel_and_tokens_limits_the_pass(tmp_path):
    rng = np.random.default_rng(6)
    A, B = rng.standard_normal((12, 8)).astype(np.float32), rng.standard_normal((16, 8)).astype(np.float32)
    A[3] = 0.0
    B[[0, 5]] = 0.0
    a, b = _save(A, tmp_path / "a"), _save(B, tmp_path / "b", seed=1)
    store_of(torch.randn(300, 8), tmp_path / "store")
    rc, text, err = run_main("compare", a, b, "--out", tmp_path / "o", "--acts", tmp_path / "store", "--tokens", 100,
                             "--no-plots", "-q")
    assert rc == 0, err
    feats = pl.read_parquet(tmp_path / "o" / "features.parquet")
    zero = feats.filter(pl.col("status") == "zero")
    assert list(zip(zero["side"], zero["feature"], strict=True)) == [("A", 3), ("B", 0), ("B", 5)]
    assert zero["max_cos"].null_count() == 3 and zero["zero_norm"].all()
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    r = s["results"]
    assert r["zero_rows_a"] == 1 and r["zero_rows_b"] == 2
    assert r["a_to_b"]["lost"] + r["a_to_b"]["shared"] == 11 and r["b_to_a"]["novel"] + r["b_to_a"]["shared"] == 14
    assert s["store"]["n_tokens_used"] == 100 == r["activations"]["n_tokens"] and s["config"]["n_tokens"] == 100
    g = nx.read_graphml(tmp_path / "o" / "graph.graphml")
    assert g.nodes["a:3"]["status"] == "zero" and g.nodes["a:3"]["max_cos"] == -2.0
    assert "Spearman over the assigned pairs" in text
    assert not list((tmp_path / "o").glob("*.png"))  # --no-plots


# The Cytoscape.js build the explorer page embeds (featgraph/explorer/vendor): the real library, no npm install needed.
CYTOSCAPE_JS = Path(__file__).resolve().parents[2] / "featgraph" / "explorer" / "vendor" / "cytoscape.min.js"


def _cytoscape_node() -> bool:
    import shutil

    return shutil.which("node") is not None and CYTOSCAPE_JS.is_file()


@pytest.mark.skipif(not _cytoscape_node(), reason="needs node (and the vendored cytoscape.min.js)")
def test_graph_json_loads_in_cytoscape_js(tmp_path):
    """The real Cytoscape.js (headless, in node) reads graph.json's elements: every node, edge and attribute."""
    import subprocess

    A, B, _, _ = _planted_copy(n=15, extra=5, seed=8)
    a, b = _save(A, tmp_path / "a"), _save(B, tmp_path / "b", seed=1)
    res = run_compare(CompareConfig(a=str(a), b=str(b), out=str(tmp_path / "o"), plots=False, progress=False))
    js = ("const cy = require(process.argv[2])({headless: true, elements: JSON.parse(require('fs').readFileSync("
          "process.argv[1], 'utf8')).elements}); console.log(JSON.stringify({n: cy.nodes().length, e: cy.edges()"
          ".length, assigned: cy.edges().filter(x => x.data('assigned')).length, status: cy.getElementById('a:0')"
          ".data('status')}));")
    r = subprocess.run(["node", "-e", js, str(tmp_path / "o" / "graph.json"), str(CYTOSCAPE_JS)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == {"n": 35, "e": res.graph.number_of_edges(), "assigned": 15,
                   "status": res.graph.nodes["a:0"]["status"]}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_comparison_equals_cpu(tmp_path):
    """--device cuda: the same edges, lost/novel sets and families, and the same optimal assignment total."""
    (S, L), _ = planted_ladder([48, 96], 24, seed=9, near_tau=TAU, n_near_tau=4)
    a, b = _save(S, tmp_path / "a"), _save(L, tmp_path / "b", seed=1)
    res = {dev: run_compare(CompareConfig(a=str(a), b=str(b), out=str(tmp_path / dev), device=dev, plots=False,
                                          progress=False)) for dev in ("cpu", "cuda")}
    cpu, gpu = res["cpu"], res["cuda"]
    assert cpu.tables["families"].equals(gpu.tables["families"])
    for name, cos_cols in (("edges", ["cos"]), ("features", ["max_cos", "assigned", "assigned_cos"])):
        c, g = cpu.tables[name], gpu.tables[name]
        assert c.drop(cos_cols).equals(g.drop(cos_cols)), name  # ids, statuses, families: exactly
        np.testing.assert_allclose(c[cos_cols[0]].to_numpy(), g[cos_cols[0]].to_numpy(), rtol=0, atol=1e-12)
    assert gpu.analysis.assignment.total == pytest.approx(cpu.analysis.assignment.total, abs=1e-9)
