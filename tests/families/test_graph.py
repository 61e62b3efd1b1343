"""graph.py against an independent float64 brute force and a pure-Python union-find (defined here).

The oracle helpers (``unit64``, ``brute_pair``, ``union_find_families``) live in ``tests/oracles.py``: they use
neither featgraph's matcher nor scipy nor networkx.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import polars as pl
import pytest

from featgraph.graph import (
    GRAPHML_SCHEMA,
    NO_COS,
    families_from_edges,
    families_from_graph,
    family_kind,
    family_of_features,
    kind_counts,
    ladder_graph,
    node_id,
    pair_graph,
    parse_node_id,
    splitting_tree,
    tree_depth,
)
from featgraph.graphml import read_graphml, write_graphml
from featgraph.synthetic import planted_ladder
from tests.oracles import brute_pair, oracle_tables, union_find_families

# -- families ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_families_match_union_find_on_planted_ladder(seed):
    decoders, _ = planted_ladder([40, 90, 200], 16, seed=seed, near_tau=0.7, n_near_tau=6)
    for a, b in zip(decoders[:-1], decoders[1:], strict=True):
        m = brute_pair(a, b, 0.7)
        want = union_find_families(m.edge_small, m.edge_large)
        got_scipy = families_from_edges(m.edge_small, m.edge_large)
        got_nx = families_from_graph(pair_graph("a", "b", m, n_small=len(a), tau=0.7))
        assert [f.key() for f in got_scipy] == want
        assert [f.key() for f in got_nx] == want
        assert [f.family for f in got_scipy] == list(range(len(want)))
        assert [f.n_edges for f in got_scipy] == [f.n_edges for f in got_nx]
        assert sum(f.n_edges for f in got_scipy) == len(m.edge_cos)
        assert len(want) > 5  # the planted ladder really has families to find


def test_planted_copies_and_splits_are_recovered_exactly():
    # d=64: random directions sit ~5 sigma below 0.7, so the only edges are the planted ones
    decoders, truths = planted_ladder([64, 160], 64, seed=3)
    m = brute_pair(decoders[0], decoders[1], 0.7)
    fams = families_from_edges(m.edge_small, m.edge_large)
    parent_of = truths[0].parent_of
    planted = {}
    for j, p in enumerate(parent_of):
        if p >= 0:
            planted.setdefault(int(p), []).append(j)
    assert {f.key() for f in fams} == {((p,), tuple(sorted(js))) for p, js in planted.items()}
    kinds = kind_counts(fams)
    assert kinds["copy"] == sum(len(js) == 1 for js in planted.values()) > 0
    assert kinds["split"] == sum(len(js) > 1 for js in planted.values()) > 0
    assert kinds["merge"] == kinds["n:m"] == 0
    np.testing.assert_array_equal(m.max_cos <= 0.7, parent_of < 0)


def test_kinds_and_deterministic_ids_on_a_hand_made_graph():
    # small 5 -- large 0 (copy); small 1 -- large 2,3 (split); small 2,3 -- large 1 (merge);
    # small 0,4 -- large 4,5 with 3 edges (n:m). Ids follow the smallest small feature.
    es = np.array([5, 1, 1, 2, 3, 0, 4, 4])
    el = np.array([0, 2, 3, 1, 1, 4, 4, 5])
    fams = families_from_edges(es, el)
    assert [(f.family, f.kind, f.key(), f.n_edges) for f in fams] == [
        (0, "n:m", ((0, 4), (4, 5)), 3),
        (1, "split", ((1,), (2, 3)), 2),
        (2, "merge", ((2, 3), (1,)), 2),
        (3, "copy", ((5,), (0,)), 1),
    ]
    # the edge order must not matter
    perm = np.random.default_rng(0).permutation(es.size)
    assert [f.key() for f in families_from_edges(es[perm], el[perm])] == [f.key() for f in fams]
    np.testing.assert_array_equal(family_of_features(fams, 7, "small"), [0, 1, 2, 2, 0, 3, -1])
    np.testing.assert_array_equal(family_of_features(fams, 6, "large"), [3, 2, 1, 1, 0, 0])
    assert families_from_edges(np.zeros(0, int), np.zeros(0, int)) == []
    assert [family_kind(1, 1), family_kind(1, 3), family_kind(2, 1), family_kind(2, 2)] == [
        "copy",
        "split",
        "merge",
        "n:m",
    ]


def test_pair_graph_schema():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((6, 5)), rng.standard_normal((9, 5))
    b[:3] = a[:3] + 0.01 * rng.standard_normal((3, 5))
    m = brute_pair(a, b, 0.7)
    g = pair_graph("S", "L", m, n_small=6, tau=0.7)
    assert g.number_of_nodes() == 15 and g.number_of_edges() == len(m.edge_cos) >= 3
    assert g.nodes["S:2"] == {"sae": "S", "width": 6, "feature": 2, "bipartite": 0}
    node = g.nodes["L:1"]
    assert (node["sae"], node["width"], node["feature"], node["bipartite"]) == ("L", 9, 1, 1)
    assert node["parent"] == m.argmax[1] == 1 and node["max_cos"] == pytest.approx(m.max_cos[1])
    assert node["novel"] is False
    assert g.edges["S:0", "L:0"]["cos"] == pytest.approx(m.max_cos[0])
    assert parse_node_id(node_id("a:b", 7)) == ("a:b", 7)


# -- ladder graph, trees, GraphML ----------------------------------------------------------------------------


def _ladder_graph(tau=0.7, zero_row=True):
    decoders, _ = planted_ladder([12, 30, 70], 16, seed=5)
    if zero_row:
        decoders[1][4] = 0.0  # an all-zero row: no direction, no parent, in no family
    names = ["s12", "s30", "s70"]
    matches, fams, features, edges = oracle_tables(decoders, names, tau)
    return ladder_graph(features, edges, tau=tau), features, edges, fams


def test_ladder_graph_matches_tables_and_encodes_missing_values():
    g, features, edges, fams = _ladder_graph()
    assert g.is_directed()
    assert list(g.nodes)[:2] == ["s12:0", "s12:1"] and g.number_of_nodes() == 12 + 30 + 70
    assert g.number_of_edges() == edges.height > 0
    smallest = g.nodes["s12:3"]
    assert smallest["has_parent"] is False and smallest["max_cos"] == NO_COS and smallest["parent"] == -1
    zero = g.nodes["s30:4"]
    assert zero["zero_norm"] is True and zero["has_parent"] is False and zero["norm"] == 0.0
    assert zero["family"] == -1 and zero["child_family"] == -1
    row = features.filter((pl.col("sae") == "s70") & (pl.col("feature") == 5)).row(0, named=True)
    node = g.nodes["s70:5"]
    assert (
        node["max_cos"] == row["max_cos"]
        and node["parent"] == row["parent"]
        and node["novel"] == row["novel"]
    )
    for u, v, d in g.edges(data=True):
        assert d["cos"] > 0.7
        assert g.nodes[v]["family"] == g.nodes[u]["child_family"] == d["family"]
    for _, data in g.nodes(data=True):
        assert all(v is not None and not isinstance(v, list) for v in data.values())


def test_graphml_round_trip_keeps_every_attribute(tmp_path):
    g, features, _, _ = _ladder_graph()
    path = write_graphml(g, tmp_path / "g.graphml")
    raw = nx.read_graphml(path, node_type=str)  # what Gephi/Cytoscape users and plain networkx see
    assert raw.is_directed() and list(raw.nodes) == list(g.nodes) and set(raw.edges) == set(g.edges)
    for n, data in g.nodes(data=True):
        assert raw.nodes[n] == data, n
    for u, v, data in g.edges(data=True):
        assert raw.edges[u, v] == data
    assert raw.graph["tau"] == 0.7 and raw.graph["schema"] == GRAPHML_SCHEMA
    assert raw.graph["saes"] == '["s12", "s30", "s70"]'

    dec = read_graphml(path)
    assert dec.nodes["s12:0"]["max_cos"] is None and dec.nodes["s12:0"]["novel"] is None
    assert dec.nodes["s30:4"]["parent"] is None and dec.nodes["s30:4"]["family"] is None
    for row in features.iter_rows(named=True):  # decoded attributes equal the features table, nulls included
        node = dec.nodes[node_id(row["sae"], row["feature"])]
        for k, v in row.items():
            assert node[k] == v, (row["sae"], row["feature"], k)
    # the file is plain GraphML with typed keys (what Gephi and Cytoscape need) and no Python-only values
    text = path.read_text()
    assert (
        'attr.name="max_cos" attr.type="double"' in text and 'attr.name="novel" attr.type="boolean"' in text
    )
    assert ">None<" not in text and ">nan<" not in text.lower()


def test_graphml_is_byte_identical_across_runs(tmp_path):
    a = write_graphml(_ladder_graph()[0], tmp_path / "a.graphml").read_bytes()
    b = write_graphml(_ladder_graph()[0], tmp_path / "b.graphml").read_bytes()
    assert a == b


def test_read_graphml_rejects_foreign_and_broken_files(tmp_path):
    from featgraph.errors import SaeFormatError

    other = tmp_path / "other.graphml"
    nx.write_graphml(nx.path_graph(3), other)
    with pytest.raises(SaeFormatError, match="other.graphml: not a featgraph ladder graph"):
        read_graphml(other)
    broken = tmp_path / "broken.graphml"
    broken.write_text("<graphml><graph")
    with pytest.raises(SaeFormatError, match="broken.graphml: not a readable GraphML"):
        read_graphml(broken)
    with pytest.raises(SaeFormatError, match="missing.graphml: file not found"):
        read_graphml(tmp_path / "missing.graphml")


def test_write_graphml_refuses_unencoded_values(tmp_path):
    g = nx.DiGraph()
    g.add_node("a:0", max_cos=None)
    with pytest.raises(ValueError, match="max_cos"):
        write_graphml(g, tmp_path / "x.graphml")
    assert not (tmp_path / "x.graphml").exists()


def test_splitting_tree_follows_edges_across_widths():
    g, features, edges, fams = _ladder_graph(zero_row=False)
    # a root in the smallest SAE whose child family in the middle SAE has its own children
    roots = [n for n in g if g.nodes[n]["sae"] == "s12" and any(g.out_degree(c) for c in g.successors(n))]
    assert roots, "the planted ladder should have two-level splitting trees"
    root = roots[0]
    tree = splitting_tree(g, root)
    want = {root}
    frontier = {root}
    for small, large in (("s12", "s30"), ("s30", "s70")):  # brute force over the edges table, width by width
        e = edges.filter(pl.col("small") == small)
        nxt = {
            node_id(large, r["large_feature"])
            for r in e.iter_rows(named=True)
            if node_id(small, r["small_feature"]) in frontier
        }
        want |= nxt
        frontier = nxt
    assert set(tree.nodes) == want
    assert tree_depth(tree, root) == 2
    assert all(tree.nodes[n] == g.nodes[n] for n in tree)
    leaf = next(n for n in g if g.nodes[n]["sae"] == "s70")
    assert set(splitting_tree(g, leaf).nodes) == {leaf} and tree_depth(splitting_tree(g, leaf), leaf) == 0
    with pytest.raises(KeyError, match="nope:1"):
        splitting_tree(g, "nope:1")


def _read_back(path):
    g = nx.read_graphml(path, node_type=str)
    return g.is_directed(), dict(g.graph), list(g.nodes(data=True)), list(g.edges(data=True))


@pytest.mark.parametrize("directed", [True, False])
def test_streaming_writer_reads_back_like_networkx_own_writer(tmp_path, directed):
    g = nx.DiGraph() if directed else nx.Graph()
    g.graph.update(tau=0.7, saes='["a<b>", "c&d"]', schema="x")
    odd = 'we"ird <name> & co:3'  # XML-special characters in ids and values
    g.add_node(odd, sae='we"ird <name> & co', feature=3, norm=1e-300, flag=True, cos=-0.0)
    g.add_node("plain:0", sae="plain", feature=0, norm=0.1 + 0.2, flag=False, cos=np.float64(1 / 3))
    g.add_edge(odd, "plain:0", cos=0.7000000000000001, family=2)
    ours = write_graphml(g, tmp_path / "ours.graphml")
    nx.write_graphml(g, tmp_path / "nx.graphml")
    assert _read_back(ours) == _read_back(tmp_path / "nx.graphml")
    back = nx.read_graphml(ours, node_type=str)
    assert back.nodes["plain:0"]["cos"] == 1 / 3
    assert (
        back.nodes["plain:0"]["norm"] == 0.1 + 0.2 and back.edges[odd, "plain:0"]["cos"] == 0.7000000000000001
    )


def test_writer_refuses_mixed_types(tmp_path):
    g = nx.Graph()
    g.add_node("a", x=1)
    g.add_node("b", x="one")
    with pytest.raises(ValueError, match="'x' mixes GraphML types int and string"):
        write_graphml(g, tmp_path / "m.graphml")
    g = nx.Graph()
    g.add_node("a", x=np.float32(1))
    with pytest.raises(ValueError, match="float32"):
        write_graphml(g, tmp_path / "m.graphml")


def test_ladder_tree_ids_are_the_weak_components_of_the_ladder_graph():
    g, features, edges, _ = _ladder_graph()
    comps = [c for c in nx.weakly_connected_components(g) if len(c) > 1]
    order = list(g.nodes)  # ladder order, then feature order
    comps.sort(key=lambda c: min(order.index(n) for n in c))
    tree_of = {n: t for t, c in enumerate(comps) for n in c}
    got = features["tree"].to_list()
    want = [tree_of.get(node_id(s, f)) for s, f in zip(features["sae"], features["feature"], strict=True)]
    assert got == want and len(comps) > 10
    assert any(len({g.nodes[n]["sae"] for n in c}) == 3 for c in comps)  # some trees span all three widths
    assert all(g.nodes[n]["tree"] == tree_of.get(n, -1) for n in g)
    assert all((g.nodes[n]["tree"] == -1) == (g.degree(n) == 0) for n in g)


def test_ladder_tree_ids_edge_cases():
    from featgraph.graph import ladder_tree_ids

    np.testing.assert_array_equal(ladder_tree_ids([2, 3], [(np.array([], int), np.array([], int))]), [-1] * 5)
    # pair 0: small 1 -- large 0; pair 1: small 2 -- large 0, small 0 -- large 1 (joins the first tree)
    ids = ladder_tree_ids([2, 3, 2], [(np.array([1]), np.array([0])), (np.array([2, 0]), np.array([0, 1]))])
    np.testing.assert_array_equal(ids, [-1, 0, 0, -1, 1, 1, 0])
    with pytest.raises(ValueError, match="need 1 edge lists for 2 SAEs"):
        ladder_tree_ids([2, 3], [])
