"""The post's stitching figures for one (small, large) pair and for Frankenstein SAEs.

Each function takes ``ax=None`` (a new Figure is made) and returns the Figure. Figures are built on
:class:`matplotlib.figure.Figure` directly, never pyplot, so nothing selects a backend or opens a window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from featgraph.matching.core import is_novel  # the one definition of "novel"

if TYPE_CHECKING:
    import polars as pl
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

NOVEL_COLOR = "tab:blue"
RECON_COLOR = "tab:orange"


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6.0, 4.2)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def dmse_vs_max_cos(
    max_cos: np.ndarray,
    dmse: np.ndarray,
    *,
    tau: float = 0.7,
    mse_base: float | None = None,
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Scatter of each large feature's delta-MSE when added alone against its max cos to the small SAE."""
    fig, ax = _axes(ax)
    max_cos, dmse = np.asarray(max_cos), np.asarray(dmse)
    y = dmse / mse_base if mse_base else dmse
    novel = is_novel(max_cos, tau)
    ax.scatter(max_cos[novel], y[novel], s=6, alpha=0.6, color=NOVEL_COLOR, label=f"novel (max cos <= {tau:g})")
    ax.scatter(
        max_cos[~novel],
        y[~novel],
        s=6,
        alpha=0.6,
        color=RECON_COLOR,
        label=f"reconstruction (max cos > {tau:g})",
    )
    ax.axhline(0.0, color="k", lw=0.8)
    ax.axvline(tau, color="grey", ls="--", lw=0.8)
    ax.set_yscale(
        "symlog",
        linthresh=max(float(np.percentile(np.abs(y[y != 0]), 10)), 1e-12) if (y != 0).any() else 1e-12,
    )
    ax.set_xlabel("max decoder cos to the small SAE")
    ax.set_ylabel("delta-MSE / MSE(small)" if mse_base else "delta-MSE")
    ax.set_title(title or "adding one large-SAE feature to the small SAE")
    ax.legend(loc="best", fontsize=8)
    return fig


def two_by_two_figure(table: Mapping[str, Mapping[str, int]], *, title: str = "", ax: Axes | None = None) -> Figure:
    """The 2x2 table (novel / reconstruction x dMSE < 0 / > 0) drawn as a small annotated grid."""
    fig, ax = _axes(ax, (4.6, 2.6))
    cols = ["novel", "reconstruction"]
    rows = [("dmse_lt_0", "dMSE < 0"), ("dmse_gt_0", "dMSE > 0")]
    grid = np.array([[table[c][r] for c in cols] for r, _ in rows], dtype=float)
    ax.imshow(grid / max(grid.max(), 1.0), cmap="Blues", vmin=0, vmax=1.5)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(grid[i, j])}", ha="center", va="center", fontsize=14)
    ax.set_xticks([0, 1], cols)
    ax.set_yticks([0, 1], [r for _, r in rows])
    ax.set_title(title or "features of the large SAE added one at a time")
    return fig


def cumulative_mse(
    curves: Mapping[str, np.ndarray],
    *,
    mse_large: float | None = None,
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """MSE of the small SAE after adding the first k features of each ordered set (curves start at k = 0)."""
    fig, ax = _axes(ax)
    colors = {"novel": NOVEL_COLOR, "reconstruction": RECON_COLOR}
    for label, curve in curves.items():
        curve = np.asarray(curve)
        ax.plot(np.arange(curve.size), curve, label=label, color=colors.get(label.split()[0]))
    if mse_large is not None:
        ax.axhline(mse_large, color="grey", ls=":", lw=1, label="large SAE")
    ax.set_xlabel("features added (ordered by their own delta-MSE, most helpful first)")
    ax.set_ylabel("MSE")
    ax.set_title(title or "cumulative effect of adding features")
    ax.legend(fontsize=8)
    return fig


def active_inactive(table: pl.DataFrame, *, title: str = "", ax: Axes | None = None) -> Figure:
    """Grouped bars: each SAE's MSE on tokens where novel features are inactive vs active (means over
    features)."""
    fig, ax = _axes(ax, (5.0, 3.6))
    names = table["sae"].to_list()
    x = np.arange(len(names))
    w = 0.38
    ax.bar(x - w / 2, table["inactive"].to_numpy(), w, label="feature inactive", color="tab:gray")
    ax.bar(x + w / 2, table["active"].to_numpy(), w, label="feature active", color="tab:red")
    ax.set_xticks(x, names)
    ax.set_ylabel("MSE")
    ax.set_title(title or "MSE where novel features fire vs not")
    ax.legend(fontsize=8)
    return fig


def interpolation_plane(
    path: pl.DataFrame, points: pl.DataFrame | None = None, *, title: str = "", ax: Axes | None = None
) -> Figure:
    """The interpolation path on the MSE-L0 plane, with the ladder's own SAEs as labelled points."""
    fig, ax = _axes(ax)
    l0, mse = path["l0"].to_numpy(), path["mse"].to_numpy()
    ax.plot(l0[:2], mse[:2], color=NOVEL_COLOR, lw=1.5, label="add all novel features")
    if l0.size > 2:
        ax.plot(l0[1:], mse[1:], color=RECON_COLOR, lw=1.0, label="then swap families (strongest edge first)")
    ax.scatter(l0[[0, -1]], mse[[0, -1]], color="k", s=12, zorder=3)
    ax.annotate("start", (l0[0], mse[0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.annotate("all swapped", (l0[-1], mse[-1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if points is not None and points.height:
        ax.scatter(
            points["l0"].to_numpy(),
            points["mse"].to_numpy(),
            marker="*",
            s=90,
            color="tab:green",
            zorder=4,
            label="ladder SAEs",
        )
        for row in points.iter_rows(named=True):
            ax.annotate(
                f"{row['name']} ({row['width']})",
                (row["l0"], row["mse"]),
                fontsize=7,
                xytext=(4, -9),
                textcoords="offset points",
            )
    ax.set_xlabel("L0")
    ax.set_ylabel("MSE")
    ax.set_title(title or "interpolating between two widths")
    ax.legend(fontsize=8)
    return fig


def frankenstein_comparison(table: pl.DataFrame, *, title: str = "") -> Figure:
    """MSE against number of features, MSE against L0 (and CE recovered against features when known).

    ``table`` needs columns ``kind`` (``ladder``, ``frankenstein``, ``frankenstein (retrained)``), ``name``,
    ``width``, ``l0``, ``mse``.
    """
    from matplotlib.figure import Figure

    panels = [("width", "mse", "number of features", "MSE"), ("l0", "mse", "L0", "MSE")]
    if "ce_recovered_zero" in table.columns and np.isfinite(table["ce_recovered_zero"].to_numpy()).any():
        panels.append(("width", "ce_recovered_zero", "number of features", "CE loss recovered (zero abl.)"))
    fig = Figure(figsize=(5.2 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels))
    style = {
        "ladder": ("o", "tab:green"),
        "frankenstein": ("s", "tab:gray"),
        "frankenstein (retrained)": ("D", "tab:purple"),
        "ladder (decoder retrained)": ("o", "tab:olive"),
    }
    for ax, (xcol, ycol, xlabel, ylabel) in zip(axes, panels, strict=False):
        for kind in table["kind"].unique(maintain_order=True).to_list():
            sub = table.filter(table["kind"] == kind).sort("width")
            marker, color = style.get(kind, ("^", None))
            ax.plot(sub[xcol].to_numpy(), sub[ycol].to_numpy(), marker=marker, color=color, label=kind)
        if xcol == "width":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Frankenstein SAEs vs the ladder")
    return fig


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """PNG bytes of a figure (Agg canvas, no pyplot)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def pngs(analysis: Any) -> dict[str, bytes]:
    """Each figure of an analysis (anything with ``figures()``) as PNG bytes, rendered once and kept on it (the
    files and the HTML page share them)."""
    cache = analysis.__dict__.setdefault("_pngs", {})
    if not cache:
        cache.update({name: figure_png(fig) for name, fig in analysis.figures().items()})
    return cache


def save_figure(fig: Figure, path: str, dpi: int = 110) -> None:
    """Write a PNG atomically."""
    from featgraph.io.files import atomic_write

    data = figure_png(fig, dpi)
    atomic_write(path, lambda p: p.write_bytes(data))


__all__: Sequence[str] = [
    "active_inactive",
    "cumulative_mse",
    "dmse_vs_max_cos",
    "figure_png",
    "pngs",
    "frankenstein_comparison",
    "interpolation_plane",
    "save_figure",
    "two_by_two_figure",
]
