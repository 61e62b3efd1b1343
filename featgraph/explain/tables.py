"""The two Parquet tables of ``featgraph explain`` (the column spec shared with families, compare and the explorer):

- ``feature_stats.parquet``: one row per (sae, feature), sorted by sae (the run's SAE order) then feature
  (:data:`STATS_SCHEMA`);
- ``examples.parquet``: one row per (sae, feature, example), sorted by sae, feature, rank (:data:`EXAMPLES_SCHEMA`).

Both are written by :func:`featgraph.tables.write_parquet`, the package's one byte-stable writer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from featgraph.explain.labels import make_label
from featgraph.explain.stats import FeatureStats
from featgraph.explain.topk import TopExamples

STATS_SCHEMA = pl.Schema(
    {
        "sae": pl.String,  # SAE name (as featgraph families names it)
        "feature": pl.Int32,
        "n_tokens": pl.Int64,  # tokens seen
        "n_active": pl.Int64,  # tokens on which the feature fired (activation > 0)
        "frequency": pl.Float64,  # n_active / n_tokens
        "mean_act": pl.Float64,  # mean activation when active; null if never active
        "max_act": pl.Float32,  # 0 if never active
        "top_tokens": pl.List(pl.String),  # tokens it fires on most, by count
        "top_token_counts": pl.List(pl.Int64),
        "top_tokens_by_act": pl.List(pl.String),  # by summed activation
        "top_token_act_sums": pl.List(pl.Float64),
        "label": pl.String,  # featgraph.explain.labels.make_label; "" if never active
    }
)

EXAMPLES_SCHEMA = pl.Schema(
    {
        "sae": pl.String,
        "feature": pl.Int32,
        "rank": pl.Int16,  # 0 = highest activation
        "activation": pl.Float32,  # the max over the context
        "context": pl.Int64,  # context index in the store (row of tokens.npy)
        "position": pl.Int32,  # token position of the max within the context (BOS, when stored, is position 0)
        "token_ids": pl.List(pl.Int32),  # the window
        "tokens": pl.List(pl.String),  # decoded window tokens
        "acts": pl.List(pl.Float32),  # the feature's activation on each window token
        "center": pl.Int16,  # index of the max token inside the window
    }
)


def _lists(offsets: np.ndarray, values: np.ndarray | list, dtype: pl.DataType) -> pl.Series:
    """A list column from flat ``values`` cut at ``offsets`` (length rows + 1), built in Arrow without a Python loop
    over rows."""
    import pyarrow as pa

    arr = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
    return pl.Series(pl.from_arrow(arr)).cast(pl.List(dtype))


def _feature_offsets(n: int, feat: np.ndarray) -> np.ndarray:
    """Offsets of per-feature groups in flat entries sorted by ascending feature."""
    return np.concatenate([[0], np.cumsum(np.bincount(feat, minlength=n))])


def stats_table(sae: str, n_tokens: int, stats: FeatureStats, max_act: np.ndarray,
                strings: Callable[[np.ndarray], np.ndarray]) -> pl.DataFrame:
    """``feature_stats`` rows of one SAE; ``strings(ids)`` decodes an array of token ids (object array of str)."""
    F = stats.n_active.size
    active = stats.n_active > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(active, stats.act_sum / np.maximum(stats.n_active, 1), np.nan)
    by_count = _feature_offsets(F, stats.count_feature)
    by_act = _feature_offsets(F, stats.sum_feature)
    act_tokens = _lists(by_act, strings(stats.sum_token), pl.String)
    return pl.DataFrame(
        {
            "sae": pl.Series([sae] * F, dtype=pl.String),
            "feature": np.arange(F, dtype=np.int32),
            "n_tokens": np.full(F, n_tokens, dtype=np.int64),
            "n_active": stats.n_active.astype(np.int64),
            "frequency": stats.n_active / n_tokens if n_tokens else np.zeros(F),
            "mean_act": pl.Series(mean).fill_nan(None),
            "max_act": np.where(active, max_act, 0).astype(np.float32),
            "top_tokens": _lists(by_count, strings(stats.count_token), pl.String),
            "top_token_counts": _lists(by_count, stats.count_value.astype(np.int64), pl.Int64),
            "top_tokens_by_act": act_tokens,
            "top_token_act_sums": _lists(by_act, stats.sum_value.astype(np.float64), pl.Float64),
            "label": [make_label(t) for t in act_tokens.to_list()],
        },
        schema=STATS_SCHEMA,
    )


def examples_table(sae: str, top: TopExamples, tokens: np.ndarray, first: int,
                   strings: Callable[[np.ndarray], np.ndarray]) -> pl.DataFrame:
    """``examples`` rows of one SAE. ``tokens``: the store's token ids ``[n_contexts, context_size]`` (BOS
    included; a memory map is fine: only the windows are read); ``first``: the token position of a context's first
    stored row (1 when BOS was left out of the store)."""
    f_idx, rank = np.nonzero(top.values > 0)  # row-major: feature ascending, then rank
    ctx, pos = top.contexts[f_idx, rank], top.positions[f_idx, rank]  # pos: store position in the context
    rpc = tokens.shape[1] - first
    offsets = np.arange(-top.before, top.after + 1)
    p = pos[:, None] + offsets  # [n, L]
    inside = (p >= 0) & (p < rpc)
    ids = np.asarray(tokens.reshape(-1)[(ctx[:, None] * tokens.shape[1] + first + p.clip(0, rpc - 1))[inside]])
    acts = top.windows[f_idx, rank][inside]
    cut = np.concatenate([[0], np.cumsum(inside.sum(axis=1))])
    return pl.DataFrame(
        {
            "sae": pl.Series([sae] * f_idx.size, dtype=pl.String),
            "feature": f_idx.astype(np.int32),
            "rank": rank.astype(np.int16),
            "activation": top.values[f_idx, rank].astype(np.float32),
            "context": ctx.astype(np.int64),
            "position": (pos + first).astype(np.int32),
            "token_ids": _lists(cut, ids.astype(np.int32), pl.Int32),
            "tokens": _lists(cut, strings(ids), pl.String),
            "acts": _lists(cut, acts.astype(np.float32), pl.Float32),
            "center": (pos - np.maximum(pos - top.before, 0)).astype(np.int16),
        },
        schema=EXAMPLES_SCHEMA,
    )
