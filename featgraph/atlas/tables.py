"""The atlas's Parquet tables: one schema per kind of comparison, one folder per pair, and the read back that lets a
rerun reuse a finished pair.

Layout under ``--out`` (hive-style partitions: ``pl.scan_parquet(out / "families" / "**" / "*.parquet",
hive_partitioning=True)`` gives every pair's rows with a ``pair`` column ``"<a>~<b>"``):

- ``families/pair=<small>~<large>/features.parquet`` (:data:`FAMILY_FEATURES_SCHEMA`): one row per feature of the
  larger SAE: its max cos to the smaller SAE, argmax (``parent``), ``novel`` (max cos <= tau) and family;
  ``edges.parquet`` (:data:`FAMILY_EDGES_SCHEMA`): every edge with cos > tau, sorted by (large, small) feature;
  ``families.parquet`` (:data:`FAMILY_SCHEMA`): one row per swap family (:func:`featgraph.graph.families_from_edges`).
- ``flow/pair=<lower>~<upper>/flow.parquet`` (:data:`FLOW_SCHEMA`): one row per feature of the upper layer's SAE:
  its best predecessor in the lower layer's SAE (argmax of the decoder cos), that cos, and ``from_nowhere``
  (max cos <= tau).
- ``compare/pair=<seedA>~<seedB>/assignment.parquet`` (:data:`ASSIGNMENT_SCHEMA`): the optimal one-to-one
  assignment, one row per assigned pair, sorted by ``a_feature``; ``shared`` is cos > tau.

All-zero decoder rows have no direction: their ``max_cos``, ``parent``/``predecessor``, ``novel``/``from_nowhere``
are null (the matcher's raw answer for them, 0.0 at index 0, is what :func:`read_pair` gives back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featgraph.graph import families_from_edges, family_of_features
from featgraph.matching.core import is_novel
from featgraph.tables import families_table, read_table, write_parquet

FAMILY_FEATURES_SCHEMA = pl.Schema({
    "feature": pl.Int64,  # feature of the larger SAE
    "zero_norm": pl.Boolean,  # all-zero decoder row: matches nothing
    "max_cos": pl.Float64,  # max cos to the smaller SAE
    "parent": pl.Int64,  # its argmax in the smaller SAE
    "novel": pl.Boolean,  # max_cos <= tau
    "family": pl.Int64,  # family id within the pair (null: in no family)
})
FAMILY_EDGES_SCHEMA = pl.Schema({
    "small_feature": pl.Int64, "large_feature": pl.Int64, "cos": pl.Float64, "family": pl.Int64,
})
FAMILY_SCHEMA = pl.Schema({
    "family": pl.Int64, "kind": pl.String, "small_features": pl.List(pl.Int64),
    "large_features": pl.List(pl.Int64), "n_small": pl.Int64, "n_large": pl.Int64, "n_edges": pl.Int64,
})
FLOW_SCHEMA = pl.Schema({
    "feature": pl.Int64,  # feature of the upper layer's SAE
    "zero_norm": pl.Boolean,
    "max_cos": pl.Float64,  # cos to its best predecessor
    "predecessor": pl.Int64,  # argmax in the lower layer's SAE
    "from_nowhere": pl.Boolean,  # max_cos <= tau: born at this layer
})
ASSIGNMENT_SCHEMA = pl.Schema({
    "a_feature": pl.Int64, "b_feature": pl.Int64, "cos": pl.Float64, "shared": pl.Boolean,
})
FILES = {
    "families": {"features.parquet": FAMILY_FEATURES_SCHEMA, "edges.parquet": FAMILY_EDGES_SCHEMA,
                 "families.parquet": FAMILY_SCHEMA},
    "flow": {"flow.parquet": FLOW_SCHEMA},
    "compare": {"assignment.parquet": ASSIGNMENT_SCHEMA},
}


def _nulls(values: np.ndarray, zero: np.ndarray) -> pl.Series:
    s = pl.Series(values)
    return s.scatter(np.flatnonzero(zero), None) if zero.any() else s


def pair_tables(kind: str, result: dict[str, Any], zero_b: np.ndarray, tau: float) -> dict[str, pl.DataFrame]:
    """The tables of one pair (file name -> frame) from its merged result; ``zero_b``: b's all-zero rows (mask)."""
    if kind == "compare":
        cos = np.asarray(result["cos"], np.float64)
        return {"assignment.parquet": pl.DataFrame({
            "a_feature": np.asarray(result["rows"], np.int64), "b_feature": np.asarray(result["cols"], np.int64),
            "cos": cos, "shared": cos > tau}, schema=ASSIGNMENT_SCHEMA)}
    max_cos = np.asarray(result["max_cos"], np.float64)
    argmax = np.asarray(result["argmax"], np.int64)
    n = max_cos.size
    novel = is_novel(max_cos, tau)
    if kind == "flow":
        return {"flow.parquet": pl.DataFrame({
            "feature": np.arange(n, dtype=np.int64), "zero_norm": zero_b, "max_cos": _nulls(max_cos, zero_b),
            "predecessor": _nulls(argmax, zero_b), "from_nowhere": _nulls(novel, zero_b)}, schema=FLOW_SCHEMA)}
    es, el = np.asarray(result["edge_a"], np.int64), np.asarray(result["edge_b"], np.int64)
    fams = families_from_edges(es, el)
    fam_of_large = family_of_features(fams, n, "large")
    fam_of_small = family_of_features(fams, int(es.max()) + 1 if es.size else 0, "small")
    features = pl.DataFrame({
        "feature": np.arange(n, dtype=np.int64), "zero_norm": zero_b, "max_cos": _nulls(max_cos, zero_b),
        "parent": _nulls(argmax, zero_b), "novel": _nulls(novel, zero_b),
        "family": _nulls(fam_of_large, fam_of_large < 0)}, schema=FAMILY_FEATURES_SCHEMA)
    edges = pl.DataFrame({
        "small_feature": es, "large_feature": el, "cos": np.asarray(result["edge_cos"], np.float64),
        "family": fam_of_small[es] if es.size else np.zeros(0, np.int64)}, schema=FAMILY_EDGES_SCHEMA)
    # the families run's table (one definition, built column-wise) without its small/large name columns: here the
    # pair is the folder
    families = families_table(["small", "large"], [fams]).drop("small", "large").cast(dict(FAMILY_SCHEMA))
    return {"features.parquet": features, "edges.parquet": edges, "families.parquet": families}


def write_pair(folder: Path, tables: dict[str, pl.DataFrame]) -> list[Path]:
    """Write one pair's tables into ``folder`` (created), with the house's byte-stable Parquet writer."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_parquet(df, folder / name) for name, df in tables.items()]


def read_pair(folder: Path, kind: str, n_rows: int, extra: dict[str, Any]) -> dict[str, Any]:
    """A pair's result read back from an earlier run's tables (what :func:`featgraph.atlas.work.merge_blocks`
    gave then); ``n_rows``: the rows its main table must have (b's width; compare: the smaller width); ``extra``:
    values kept in the old summary (compare's ``gap_bound``). A table that is unreadable, of the wrong schema or
    of the wrong length raises :class:`~featgraph.errors.SaeFormatError` naming it."""
    from featgraph.errors import SaeFormatError

    t = {name: read_table(folder / name, schema) for name, schema in FILES[kind].items()}
    main = t[next(iter(FILES[kind]))]
    if main.height != n_rows:
        raise SaeFormatError(f"{folder}: {main.height} rows where this pair has {n_rows}")
    if kind == "compare":
        return {"rows": main["a_feature"].to_numpy(), "cols": main["b_feature"].to_numpy(),
                "cos": main["cos"].to_numpy(), "gap_bound": float(extra["gap_bound"])}
    out = {"max_cos": main["max_cos"].fill_null(0.0).to_numpy(),
           "argmax": main["predecessor" if kind == "flow" else "parent"].fill_null(0).to_numpy()}
    if kind == "families":
        e = t["edges.parquet"]
        out |= {"edge_a": e["small_feature"].to_numpy(), "edge_b": e["large_feature"].to_numpy(),
                "edge_cos": e["cos"].to_numpy()}
    return out
