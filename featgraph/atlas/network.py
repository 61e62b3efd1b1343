"""One graph of everything an atlas run found: ``graph.graphml`` (typed, byte-stable: :mod:`featgraph.graphml`)
and ``graph.json`` (networkx node-link data, the same graph).

A directed multigraph. Nodes: every feature of every SAE in the plan, ``"<sae>:<feature>"`` (the house node id,
:func:`featgraph.graph.node_id`), in collection order then feature order, with ``sae``, ``width``, ``feature``,
``model``, ``site``, ``layer`` (``-1``: none), ``seed`` and ``chain`` (flow chain id, ``-1``: not in a flow SAE or
a zero row). Edges carry ``kind`` and ``cos``:

- ``families``: small -> large feature for every edge with cos > tau (and ``family``, the id within the pair);
- ``flow``: predecessor -> feature for every carried feature (its best predecessor, cos > tau);
- ``compare``: seed a -> seed b feature for every assigned pair with cos > tau.

Edges are added pair by pair in plan order, each pair's in table order, so the files are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import polars as pl

from featgraph.graph import NO_INT, node_id

GRAPH_SCHEMA = "featgraph-atlas-graph/1"


def atlas_graph(
    names: Sequence[str], specs: Mapping[str, Any], widths: Mapping[str, int], pairs: Sequence[Any],
    tables: Mapping[str, dict[str, pl.DataFrame]], chains: pl.DataFrame, tau: float,
) -> nx.MultiDiGraph:
    """The graph (module docstring); ``tables``: pair name -> its tables
    (:func:`featgraph.atlas.tables.pair_tables`)."""
    g = nx.MultiDiGraph(tau=float(tau), schema=GRAPH_SCHEMA)
    chain_of: dict[str, np.ndarray] = {}
    for part in chains.partition_by("sae", maintain_order=True) if chains.height else []:
        chain_of[part["sae"][0]] = part["chain"].fill_null(NO_INT).to_numpy()
    for name in names:
        s, w = specs[name], widths[name]
        chain = chain_of.get(name, np.full(w, NO_INT, np.int64))
        base = {"sae": name, "width": int(w), "model": s.model, "site": s.site,
                "layer": NO_INT if s.layer is None else int(s.layer), "seed": int(s.seed)}
        g.add_nodes_from((node_id(name, i), {**base, "feature": i, "chain": int(chain[i])}) for i in range(w))
    for p in pairs:
        t = tables[p.name]
        if p.kind == "families":
            e = t["edges.parquet"]
            g.add_edges_from(
                (node_id(p.a, s), node_id(p.b, b), {"kind": "families", "cos": float(c), "family": int(f)})
                for s, b, c, f in e.select("small_feature", "large_feature", "cos", "family").iter_rows())
        elif p.kind == "flow":
            f = t["flow.parquet"].filter(pl.col("from_nowhere").not_())
            g.add_edges_from((node_id(p.a, a), node_id(p.b, b), {"kind": "flow", "cos": float(c)})
                             for b, a, c in f.select("feature", "predecessor", "max_cos").iter_rows())
        else:
            f = t["assignment.parquet"].filter(pl.col("shared"))
            g.add_edges_from((node_id(p.a, a), node_id(p.b, b), {"kind": "compare", "cos": float(c)})
                             for a, b, c in f.select("a_feature", "b_feature", "cos").iter_rows())
    return g


def write_graph(g: nx.MultiDiGraph, folder: Path) -> list[str]:
    """``graph.graphml`` and ``graph.json`` (node-link) in ``folder``; returns the file names."""
    import json

    from featgraph.graphml import write_graphml
    from featgraph.io.files import atomic_write

    write_graphml(g, folder / "graph.graphml")
    # compact, not the house's indented JSON: this file grows with every feature of the collection
    text = json.dumps(nx.node_link_data(g, edges="edges"), sort_keys=True, separators=(",", ":")) + "\n"
    atomic_write(folder / "graph.json", lambda p: p.write_text(text, encoding="utf-8"))
    return ["graph.graphml", "graph.json"]
