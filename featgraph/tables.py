"""Every Parquet table schema of the package and the one byte-stable Parquet writer.

The families run's tables (built here):

- features: one row per feature of every SAE, in ladder order then feature order (:data:`FEATURES_SCHEMA`);
- edges: every adjacent-pair edge with cos > tau, sorted by pair, then large feature, then small feature;
- families: one row per swap family, sorted by pair then family id.

Null means "not defined": the smallest SAE has no ``max_cos``/``parent``/``novel``; an all-zero decoder row
(``zero_norm``) has no direction, so it gets no ``max_cos``/``parent``/``novel`` either and is in no family.
``family`` is the feature's family in the pair with the next-smaller SAE, ``child_family`` in the pair with
the next-larger one, ``tree`` its splitting tree across the whole ladder
(:func:`featgraph.graph.ladder_tree_ids`); each is null when the feature has no edge there.

The other commands build their own tables against the schemas kept here: stitch's dmse, swaps (its own name,
not a ``families.parquet``), interpolation and points, frankenstein's origin and eval's metrics.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featgraph.graph import Family, family_of_features, ladder_tree_ids
from featgraph.io.files import atomic_path
from featgraph.matching.core import is_novel

FEATURES_SCHEMA = pl.Schema(
    {
        "sae": pl.String,  # SAE name
        "width": pl.Int64,  # features in that SAE
        "feature": pl.Int64,  # feature index
        "norm": pl.Float64,  # decoder row norm
        "zero_norm": pl.Boolean,  # the decoder row is all zeros (matches nothing)
        "max_cos": pl.Float64,  # max cosine to the next-smaller SAE
        "parent": pl.Int64,  # argmax in the next-smaller SAE (whatever its cosine)
        "novel": pl.Boolean,  # max_cos <= tau
        "family": pl.Int64,  # family id in the pair with the next-smaller SAE
        "child_family": pl.Int64,  # family id in the pair with the next-larger SAE
        "tree": pl.Int64,  # splitting-tree id across the whole ladder (graph.ladder_tree_ids)
    }
)

EDGES_SCHEMA = pl.Schema(
    {
        "small": pl.String,
        "large": pl.String,
        "small_feature": pl.Int64,
        "large_feature": pl.Int64,
        "cos": pl.Float64,
        "family": pl.Int64,  # the family (within this pair) the edge belongs to
    }
)

FAMILIES_SCHEMA = pl.Schema(
    {
        "small": pl.String,
        "large": pl.String,
        "family": pl.Int64,
        "kind": pl.String,  # copy | split | merge | n:m
        "small_features": pl.List(pl.Int64),
        "large_features": pl.List(pl.Int64),
        "n_small": pl.Int64,
        "n_large": pl.Int64,
        "n_edges": pl.Int64,
    }
)


# -- the other commands' tables (stitch, frankenstein, eval): every Parquet schema of the package lives here ---
# stitch dmse.parquet: one row per feature of the large SAE
DMSE_SCHEMA = {
    "large_feature": pl.Int64,
    "max_cos": pl.Float64,
    "argmax_small": pl.Int64,
    "category": pl.Utf8,
    "family": pl.Int64,
    "dmse": pl.Float64,
    "dmse_relative": pl.Float64,
    "dl0": pl.Float64,
    "active_frac": pl.Float64,
    "small_mse_active": pl.Float64,
    "small_mse_inactive": pl.Float64,
    "large_mse_active": pl.Float64,
    "large_mse_inactive": pl.Float64,
}
# stitch swaps.parquet: one row per swap family (its own name: not the families run's families.parquet)
SWAP_SCHEMA = {
    "family": pl.Int64,
    "kind": pl.Utf8,
    "n_small": pl.Int64,
    "n_large": pl.Int64,
    "max_cos": pl.Float64,
    "swap_rank": pl.Int64,
    "dmse": pl.Float64,
    "dmse_relative": pl.Float64,
    "dl0": pl.Float64,
}
# stitch interpolation.parquet: one row per step of the interpolation path
PATH_SCHEMA = {
    "step": pl.Int64,
    "action": pl.Utf8,
    "family": pl.Int64,
    "family_kind": pl.Utf8,
    "family_max_cos": pl.Float64,
    "n_removed": pl.Int64,
    "n_added": pl.Int64,
    "n_features": pl.Int64,
    "l0": pl.Float64,
    "mse": pl.Float64,
    "explained_variance": pl.Float64,
    "ce_recovered": pl.Float64,
}
# frankenstein origin.parquet: one row per feature of the final SAE
ORIGIN_SCHEMA = {
    "feature": pl.Int64,
    "source": pl.Utf8,
    "source_feature": pl.Int64,
    "stage": pl.Int64,
    "max_cos_at_add": pl.Float64,
}
# stitch/frankenstein/report points: one row per evaluated SAE
POINT_COLUMNS = ("name", "width", "l0", "mse", "explained_variance", "ce_recovered_zero", "ce_recovered_mean")
# eval metrics.parquet: one row per SAE, sorted by width then name
METRICS_COLUMNS = (
    "name",
    "hook_name",
    "width",
    "architecture",
    "l0",
    "mse",
    "mse_per_dim",
    "explained_variance",
    "dead_features",
    "ce_clean",
    "ce_sae",
    "ce_zero",
    "ce_mean",
    "ce_recovered_zero",
    "ce_recovered_mean",
    "n_tokens",
    "n_tokens_ce",
    # training health (featgraph.training.health): shares of features, NaN where not computed or unknown
    "dead_share",
    "rare_share",
    "dense_share",
    "moved_share",
    "useless_share",
    "random_like_share",
    "undertrained",
)


def _masked(values: np.ndarray, keep: np.ndarray) -> pl.Series:
    """A series with nulls where ``keep`` is false."""
    return pl.Series(values).scatter(np.flatnonzero(~keep), None) if not keep.all() else pl.Series(values)


def features_table(
    names: Sequence[str],
    norms: Sequence[np.ndarray],
    matches: Sequence[Any],
    families: Sequence[list[Family]],
    *,
    tau: float,
) -> pl.DataFrame:
    """One row per feature of every SAE; ``matches[i]``, ``families[i]`` belong to (names[i], names[i+1])."""
    assert len(matches) == len(families) == len(names) - 1 == len(norms) - 1
    widths = [len(n) for n in norms]
    trees = ladder_tree_ids(widths, [(m.edge_small, m.edge_large) for m in matches])
    offsets = np.concatenate([[0], np.cumsum(widths)])
    frames = []
    for k, (name, norm) in enumerate(zip(names, norms, strict=True)):
        n = len(norm)
        zero = np.asarray(norm) == 0
        if k == 0:
            max_cos = pl.Series([None] * n, dtype=pl.Float64)
            parent = pl.Series([None] * n, dtype=pl.Int64)
            novel = pl.Series([None] * n, dtype=pl.Boolean)
            family = pl.Series([None] * n, dtype=pl.Int64)
        else:
            m = matches[k - 1]
            defined = ~zero
            max_cos = _masked(np.asarray(m.max_cos, dtype=np.float64), defined)
            parent = _masked(np.asarray(m.argmax, dtype=np.int64), defined)
            novel = _masked(is_novel(m.max_cos, tau), defined)
            fam = family_of_features(families[k - 1], n, "large")
            family = _masked(fam, fam >= 0)
        if k < len(matches):
            child = family_of_features(families[k], n, "small")
            child_family = _masked(child, child >= 0)
        else:
            child_family = pl.Series([None] * n, dtype=pl.Int64)
        frames.append(
            pl.DataFrame(
                {
                    "sae": pl.Series([name] * n, dtype=pl.String),
                    "width": pl.Series(np.full(n, n, dtype=np.int64)),
                    "feature": pl.Series(np.arange(n, dtype=np.int64)),
                    "norm": pl.Series(np.asarray(norm, dtype=np.float64)),
                    "zero_norm": pl.Series(zero),
                    "max_cos": max_cos,
                    "parent": parent,
                    "novel": novel,
                    "family": family,
                    "child_family": child_family,
                    "tree": _masked(
                        trees[offsets[k] : offsets[k + 1]], trees[offsets[k] : offsets[k + 1]] >= 0
                    ),
                },
                schema=FEATURES_SCHEMA,
            )
        )
    return pl.concat(frames, how="vertical") if frames else FEATURES_SCHEMA.to_frame()


def edges_table(
    names: Sequence[str], matches: Sequence[Any], families: Sequence[list[Family]]
) -> pl.DataFrame:
    """Every edge with cos > tau of every adjacent pair, with its family id."""
    frames = []
    for k, m in enumerate(matches):
        es = np.asarray(m.edge_small, dtype=np.int64)
        el = np.asarray(m.edge_large, dtype=np.int64)
        order = np.lexsort((es, el))  # by large then small (the matcher's order; enforced for stable output)
        es, el = es[order], el[order]
        fam = family_of_features(families[k], int(es.max()) + 1 if es.size else 0, "small")
        frames.append(
            pl.DataFrame(
                {
                    "small": pl.Series([names[k]] * es.size, dtype=pl.String),
                    "large": pl.Series([names[k + 1]] * es.size, dtype=pl.String),
                    "small_feature": es,
                    "large_feature": el,
                    "cos": np.asarray(m.edge_cos, dtype=np.float64)[order],
                    "family": fam[es] if es.size else np.zeros(0, dtype=np.int64),
                },
                schema=EDGES_SCHEMA,
            )
        )
    return pl.concat(frames, how="vertical") if frames else EDGES_SCHEMA.to_frame()


def families_table(names: Sequence[str], families: Sequence[list[Family]]) -> pl.DataFrame:
    """One row per family of every adjacent pair (built column-wise: a ladder of 100k+ families in a blink)."""
    frames = []
    for k, fams in enumerate(families):
        if not fams:
            continue
        n_small = np.array([len(f.small_features) for f in fams], dtype=np.int64)
        n_large = np.array([len(f.large_features) for f in fams], dtype=np.int64)
        kind = np.where(n_small == 1, np.where(n_large == 1, "copy", "split"),
                        np.where(n_large == 1, "merge", "n:m"))  # graph.family_kind, vectorised
        frames.append(pl.DataFrame({
            "small": pl.Series([names[k]] * len(fams), dtype=pl.String),
            "large": pl.Series([names[k + 1]] * len(fams), dtype=pl.String),
            "family": np.array([f.family for f in fams], dtype=np.int64),
            "kind": pl.Series(kind.tolist(), dtype=pl.String),
            "small_features": _list_column([f.small_features for f in fams], n_small),
            "large_features": _list_column([f.large_features for f in fams], n_large),
            "n_small": n_small,
            "n_large": n_large,
            "n_edges": np.array([f.n_edges for f in fams], dtype=np.int64),
        }, schema=FAMILIES_SCHEMA))
    return pl.concat(frames, how="vertical") if frames else FAMILIES_SCHEMA.to_frame()


def _list_column(parts: list[np.ndarray], lengths: np.ndarray) -> pl.Series:
    """A List(Int64) series from one int array per row (flat values grouped by row, no Python list per row)."""
    values = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    frame = pl.DataFrame({"row": rows, "v": values})  # every family has >= 1 feature per side: no empty lists
    return frame.group_by("row", maintain_order=True).agg(pl.col("v"))["v"]


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` atomically with settings that make the bytes depend on the data alone.

    Polars' native writer puts no timestamp in the file; fixing the compression, its level, the statistics and
    the row-group size removes every other default that could change between runs or polars versions'
    defaults.
    """
    with atomic_path(path) as tmp:
        df.write_parquet(
            tmp, compression="zstd", compression_level=3, statistics=True, row_group_size=1 << 20
        )
    return Path(path)


def read_table(path: str | os.PathLike[str], schema: pl.Schema) -> pl.DataFrame:
    """Read one of our Parquet tables and check it has the expected columns and dtypes."""
    from featgraph.errors import SaeFormatError

    path = Path(path)
    try:
        df = pl.read_parquet(path)
    except FileNotFoundError as e:
        raise SaeFormatError(f"{path}: file not found") from e
    except Exception as e:  # polars raises ComputeError and friends for corrupt files
        raise SaeFormatError(f"{path}: not a readable Parquet file ({e})") from e
    missing = [c for c in schema if c not in df.columns or df.schema[c] != schema[c]]
    if missing:
        raise SaeFormatError(
            f"{path}: columns {missing} missing or of the wrong type (have {dict(df.schema)})"
        )
    return df
