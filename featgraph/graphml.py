"""GraphML for the ladder graph: :func:`write_graphml` (deterministic bytes: the same graph always writes the same
file, typed keys, schema tag) and :func:`read_graphml` (checked, attributes decoded back to featgraph's types).
The graph itself is built by :mod:`featgraph.graph`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import networkx as nx

from featgraph.errors import SaeFormatError
from featgraph.graph import _PARENT_ATTRS, GRAPHML_SCHEMA, NO_INT
from featgraph.io.files import atomic_write

# -- GraphML -------------------------------------------------------------------------------------------------


_GRAPHML_TYPES = {
    bool: "boolean",
    int: "int",
    float: "double",
    str: "string",
}  # bool before int: a bool is an int


def _graphml_type(value: Any, where: str) -> str:
    for py, name in _GRAPHML_TYPES.items():
        if isinstance(value, py):
            return name
    raise ValueError(f"GraphML cannot hold {type(value).__name__} values ({where}): encode them first")


def _graphml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value))  # shortest string that reads back to the same float (np.float64 too)
    return escape(str(value))


def _graphml_keys(items: Iterable[dict[str, Any]], scope: str) -> dict[str, str]:
    """attribute name -> GraphML type, in order of first appearance; one type per name."""
    keys: dict[str, str] = {}
    for data in items:
        for k, v in data.items():
            if v is None or isinstance(v, (list, tuple, dict)):
                raise ValueError(f"GraphML cannot hold None or lists: {scope} attribute {k!r} needs encoding")
            t = _graphml_type(v, f"{scope} attribute {k!r}")
            if keys.setdefault(k, t) != t:
                raise ValueError(f"{scope} attribute {k!r} mixes GraphML types {keys[k]} and {t}")
    return keys


@dataclasses.dataclass(frozen=True)
class LadderTables:
    """The ladder graph as its tables (what :func:`featgraph.graph.ladder_graph` would build from them), for
    :func:`write_graphml`'s vectorised path: the same bytes without a networkx graph of every feature."""

    features: Any  # polars frame, featgraph.tables.FEATURES_SCHEMA (+ extra string columns: node attributes)
    edges: Any  # polars frame, featgraph.tables.EDGES_SCHEMA
    tau: float


def _header(graph_keys: dict[str, str], node_keys: dict[str, str], edge_keys: dict[str, str],
            directed: bool) -> tuple[str, dict[tuple[str, str], str]]:
    """The XML prolog, the typed ``<key>`` lines and the ``<graph>`` opening; (text, (scope, name) -> key id)."""
    ids: dict[tuple[str, str], str] = {}
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
        'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ]
    for scope, keys in (("graph", graph_keys), ("node", node_keys), ("edge", edge_keys)):
        for i, (name, typ) in enumerate(keys.items()):
            ids[scope, name] = kid = f"{scope[0]}{i}"
            lines.append(f'  <key id="{kid}" for="{scope}" attr.name={quoteattr(name)} attr.type="{typ}" />')
    text = "\n".join(lines) + "\n" + f'  <graph edgedefault="{"directed" if directed else "undirected"}">\n'
    return text, ids


def write_graphml(g: nx.Graph | LadderTables, path: str | os.PathLike[str]) -> Path:
    """Write a graph to GraphML atomically, streaming (attributes must already be encoded, see ladder_graph).

    networkx's writer builds the whole XML tree in memory before writing it, which gets slow and large for
    ladders of 100k+ features; this writes one element per line instead. The output is standard GraphML with
    typed keys, read by networkx, Gephi and Cytoscape, and its bytes depend only on the graph (byte-identical
    runs). Given :class:`LadderTables` instead of a graph, the ladder graph's file is written straight from the
    tables, column by column, with the same bytes as ``write_graphml(ladder_graph(features, edges, tau=tau))``
    (the families run's path: no networkx graph of 200k nodes, no per-value type checks).
    """
    if isinstance(g, LadderTables):
        return atomic_write(path, lambda tmp: _write_ladder_tables(g, tmp))
    node_keys = _graphml_keys((d for _, d in g.nodes(data=True)), "node")
    edge_keys = _graphml_keys((d for _, _, d in g.edges(data=True)), "edge")
    graph_keys = _graphml_keys([g.graph], "graph")
    header, ids = _header(graph_keys, node_keys, edge_keys, g.is_directed())

    def data(scope: str, attrs: dict[str, Any]) -> str:
        return "".join(f'<data key="{ids[scope, k]}">{_graphml_text(v)}</data>' for k, v in attrs.items())

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(header)
            if g.graph:
                f.write(f"    {data('graph', g.graph)}\n")
            for n, attrs in g.nodes(data=True):
                f.write(f"    <node id={quoteattr(str(n))}>{data('node', attrs)}</node>\n")
            for u, v, attrs in g.edges(data=True):
                f.write(
                    f"    <edge source={quoteattr(str(u))} target={quoteattr(str(v))}>{data('edge', attrs)}"
                    "</edge>\n"
                )
            f.write("  </graph>\n</graphml>\n")

    return atomic_write(path, write)


# the ladder graph's node attributes as ladder_graph sets them: (name, GraphML type), in order
_LADDER_NODE_KEYS = {"sae": "string", "width": "int", "feature": "int", "norm": "double", "zero_norm": "boolean",
                     "has_parent": "boolean", "max_cos": "double", "parent": "int", "novel": "boolean",
                     "family": "int", "child_family": "int", "tree": "int"}
_LADDER_EDGE_KEYS = {"cos": "double", "family": "int"}


def _text_expr(name: str, typ: str, values: Any) -> Any:
    """A polars expression giving :func:`_graphml_text` of each value of column ``name`` (already sentinel-filled).

    Ints and booleans are formatted by polars; strings escaped like ``xml.sax.saxutils.escape`` (``&`` first);
    doubles through Python's ``repr`` (shortest round-trip text, e.g. ``3e-05``, which polars writes otherwise)."""
    import polars as pl

    col = pl.col(name)
    if typ == "int":
        return col.cast(pl.String)
    if typ == "boolean":
        return pl.when(col).then(pl.lit("true")).otherwise(pl.lit("false"))
    if typ == "double":
        return pl.lit(pl.Series(name, [repr(v) for v in values.cast(pl.Float64).to_list()], dtype=pl.String))
    return (col.str.replace_all("&", "&amp;", literal=True).str.replace_all(">", "&gt;", literal=True)
            .str.replace_all("<", "&lt;", literal=True))


def _quoted_ids(sae: str, feature: str, saes: list[str]) -> list[Any]:
    """Parts of ``quoteattr(node_id(sae, feature))``: the SAE part quoted once per SAE (digits need no escaping)."""
    import polars as pl

    head = {s: quoteattr(f"{s}:")[:-1] for s in saes}
    tail = {s: quoteattr(f"{s}:")[-1] for s in saes}
    return [pl.col(sae).replace_strict(head, return_dtype=pl.String), pl.col(feature).cast(pl.String),
            pl.col(sae).replace_strict(tail, return_dtype=pl.String)]


def _lines(frame: Any, parts: list[Any]) -> str:
    import polars as pl

    return "".join(frame.select(pl.concat_str(parts).alias("line"))["line"].to_list())


def _write_ladder_tables(t: LadderTables, tmp: Path) -> None:
    import json

    import polars as pl

    from featgraph.graph import NO_COS

    f = t.features
    extra = [c for c in f.columns if c not in _LADDER_NODE_KEYS]
    for c in extra:
        if f.schema[c] != pl.String:
            raise ValueError(f"features column {c!r} ({f.schema[c]}) cannot be a GraphML node attribute: "
                             "only extra string columns are written")
    has_parent = pl.col("max_cos").is_not_null()
    nodes = f.select(
        "sae", "width", "feature", "norm", "zero_norm", has_parent.alias("has_parent"),
        pl.col("max_cos").fill_null(NO_COS), pl.col("parent").fill_null(NO_INT),
        (has_parent & pl.col("novel").fill_null(False)).alias("novel"),
        *[pl.col(c).fill_null(NO_INT) for c in ("family", "child_family", "tree")],
        *[pl.col(c).fill_null("") for c in extra],
    )
    node_keys = dict(_LADDER_NODE_KEYS, **dict.fromkeys(extra, "string")) if f.height else {}
    edge_keys = dict(_LADDER_EDGE_KEYS) if t.edges.height else {}
    saes = f["sae"].unique(maintain_order=True).to_list()
    graph_attrs = {"tau": float(t.tau), "saes": json.dumps(saes), "schema": GRAPHML_SCHEMA}
    header, ids = _header(_graphml_keys([graph_attrs], "graph"), node_keys, edge_keys, True)
    # networkx yields a DiGraph's edges by source node (ladder order, then feature), then by target in the order
    # added: small feature, then large feature within each pair, not the edges table's order
    rank = {sae: i for i, sae in enumerate(saes)}
    edges = t.edges.with_columns(pl.col("small").replace_strict(rank, return_dtype=pl.Int64).alias("_rank")).sort(
        ["_rank", "small_feature", "large_feature"], maintain_order=True)
    with open(tmp, "w", encoding="utf-8", newline="\n") as out:
        out.write(header)
        out.write("    " + "".join(f'<data key="{ids["graph", k]}">{_graphml_text(v)}</data>'
                                  for k, v in graph_attrs.items()) + "\n")
        block = 1 << 16  # bounded memory: one block of rows as strings at a time
        for lo in range(0, nodes.height, block):
            part = nodes.slice(lo, block)
            cols = [pl.lit("    <node id="), *_quoted_ids("sae", "feature", saes), pl.lit(">")]
            for k, typ in node_keys.items():
                cols += [pl.lit(f'<data key="{ids["node", k]}">'), _text_expr(k, typ, part[k]), pl.lit("</data>")]
            out.write(_lines(part, [*cols, pl.lit("</node>\n")]))
        for lo in range(0, edges.height, block):
            part = edges.slice(lo, block)
            cols = [pl.lit("    <edge source="), *_quoted_ids("small", "small_feature", saes), pl.lit(" target="),
                    *_quoted_ids("large", "large_feature", saes), pl.lit(">")]
            for k, typ in edge_keys.items():
                cols += [pl.lit(f'<data key="{ids["edge", k]}">'), _text_expr(k, typ, part[k]), pl.lit("</data>")]
            out.write(_lines(part, [*cols, pl.lit("</edge>\n")]))
        out.write("  </graph>\n</graphml>\n")


def read_graphml(path: str | os.PathLike[str], *, decode: bool = True) -> nx.DiGraph:
    """Read a ladder graph written by :func:`write_graphml`; with ``decode`` the sentinels become ``None``."""
    path = Path(path)
    try:
        g = nx.read_graphml(path, node_type=str)
    except FileNotFoundError as e:
        raise SaeFormatError(f"{path}: file not found") from e
    except Exception as e:  # malformed XML raises ElementTree/networkx errors of several types
        raise SaeFormatError(f"{path}: not a readable GraphML file ({e})") from e
    if g.graph.get("schema") != GRAPHML_SCHEMA:
        raise SaeFormatError(f"{path}: not a featgraph ladder graph (schema {g.graph.get('schema')!r})")
    if decode:
        for _, data in g.nodes(data=True):
            if not data["has_parent"]:
                for k in _PARENT_ATTRS:
                    data[k] = None
            for k in ("family", "child_family", "tree"):
                if data[k] == NO_INT:
                    data[k] = None
    return g
