"""GraphML for the ladder graph: :func:`write_graphml` (deterministic bytes: the same graph always writes the same
file, typed keys, schema tag) and :func:`read_graphml` (checked, attributes decoded back to featgraph's types).
The graph itself is built by :mod:`featgraph.graph`.
"""

from __future__ import annotations

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


def write_graphml(g: nx.Graph, path: str | os.PathLike[str]) -> Path:
    """Write a graph to GraphML atomically, streaming (attributes must already be encoded, see ladder_graph).

    networkx's writer builds the whole XML tree in memory before writing it, which gets slow and large for
    ladders of 100k+ features; this writes one element per line instead. The output is standard GraphML with
    typed keys, read by networkx, Gephi and Cytoscape, and its bytes depend only on the graph (byte-identical
    runs).
    """
    node_keys = _graphml_keys((d for _, d in g.nodes(data=True)), "node")
    edge_keys = _graphml_keys((d for _, _, d in g.edges(data=True)), "edge")
    graph_keys = _graphml_keys([g.graph], "graph")
    ids: dict[tuple[str, str], str] = {}
    header = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns '
        'http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">',
    ]
    for scope, keys in (("graph", graph_keys), ("node", node_keys), ("edge", edge_keys)):
        for name, typ in keys.items():
            ids[scope, name] = kid = f"{scope[0]}{len([i for i in ids if i[0] == scope])}"
            header.append(f'  <key id="{kid}" for="{scope}" attr.name={quoteattr(name)} attr.type="{typ}" />')

    def data(scope: str, attrs: dict[str, Any]) -> str:
        return "".join(f'<data key="{ids[scope, k]}">{_graphml_text(v)}</data>' for k, v in attrs.items())

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(header) + "\n")
            f.write(f'  <graph edgedefault="{"directed" if g.is_directed() else "undirected"}">\n')
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
