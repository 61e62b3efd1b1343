"""Figures of a families run. Each plot takes ``ax=None`` and returns the Figure.

Figures are built on :class:`matplotlib.figure.Figure` directly (not pyplot), so nothing here selects a
backend or opens a window: saving a PNG uses Agg whatever the environment, and importing featgraph stays
side-effect free.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def pair_names(features: pl.DataFrame) -> list[tuple[str, str]]:
    """Adjacent (small, large) SAE names in ladder order, from a features table."""
    names = features["sae"].unique(maintain_order=True).to_list()
    return list(zip(names[:-1], names[1:], strict=False))


def max_cos_histogram(
    features: pl.DataFrame,
    large: str,
    *,
    tau: float,
    small: str | None = None,
    bins: int = 50,
    ax: Axes | None = None,
) -> Figure:
    """The post's histogram: each feature of SAE ``large``'s max cosine to the next-smaller SAE.

    Bars left of ``tau`` (novel) and right of it (reconstruction) get different colours; the legend gives each
    group's count and share. Zero-norm rows (no max cos) are left out and counted in the title.
    """
    import polars as pl

    fig, ax = _new_axes(ax, (6.0, 3.6))
    rows = features.filter(pl.col("sae") == large)
    if rows.height == 0:
        raise ValueError(f"no features of SAE {large!r} in the table")
    vals = rows["max_cos"].drop_nulls().to_numpy()
    n_zero = int(rows["zero_norm"].sum())
    lo = min(0.0, float(vals.min())) if vals.size else 0.0
    edges = np.linspace(lo, 1.0, bins + 1)
    from featgraph.matching.core import is_novel  # the one definition of "novel"

    novel = is_novel(vals, tau)
    share = novel.mean() if vals.size else float("nan")
    ax.hist(
        vals[novel],
        bins=edges,
        color="#d95f02",
        label=f"novel (<= {tau:g}): {int(novel.sum())} ({100 * share:.1f}%)",
    )
    ax.hist(
        vals[~novel],
        bins=edges,
        color="#1b9e77",
        label=f"reconstruction (> {tau:g}): {int((~novel).sum())} ({100 * (1 - share):.1f}%)",
    )
    ax.axvline(tau, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel(f"max decoder cosine to {small}" if small else "max decoder cosine to the next-smaller SAE")
    ax.set_ylabel(f"features of {large}")
    title = f"{small} -> {large}" if small else large
    ax.set_title(title + (f" ({n_zero} zero rows left out)" if n_zero else ""), fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def max_cos_histograms(features: pl.DataFrame, *, tau: float, ncols: int = 2) -> Figure:
    """One :func:`max_cos_histogram` panel per adjacent pair of the ladder, in ladder order."""
    from matplotlib.figure import Figure

    pairs = pair_names(features)
    if not pairs:
        raise ValueError("the features table holds a single SAE: there is no pair to plot")
    ncols = min(ncols, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(6.0 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (small, large) in zip(axes, pairs, strict=False):
        max_cos_histogram(features, large, tau=tau, small=small, ax=ax)
    for ax in axes[len(pairs) :]:
        ax.set_visible(False)
    return fig
