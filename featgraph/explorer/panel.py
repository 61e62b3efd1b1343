"""The weekday-style panel: for the largest split families, the parent's and the children's top tokens side by
side, so that what each child took from its parent reads at a glance (the post's weekday feature splitting into
one child per day is this picture).

Built from the explorer's page data (:func:`featgraph.explorer.data.page_data`), on a bare
:class:`matplotlib.figure.Figure` as :mod:`featgraph.plots` does (no pyplot, no backend chosen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

N_TOKENS = 5  # top tokens per box
MAX_CHILDREN = 6  # children drawn per family (the rest are counted in the row's title)


def largest_splits(data: dict[str, Any], n: int = 5) -> list[list[Any]]:
    """The ``n`` split families with the most children (ties: fewer parents, then ladder order, then family id),
    as rows of ``data["families"]``."""
    splits = [r for r in data["families"] if r[2] == "split"]
    return sorted(splits, key=lambda r: (-len(r[4]), len(r[3]), r[0], r[1]))[:n]


def _box_text(data: dict[str, Any], si: int, f: int) -> str:
    from featgraph.explain.labels import readable_token

    feats = data["features"][si]
    # " line" and "line" read the same once stripped: shown once, as explain's labels do
    toks = list(dict.fromkeys(readable_token(t) for t in feats["top"][f][:N_TOKENS])) or ["(never active)"]
    freq = feats["freq"][f]
    head = f"{data['saes'][si]['name']}:{f}" + (f"  {100 * freq:.2g}%" if freq else "")
    return head + "\n" + "\n".join(toks)


def split_panel(data: dict[str, Any], n: int = 5) -> Figure:
    """One row per family of :func:`largest_splits`: the parent's box on the left, an arrow, the children's
    boxes (top tokens by count, firing frequency in the header)."""
    from matplotlib.figure import Figure

    rows = largest_splits(data, n)
    n_cols = 1 + min(MAX_CHILDREN, max((len(r[4]) for r in rows), default=1))
    fig = Figure(figsize=(1.45 * (n_cols + 0.4), 1.3 * max(1, len(rows)) + 0.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-0.1, n_cols + 0.3)
    ax.set_ylim(len(rows) - 0.3, -0.45)
    if not rows:
        ax.text(0.5, 0, "no split families", ha="center")
    # parse_math=False everywhere: a token such as "$x$" is text, not mathtext
    box = {"boxstyle": "round,pad=0.35", "linewidth": 0.8}
    for y, r in enumerate(rows):
        p, fam, _kind, parents, children, lo, hi = r
        more = len(children) - MAX_CHILDREN
        title = (f"family {data['saes'][p]['name']}:{fam}: {len(parents)} -> {len(children)} "
                 f"(cos {lo}-{hi})" + (f", {more} more children not shown" if more > 0 else ""))
        ax.text(0, y - 0.36, title, fontsize=8, fontweight="bold", va="bottom", parse_math=False)
        ax.text(0, y - 0.3, "\n\n".join(_box_text(data, p, f) for f in parents), fontsize=7, va="top",
                family="monospace", parse_math=False, bbox={**box, "facecolor": "#e7f5ff", "edgecolor": "#1971c2"})
        ax.annotate("", xy=(1.05, y - 0.2), xytext=(0.85, y - 0.2), arrowprops={"arrowstyle": "->", "color": "#555"})
        for c, f in enumerate(children[:MAX_CHILDREN]):
            ax.text(1.1 + c, y - 0.3, _box_text(data, p + 1, f), fontsize=7, va="top", family="monospace",
                    parse_math=False, bbox={**box, "facecolor": "#fff4e6", "edgecolor": "#d9480f"})
    fig.suptitle("largest split families: the parent's top tokens (left) beside its children's", fontsize=10)
    return fig


def split_panel_png(data: dict[str, Any], n: int = 5, dpi: int = 110) -> bytes:
    from featgraph.stitch.figures import figure_png

    return figure_png(split_panel(data, n), dpi)
