"""One graph of everything an atlas run found: ``graph.graphml`` (typed GraphML, the house's text rules:
:mod:`featgraph.graphml`) and ``graph.json`` (networkx node-link data of the same graph: ``nx.node_link_graph(
json.load(f), edges="edges")`` reads it back).

A directed multigraph, built as two tables and written column by column (no networkx object of every feature: a
collection has hundreds of thousands). Nodes: every feature of every SAE in the plan, ``"<sae>:<feature>"`` (the
house node id, :func:`featgraph.graph.node_id`), in collection order then feature order, with ``sae``, ``width``,
``feature``, ``model``, ``site``, ``layer`` (``-1``: none), ``seed`` and ``chain`` (flow chain id, ``-1``: not in a
flow SAE, or a zero row). Edges carry ``kind``, ``cos`` and ``family`` (``-1`` except on families edges):

- ``families``: small -> large feature for every edge with cos > tau, ``family`` its id within the pair;
- ``flow``: predecessor -> feature for every carried feature (its best predecessor, cos > tau);
- ``compare``: seed a -> seed b feature for every assigned pair with cos > tau.

Edges come pair by pair in plan order, each pair's in its table's order, so both files are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featgraph.graph import NO_INT

GRAPH_SCHEMA = "featgraph-atlas-graph/1"
NODE_KEYS = {"sae": "string", "width": "int", "feature": "int", "model": "string", "site": "string",
             "layer": "int", "seed": "int", "chain": "int"}
EDGE_KEYS = {"kind": "string", "cos": "double", "family": "int"}
_EDGE_COLUMNS = {"source": pl.String, "source_feature": pl.Int64, "target": pl.String, "target_feature": pl.Int64,
                 "kind": pl.String, "cos": pl.Float64, "family": pl.Int64}


def graph_tables(
    names: Sequence[str], specs: Mapping[str, Any], widths: Mapping[str, int], pairs: Sequence[Any],
    tables: Mapping[str, dict[str, pl.DataFrame]], chains: pl.DataFrame,
    labels: Mapping[str, Mapping[int, str]] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(nodes, edges)`` of the graph (module docstring); ``tables``: pair name -> its tables
    (:func:`featgraph.atlas.tables.pair_tables`), ``chains``: :func:`featgraph.atlas.flow.flow_tables`'s.
    ``labels`` (sae -> feature -> label, :mod:`featgraph.atlas.labels`): adds a ``label`` column (``""`` where
    none); without it the nodes have no such column and the files are as before."""
    chain_of = {}
    for part in chains.partition_by("sae", maintain_order=True) if chains.height else []:
        chain_of[part["sae"][0]] = part["chain"].fill_null(NO_INT).to_numpy()
    nodes = []
    for name in names:
        s, w = specs[name], widths[name]
        nodes.append(pl.DataFrame({
            "sae": pl.Series([name] * w, dtype=pl.String), "width": np.full(w, w, np.int64),
            "feature": np.arange(w, dtype=np.int64), "model": pl.Series([s.model] * w, dtype=pl.String),
            "site": pl.Series([s.site] * w, dtype=pl.String),
            "layer": np.full(w, NO_INT if s.layer is None else s.layer, np.int64),
            "seed": np.full(w, s.seed, np.int64), "chain": chain_of.get(name, np.full(w, NO_INT, np.int64))}))
        if labels is not None:
            per = labels.get(name, {})
            nodes[-1] = nodes[-1].with_columns(pl.Series("label", [per.get(f, "") for f in range(w)], pl.String))
    edges = [pl.DataFrame(schema=_EDGE_COLUMNS)]
    for p in pairs:
        t = tables[p.name]
        if p.kind == "families":
            e = t["edges.parquet"].select(pl.col("small_feature").alias("source_feature"),
                                          pl.col("large_feature").alias("target_feature"), "cos", "family")
        elif p.kind == "flow":
            e = t["flow.parquet"].filter(pl.col("from_nowhere").not_()).select(
                pl.col("predecessor").alias("source_feature"), pl.col("feature").alias("target_feature"),
                pl.col("max_cos").alias("cos"), pl.lit(NO_INT, pl.Int64).alias("family"))
        else:
            e = t["assignment.parquet"].filter(pl.col("shared")).select(
                pl.col("a_feature").alias("source_feature"), pl.col("b_feature").alias("target_feature"), "cos",
                pl.lit(NO_INT, pl.Int64).alias("family"))
        edges.append(e.with_columns(pl.lit(p.a).alias("source"), pl.lit(p.b).alias("target"),
                                    pl.lit(p.kind).alias("kind")).select(list(_EDGE_COLUMNS)))
    node_frame = pl.concat(nodes) if nodes else pl.DataFrame(schema=dict.fromkeys(NODE_KEYS, pl.String))
    if labels is not None and not nodes:
        node_frame = node_frame.with_columns(pl.lit("", pl.String).alias("label"))
    return node_frame, pl.concat(edges)


def write_graph(nodes: pl.DataFrame, edges: pl.DataFrame, tau: float, folder: Path) -> list[str]:
    """``graph.graphml`` and ``graph.json`` in ``folder`` (atomic each); returns the file names."""
    from featgraph.io.files import atomic_write

    attrs = {"tau": float(tau), "schema": GRAPH_SCHEMA}
    atomic_write(folder / "graph.graphml", lambda tmp: _write_graphml(nodes, edges, attrs, tmp))
    atomic_write(folder / "graph.json", lambda tmp: _write_node_link(nodes, edges, attrs, tmp))
    return ["graph.graphml", "graph.json"]


def _node_keys(nodes: pl.DataFrame) -> dict[str, str]:
    """The node attributes: :data:`NODE_KEYS`, plus ``label`` when the run had labels."""
    return {**NODE_KEYS, "label": "string"} if "label" in nodes.columns else NODE_KEYS


def _write_graphml(nodes: pl.DataFrame, edges: pl.DataFrame, attrs: dict[str, Any], tmp: Path) -> None:
    # the vectorised pieces of featgraph.graphml's ladder writer: one definition of the GraphML text of a value
    from featgraph.graphml import _graphml_keys, _graphml_text, _header, _lines, _quoted_ids, _text_expr

    saes = nodes["sae"].unique(maintain_order=True).to_list()
    node_keys = _node_keys(nodes)
    header, ids = _header(_graphml_keys([attrs], "graph"), node_keys if nodes.height else {},
                          EDGE_KEYS if edges.height else {}, True)
    block = 1 << 16  # bounded memory: one block of rows as strings at a time
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
        out.write(header)
        out.write("    " + "".join(f'<data key="{ids["graph", k]}">{_graphml_text(v)}</data>'
                                  for k, v in attrs.items()) + "\n")
        for frame, head, keys, scope in (
            (nodes, ["    <node id=", *_quoted_ids("sae", "feature", saes), ">"], node_keys, "node"),
            (edges, ["    <edge source=", *_quoted_ids("source", "source_feature", saes), " target=",
                     *_quoted_ids("target", "target_feature", saes), ">"], EDGE_KEYS, "edge"),
        ):
            for lo in range(0, frame.height, block):
                part = frame.slice(lo, block)
                cols = [pl.lit(c) if isinstance(c, str) else c for c in head]
                for k, typ in keys.items():
                    cols += [pl.lit(f'<data key="{ids[scope, k]}">'), _text_expr(k, typ, part[k]), pl.lit("</data>")]
                out.write(_lines(part, [*cols, pl.lit(f"</{scope}>\n")]))
        out.write("  </graph>\n</graphml>\n")


def _write_node_link(nodes: pl.DataFrame, edges: pl.DataFrame, attrs: dict[str, Any], tmp: Path) -> None:
    """networkx's node-link layout (``directed``, ``multigraph``, ``graph``, ``nodes`` with ``id``, ``edges`` with
    ``source``/``target``), one JSON object per node and edge, encoded by polars in blocks."""
    import json

    head = {"directed": True, "multigraph": True, "graph": attrs}
    node_id = pl.format("{}:{}", "sae", "feature").alias("id")
    parts = (
        (nodes, [node_id, *_node_keys(nodes)]),
        (edges, [pl.format("{}:{}", "source", "source_feature").alias("source"),
                 pl.format("{}:{}", "target", "target_feature").alias("target"), *EDGE_KEYS]),
    )
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
        out.write(json.dumps(head, sort_keys=True)[:-1])
        for (frame, cols), name in zip(parts, ("nodes", "edges"), strict=True):
            out.write(f', "{name}": [')
            for lo in range(0, frame.height, 1 << 16):
                text = frame.slice(lo, 1 << 16).select(pl.struct(cols).struct.json_encode().alias("j"))["j"]
                out.write(("," if lo else "") + ",".join(text.to_list()))
            out.write("]")
        out.write("}\n")
