"""The Parquet tables of ``featgraph compare`` (schemas in the style of :mod:`featgraph.tables`, written with its
byte-stable writer). Null means "not defined": a zero decoder row has no max cos / partner; activation columns are
null without ``--acts`` and where a metric is undefined (a feature that never fires); ``label`` is null without
``--examples``.

- features: one row per feature of A (``side`` "A") then of B ("B"), by feature id (:data:`FEATURES_SCHEMA`);
  ``status`` is ``shared`` (max cos to the other SAE > tau), ``lost`` (an A feature with none), ``novel`` (a B
  feature with none) or ``zero`` (all-zero decoder row).
- pairs: the one-to-one assignment, one row per assigned pair, by A feature (:data:`PAIRS_SCHEMA`).
- edges: every pair with decoder cos > tau, by A feature then B feature, with its family (:data:`EDGES_SCHEMA`).
- families: one row per split-aware family, by id (:data:`FAMILIES_SCHEMA`).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from featgraph.compare.analysis import CompareAnalysis
from featgraph.graph import family_of_features
from featgraph.matching.core import is_novel

ACT_COLUMNS = {"co_count": pl.Int64, "jaccard": pl.Float64, "pearson": pl.Float64, "masked_cos": pl.Float64}

FEATURES_SCHEMA = pl.Schema({
    "sae": pl.String,  # SAE name
    "side": pl.String,  # "A" or "B"
    "width": pl.Int64,
    "feature": pl.Int64,
    "norm": pl.Float64,  # decoder row norm
    "zero_norm": pl.Boolean,
    "max_cos": pl.Float64,  # max decoder cos to the other SAE
    "argmax": pl.Int64,  # its feature in the other SAE (lowest id on ties)
    "status": pl.String,  # shared | lost | novel | zero
    "assigned": pl.Int64,  # partner in the one-to-one assignment (null: left unassigned, the wider side)
    "assigned_cos": pl.Float64,
    "family": pl.Int64,  # split-aware family id (null: in no family)
    "family_kind": pl.String,  # copy | split | merge | n:m
    "n_active": pl.Int64,  # tokens where it fires (--acts)
    "frequency": pl.Float64,  # n_active / tokens (--acts)
    "label": pl.String,  # from --examples
})

PAIRS_SCHEMA = pl.Schema({
    "a_feature": pl.Int64, "b_feature": pl.Int64, "cos": pl.Float64, "above_tau": pl.Boolean, **ACT_COLUMNS,
})
EDGES_SCHEMA = pl.Schema({
    "a_feature": pl.Int64, "b_feature": pl.Int64, "cos": pl.Float64, "family": pl.Int64, "assigned": pl.Boolean,
    **ACT_COLUMNS,
})
FAMILIES_SCHEMA = pl.Schema({
    "family": pl.Int64,
    "kind": pl.String,  # copy | split | merge | n:m (A on the small side: split = 1 A : n B)
    "a_features": pl.List(pl.Int64),
    "b_features": pl.List(pl.Int64),
    "n_a": pl.Int64,
    "n_b": pl.Int64,
    "n_edges": pl.Int64,
})


def _nulls(values: np.ndarray, keep: np.ndarray) -> pl.Series:
    s = pl.Series(values)
    return s if keep.all() else s.scatter(np.flatnonzero(~keep), None)


def _act_columns(an: CompareAnalysis, i: np.ndarray, j: np.ndarray) -> dict[str, pl.Series]:
    m = an.pair_metrics(i, j)
    if m is None:
        return {k: pl.Series([None] * i.size, dtype=t) for k, t in ACT_COLUMNS.items()}
    return {k: _nulls(np.asarray(m[k]), np.isfinite(np.asarray(m[k], np.float64))) for k in ACT_COLUMNS}


def _side(an: CompareAnalysis, side: str, labels: dict[int, str] | None) -> pl.DataFrame:
    is_a = side == "A"
    n, norms = (an.n_a, an.norms_a) if is_a else (an.n_b, an.norms_b)
    match = an.a_to_b if is_a else an.b_to_a
    defined = norms != 0
    unmatched = is_novel(np.asarray(match.max_cos, np.float64), an.tau)
    status = np.where(~defined, "zero", np.where(unmatched, "lost" if is_a else "novel", "shared"))
    asg = an.assignment
    mine, theirs = (asg.rows, asg.cols) if is_a else (asg.cols, asg.rows)
    partner = np.full(n, -1, np.int64)
    partner[mine] = theirs
    pcos = np.zeros(n)
    pcos[mine] = asg.cos
    fam = family_of_features(an.families, n, "small" if is_a else "large")
    kinds = {f.family: f.kind for f in an.families}
    if an.sim is not None:
        count = an.sim.count_a if is_a else an.sim.count_b
        active = pl.Series(count.astype(np.int64))
        freq = pl.Series(count / an.sim.n_tokens)
    else:
        active, freq = pl.Series([None] * n, dtype=pl.Int64), pl.Series([None] * n, dtype=pl.Float64)
    label = (pl.Series([labels.get(k, "") for k in range(n)], dtype=pl.String) if labels is not None
             else pl.Series([None] * n, dtype=pl.String))
    return pl.DataFrame({
        "sae": [an.names[0 if is_a else 1]] * n,
        "side": [side] * n,
        "width": np.full(n, n, np.int64),
        "feature": np.arange(n, dtype=np.int64),
        "norm": np.asarray(norms, np.float64),
        "zero_norm": ~defined,
        "max_cos": _nulls(np.asarray(match.max_cos, np.float64), defined),
        "argmax": _nulls(np.asarray(match.argmax, np.int64), defined),
        "status": status,
        "assigned": _nulls(partner, partner >= 0),
        "assigned_cos": _nulls(pcos, partner >= 0),
        "family": _nulls(fam, fam >= 0),
        "family_kind": pl.Series([kinds.get(int(f)) for f in fam], dtype=pl.String),
        "n_active": active,
        "frequency": freq,
        "label": label,
    }, schema=FEATURES_SCHEMA)


def features_table(an: CompareAnalysis, labels: tuple[dict[int, str], dict[int, str]] | None = None) -> pl.DataFrame:
    """One row per feature of A, then of B (see the module docstring); ``labels``: (A's, B's) feature -> label."""
    la, lb = labels if labels is not None else (None, None)
    return pl.concat([_side(an, "A", la), _side(an, "B", lb)], how="vertical")


def pairs_table(an: CompareAnalysis) -> pl.DataFrame:
    a = an.assignment
    return pl.DataFrame({
        "a_feature": a.rows, "b_feature": a.cols, "cos": a.cos, "above_tau": a.cos > an.tau,
        **_act_columns(an, a.rows, a.cols),
    }, schema=PAIRS_SCHEMA)


def edges_table(an: CompareAnalysis) -> pl.DataFrame:
    ea, eb = an.edge_a.astype(np.int64), an.edge_b.astype(np.int64)
    order = np.lexsort((eb, ea))
    ea, eb = ea[order], eb[order]
    fam = family_of_features(an.families, an.n_a, "small")
    assigned = np.zeros(ea.size, bool)
    if ea.size:
        partner = np.full(an.n_a, -1, np.int64)
        partner[an.assignment.rows] = an.assignment.cols
        assigned = partner[ea] == eb
    return pl.DataFrame({
        "a_feature": ea, "b_feature": eb, "cos": np.asarray(an.a_to_b.edge_cos, np.float64)[order],
        "family": fam[ea] if ea.size else np.zeros(0, np.int64), "assigned": assigned,
        **_act_columns(an, ea, eb),
    }, schema=EDGES_SCHEMA)


def families_table(an: CompareAnalysis) -> pl.DataFrame:
    rows = [{"family": f.family, "kind": f.kind, "a_features": f.small_features.tolist(),
             "b_features": f.large_features.tolist(), "n_a": len(f.small_features), "n_b": len(f.large_features),
             "n_edges": f.n_edges} for f in an.families]
    return pl.DataFrame(rows, schema=FAMILIES_SCHEMA) if rows else FAMILIES_SCHEMA.to_frame()
