"""Similarity graphs between SAEs of adjacent widths, swap families, splitting trees, and GraphML I/O.

All functions are free functions over plain ``networkx`` graphs (never a subclass).

Vocabulary
----------
For an adjacent pair (small SAE, larger SAE) and a threshold ``tau``, an *edge* joins small feature ``i`` and
large feature ``j`` when the cosine of their decoder rows is ``> tau`` (strict). A *family* is a connected
component of that bipartite graph with at least one edge; its *kind* is ``"copy"`` (1 small : 1 large),
``"split"`` (1 : n), ``"merge"`` (n : 1) or ``"n:m"``. Family ids are ``0, 1, ...`` in the order of each
family's smallest small-feature index, so they are deterministic. A large feature is *novel* when its maximum
cosine to the small SAE is ``<= tau``.

Pair graph schema (:func:`pair_graph`, an undirected ``nx.Graph``)
------------------------------------------------------------------
Nodes are ``"<sae>:<feature>"`` strings for every feature of both SAEs, with attributes

- ``sae`` (str), ``width`` (int), ``feature`` (int): where the node comes from;
- ``bipartite`` (int): 0 for the small SAE, 1 for the large one (the networkx convention);
- large nodes only: ``max_cos`` (float), ``parent`` (int, argmax in the small SAE), ``novel`` (bool).

Edges carry ``cos`` (float).

Ladder graph schema (:func:`ladder_graph`, a directed ``nx.DiGraph``, also the GraphML file)
------------------------------------------------------------------------------------------
One node per feature of every SAE, ``"<sae>:<feature>"``, in ladder order then feature order. Edges point from
a small feature to a feature of the next-larger SAE whenever their cosine is ``> tau``, so the descendants of
a node are its splitting tree (a DAG when a large feature has several parents above tau). GraphML allows
neither ``None`` nor lists as values, so "no value" is encoded with a sentinel and a boolean says when the
sentinel applies:

============== ======= =================================================================================
node attribute type    meaning (encoded value when absent)
============== ======= =================================================================================
sae            string  SAE name
width          int     number of features of that SAE
feature        int     feature index
norm           double  decoder row norm
zero_norm      boolean the decoder row is all zeros: it has no direction and matches nothing
has_parent     boolean the feature was compared with the next-smaller SAE (false for the smallest SAE and
                       for zero rows); when false, ``max_cos``, ``parent`` and ``novel`` are undefined
max_cos        double  max cosine to the next-smaller SAE (``-2.0``: outside [-1, 1], never a real cosine)
parent         int     argmax in the next-smaller SAE (``-1``)
novel          boolean ``max_cos <= tau`` (``false`` when ``has_parent`` is false)
family         int     family id in the pair with the next-smaller SAE (``-1`` when in none)
child_family   int     family id in the pair with the next-larger SAE (``-1`` when in none)
tree           int     splitting-tree id across the whole ladder (``-1`` when the feature has no edge)
============== ======= =================================================================================

Edges carry ``cos`` (double) and ``family`` (int, the family id within that pair). Graph attributes: ``tau``
(double), ``saes`` (string, JSON list of SAE names in ladder order) and ``schema`` (string,
``GRAPHML_SCHEMA``). :func:`read_graphml` reads the file back and turns the sentinels into ``None``; plain
``nx.read_graphml`` gives the encoded values.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from featgraph.matching.core import is_novel  # the one definition of "novel"

if TYPE_CHECKING:
    import polars as pl

KINDS = ("copy", "split", "merge", "n:m")
GRAPHML_SCHEMA = "featgraph-ladder-graph/1"
NO_INT = -1
NO_COS = -2.0  # cosines lie in [-1, 1], so -2 can never be mistaken for one

# node attributes that are undefined when has_parent is false, with their GraphML sentinels
_PARENT_ATTRS = {"max_cos": NO_COS, "parent": NO_INT, "novel": False}


def node_id(sae: str, feature: int) -> str:
    """The graph node id of a feature: ``"<sae>:<feature>"``."""
    return f"{sae}:{int(feature)}"


def parse_node_id(node: str) -> tuple[str, int]:
    """Inverse of :func:`node_id` (SAE names may themselves contain ``:``)."""
    sae, _, feature = str(node).rpartition(":")
    return sae, int(feature)


def family_kind(n_small: int, n_large: int) -> str:
    """``copy`` (1:1), ``split`` (1:n), ``merge`` (n:1) or ``n:m``."""
    if n_small == 1:
        return "copy" if n_large == 1 else "split"
    return "merge" if n_large == 1 else "n:m"


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """One swap family of an adjacent pair: its feature indices in each SAE (ascending) and its edge count."""

    family: int
    small_features: np.ndarray  # int64, ascending
    large_features: np.ndarray  # int64, ascending
    n_edges: int

    @property
    def kind(self) -> str:
        return family_kind(len(self.small_features), len(self.large_features))

    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """A hashable form (small features, large features), handy to compare family lists."""
        return tuple(self.small_features.tolist()), tuple(self.large_features.tolist())


def families_from_edges(edge_small: np.ndarray, edge_large: np.ndarray) -> list[Family]:
    """Families from edge lists (``edge_small[e]`` -- ``edge_large[e]``) with scipy's connected components.

    Only features touched by an edge become nodes and everything is vectorised, so the cost grows with the
    number of edges, not of features; :func:`families_from_graph` (networkx) gives the same families and is
    kept as the readable cross-check.
    """
    es = np.asarray(edge_small, dtype=np.int64)
    el = np.asarray(edge_large, dtype=np.int64)
    if es.shape != el.shape or es.ndim != 1:
        raise ValueError(f"edge arrays must be 1-D and equal in length, got {es.shape} and {el.shape}")
    if es.size == 0:
        return []
    small_ids, small_of_edge = np.unique(es, return_inverse=True)
    large_ids, large_of_edge = np.unique(el, return_inverse=True)
    n_s, n_l = small_ids.size, large_ids.size
    adj = scipy.sparse.coo_matrix(
        (np.ones(es.size, dtype=np.int8), (small_of_edge, n_s + large_of_edge)), shape=(n_s + n_l, n_s + n_l)
    ).tocsr()
    _, labels = scipy.sparse.csgraph.connected_components(adj, directed=False)
    small_label, large_label = labels[:n_s], labels[n_s:]
    # small_ids is ascending, so the first small node seen with a label is that family's smallest small
    # feature
    labels_in_order, first = np.unique(small_label, return_index=True)
    rank = np.empty(labels.max() + 1, dtype=np.int64)
    rank[labels_in_order[np.argsort(first, kind="stable")]] = np.arange(labels_in_order.size)
    fam_small, fam_large = rank[small_label], rank[large_label]
    n_fam = labels_in_order.size
    n_edges = np.bincount(fam_small[small_of_edge], minlength=n_fam)
    smalls = _group(small_ids, fam_small, n_fam)
    larges = _group(large_ids, fam_large, n_fam)
    return [Family(f, smalls[f], larges[f], int(n_edges[f])) for f in range(n_fam)]


def _group(ids: np.ndarray, group: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Split ascending ``ids`` by ``group`` (stable sort keeps each group ascending)."""
    order = np.argsort(group, kind="stable")
    bounds = np.cumsum(np.bincount(group, minlength=n_groups))[:-1]
    return [a.astype(np.int64) for a in np.split(ids[order], bounds)]


def pair_graph(
    small_name: str,
    large_name: str,
    match: Any,
    *,
    n_small: int,
    tau: float | None = None,
) -> nx.Graph:
    """The bipartite similarity graph of one adjacent pair (schema in the module docstring).

    ``match`` is a :class:`featgraph.matching.PairMatch` (``max_cos``, ``argmax``, ``edge_small``,
    ``edge_large``, ``edge_cos``). ``novel`` is set on large nodes when ``tau`` is given.
    """
    n_large = len(match.max_cos)
    g = nx.Graph(small=small_name, large=large_name)
    g.add_nodes_from(
        (node_id(small_name, i), {"sae": small_name, "width": n_small, "feature": i, "bipartite": 0})
        for i in range(n_small)
    )
    for j in range(n_large):
        attrs: dict[str, Any] = {
            "sae": large_name,
            "width": n_large,
            "feature": j,
            "bipartite": 1,
            "max_cos": float(match.max_cos[j]),
            "parent": int(match.argmax[j]),
        }
        if tau is not None:
            attrs["novel"] = bool(is_novel(match.max_cos[j], tau))
        g.add_node(node_id(large_name, j), **attrs)
    g.add_edges_from(
        (node_id(small_name, int(s)), node_id(large_name, int(l_)), {"cos": float(c)})
        for s, l_, c in zip(match.edge_small, match.edge_large, match.edge_cos, strict=True)
    )
    return g


def families_from_graph(g: nx.Graph) -> list[Family]:
    """Families of a pair graph with networkx's connected components (components of >= 2 nodes).

    Same result and ids as :func:`families_from_edges`; nodes need the ``bipartite`` and ``feature``
    attributes.
    """
    found = []
    for comp in nx.connected_components(g):
        if len(comp) < 2:  # a bipartite graph has no self-loops: a single node has no edge
            continue
        small = sorted(g.nodes[n]["feature"] for n in comp if g.nodes[n]["bipartite"] == 0)
        large = sorted(g.nodes[n]["feature"] for n in comp if g.nodes[n]["bipartite"] == 1)
        found.append((small, large, g.subgraph(comp).number_of_edges()))
    found.sort(key=lambda t: t[0][0])
    return [
        Family(f, np.asarray(s, dtype=np.int64), np.asarray(l_, dtype=np.int64), n)
        for f, (s, l_, n) in enumerate(found)
    ]


def ladder_tree_ids(widths: Sequence[int], edges: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Splitting-tree id of every feature of the ladder, concatenated in ladder order (-1: no edge at all).

    A *splitting tree* is a connected component, across all widths, of the ladder's splitting graph that has
    an edge: a feature, its children above tau in the next width, their children, and so on (strictly a DAG,
    as a merge gives a feature two parents). ``edges[k]`` = ``(edge_small, edge_large)`` of pair (k, k+1). Ids
    are ``0, 1, ...`` in the order of each tree's first feature in ladder order, so they are deterministic.
    """
    if len(edges) != len(widths) - 1:
        raise ValueError(f"need {len(widths) - 1} edge lists for {len(widths)} SAEs, got {len(edges)}")
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    n = int(offsets[-1])
    src = np.concatenate([np.asarray(es, np.int64) + offsets[k] for k, (es, _) in enumerate(edges)] or [[]])
    dst = np.concatenate(
        [np.asarray(el, np.int64) + offsets[k + 1] for k, (_, el) in enumerate(edges)] or [[]]
    )
    out = np.full(n, NO_INT, dtype=np.int64)
    if src.size == 0:
        return out
    adj = scipy.sparse.coo_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(n, n)).tocsr()
    _, labels = scipy.sparse.csgraph.connected_components(adj, directed=False)
    touched = np.zeros(n, dtype=bool)
    touched[src] = touched[dst] = True
    idx = np.flatnonzero(touched)  # ascending = ladder order
    labels_in_order, first = np.unique(labels[idx], return_index=True)
    rank = np.empty(labels.max() + 1, dtype=np.int64)
    rank[labels_in_order[np.argsort(first, kind="stable")]] = np.arange(labels_in_order.size)
    out[idx] = rank[labels[idx]]
    return out


def family_of_features(families: Iterable[Family], n: int, side: str) -> np.ndarray:
    """``out[i]`` = id of the family holding feature ``i`` of the ``"small"`` or ``"large"`` SAE, else -1."""
    if side not in ("small", "large"):
        raise ValueError(f"side must be 'small' or 'large', got {side!r}")
    out = np.full(n, NO_INT, dtype=np.int64)
    for fam in families:
        out[fam.small_features if side == "small" else fam.large_features] = fam.family
    return out


def kind_counts(families: Iterable[Family]) -> dict[str, int]:
    """Number of families of each kind (every kind present, zeros included)."""
    counts = dict.fromkeys(KINDS, 0)
    for fam in families:
        counts[fam.kind] += 1
    return counts


# -- the whole ladder ----------------------------------------------------------------------------------------


def ladder_graph(features: pl.DataFrame, edges: pl.DataFrame, *, tau: float) -> nx.DiGraph:
    """The ladder's splitting graph from the features and edges tables (schema in the module docstring).

    Built from the tables (see :mod:`featgraph.tables`) so that it can be rebuilt from the Parquet files
    alone. Attribute values are plain Python types, GraphML-ready (sentinels instead of ``None``).
    """
    g = nx.DiGraph(
        tau=float(tau),
        saes=json.dumps(features["sae"].unique(maintain_order=True).to_list()),
        schema=GRAPHML_SCHEMA,
    )
    # columns beyond the features schema (a hub run's neuronpedia_url, explain's label) are string node
    # attributes, "" where null (GraphML holds no None)
    extra = [c for c in features.columns if c not in _FEATURE_COLUMNS]
    for row in features.iter_rows(named=True):
        has_parent = row["max_cos"] is not None
        g.add_node(
            node_id(row["sae"], row["feature"]),
            sae=row["sae"],
            width=int(row["width"]),
            feature=int(row["feature"]),
            norm=float(row["norm"]),
            zero_norm=bool(row["zero_norm"]),
            has_parent=has_parent,
            max_cos=float(row["max_cos"]) if has_parent else NO_COS,
            parent=int(row["parent"]) if has_parent else NO_INT,
            novel=bool(row["novel"]) if has_parent else False,
            family=_int_or_none(row["family"]),
            child_family=_int_or_none(row["child_family"]),
            tree=_int_or_none(row["tree"]),
            **{c: row[c] or "" for c in extra},
        )
    for row in edges.iter_rows(named=True):
        u, v = node_id(row["small"], row["small_feature"]), node_id(row["large"], row["large_feature"])
        if u not in g or v not in g:
            raise ValueError(f"edge {u} -> {v} names a feature missing from the features table")
        g.add_edge(u, v, cos=float(row["cos"]), family=int(row["family"]))
    return g


_FEATURE_COLUMNS = ("sae", "width", "feature", "norm", "zero_norm", "max_cos", "parent", "novel", "family",
                    "child_family", "tree")  # featgraph.tables.FEATURES_SCHEMA (tables imports this module)


def _int_or_none(v: int | None) -> int:
    return NO_INT if v is None else int(v)


def splitting_tree(g: nx.DiGraph, node: str) -> nx.DiGraph:
    """The node and all its descendants across the larger widths (a copy of that part of the ladder graph)."""
    if node not in g:
        raise KeyError(f"node {node!r} is not in the graph")
    return g.subgraph({node} | nx.descendants(g, node)).copy()


def tree_depth(tree: nx.DiGraph, root: str) -> int:
    """Number of widths below ``root`` that its splitting tree reaches (0 when it has no child)."""
    lengths = nx.single_source_shortest_path_length(tree, root)
    return max(lengths.values())
