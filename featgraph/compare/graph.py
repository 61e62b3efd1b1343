"""The graph of a comparison: one node per feature of A and of B, an edge for every decoder pair with cos > tau and
for every pair of the one-to-one assignment. Written as GraphML (:func:`featgraph.graphml.write_graphml`) and as
JSON that both networkx and Cytoscape.js read.

Node ids are ``"<sae>:<feature>"`` (:func:`featgraph.graph.node_id`). Node attributes (sentinels where a value is
undefined, since GraphML holds neither None nor NaN and JSON no NaN): ``sae``, ``side`` ("A"/"B"), ``bipartite``
(0 for A, 1 for B: the networkx convention), ``width``, ``feature``, ``norm``, ``zero_norm``, ``max_cos`` (to the
other SAE; ``-2.0`` for a zero row), ``argmax`` (``-1``), ``status`` (shared / lost / novel / zero), ``assigned``
(partner in the assignment, ``-1``), ``assigned_cos`` (``-2.0``), ``family`` (``-1``), ``family_kind`` (``""``),
``n_active`` (``-1`` without activations), ``label`` (``""`` without ``--examples``). Edge attributes: ``cos``,
``above_tau``, ``assigned``, ``family`` (``-1``), and ``co_count`` (``-1``), ``jaccard``, ``pearson``,
``masked_cos`` (``-2.0`` when undefined or without activations). Graph attributes: ``tau``, ``saes`` (JSON list
[A, B]) and ``schema`` (:data:`GRAPH_SCHEMA`).

``graph.json`` holds networkx's node-link form (``directed``, ``multigraph``, ``graph``, ``nodes``, ``edges``:
``networkx.node_link_graph(data, edges="edges")`` reads it back) and, under ``elements``, the same nodes and edges
in Cytoscape.js's form (``{"nodes": [{"data": {"id": ...}}], "edges": [{"data": {"id", "source", "target"}}]}``:
``cytoscape({elements: data.elements})``). Each reader ignores the other's keys.
"""

from __future__ import annotations

import json
from typing import Any

import networkx as nx
import polars as pl

from featgraph.graph import NO_COS, NO_INT, node_id

GRAPH_SCHEMA = "featgraph-compare-graph/1"
_SENTINELS = {"max_cos": NO_COS, "argmax": NO_INT, "assigned": NO_INT, "assigned_cos": NO_COS, "family": NO_INT,
              "family_kind": "", "n_active": NO_INT, "label": "", "co_count": NO_INT, "jaccard": NO_COS,
              "pearson": NO_COS, "masked_cos": NO_COS}
_NODE_ATTRS = ("sae", "side", "width", "feature", "norm", "zero_norm", "max_cos", "argmax", "status", "assigned",
               "assigned_cos", "family", "family_kind", "n_active", "label")
_ACT = ("co_count", "jaccard", "pearson", "masked_cos")


def _value(name: str, v: Any) -> Any:
    return _SENTINELS[name] if v is None else v


def compare_graph(features: pl.DataFrame, pairs: pl.DataFrame, edges: pl.DataFrame, *, tau: float,
                  names: tuple[str, str]) -> nx.Graph:
    """The comparison graph from the compare tables (:mod:`featgraph.compare.tables`), so that it can be rebuilt
    from the Parquet files alone."""
    g = nx.Graph(tau=float(tau), saes=json.dumps(list(names)), schema=GRAPH_SCHEMA)
    for row in features.select(_NODE_ATTRS).iter_rows(named=True):
        attrs = {k: _value(k, v) for k, v in row.items()}
        attrs["bipartite"] = 0 if row["side"] == "A" else 1
        g.add_node(node_id(row["sae"], row["feature"]), **attrs)
    a, b = names
    for row in edges.iter_rows(named=True):
        g.add_edge(node_id(a, row["a_feature"]), node_id(b, row["b_feature"]), cos=float(row["cos"]),
                   above_tau=True, assigned=bool(row["assigned"]), family=int(row["family"]),
                   **{k: _value(k, row[k]) for k in _ACT})
    for row in pairs.filter(~pl.col("above_tau")).iter_rows(named=True):  # assigned pairs below tau
        g.add_edge(node_id(a, row["a_feature"]), node_id(b, row["b_feature"]), cos=float(row["cos"]),
                   above_tau=False, assigned=True, family=NO_INT, **{k: _value(k, row[k]) for k in _ACT})
    return g


def graph_json(g: nx.Graph) -> dict[str, Any]:
    """networkx node-link data (``edges="edges"``) plus Cytoscape.js ``elements`` (see the module docstring)."""
    data = nx.node_link_data(g, edges="edges")
    data["elements"] = {
        "nodes": [{"data": {"id": str(n), **attrs}} for n, attrs in g.nodes(data=True)],
        "edges": [{"data": {"id": f"e{k}", "source": str(u), "target": str(v), **attrs}}
                  for k, (u, v, attrs) in enumerate(g.edges(data=True))],
    }
    return data
