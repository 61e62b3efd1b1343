"""Figures of a comparison, built on :class:`matplotlib.figure.Figure` (no pyplot, no backend choice, as
:mod:`featgraph.plots`): max-cos histograms both ways, the matched-pair cos histogram, and decoder cos against
activation similarity when activations were given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from featgraph.matching.core import is_novel

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from featgraph.compare.analysis import CompareAnalysis


def _hist(ax, vals: np.ndarray, tau: float, left: str, right: str, xlabel: str, ylabel: str, title: str) -> None:
    lo = min(0.0, float(vals.min())) if vals.size else 0.0
    edges = np.linspace(lo, 1.0, 51)
    below = is_novel(vals, tau)
    n = max(vals.size, 1)
    ax.hist(vals[below], bins=edges, color="#d95f02", label=f"{left} (<= {tau:g}): {int(below.sum())} "
            f"({100 * below.sum() / n:.1f}%)")
    ax.hist(vals[~below], bins=edges, color="#1b9e77", label=f"{right} (> {tau:g}): {int((~below).sum())} "
            f"({100 * (~below).sum() / n:.1f}%)")
    ax.axvline(tau, color="black", linestyle="--", linewidth=1)
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")


def max_cos_figure(an: CompareAnalysis) -> Figure:
    """Two panels: each A feature's max cos to B (lost at left of tau) and each B feature's to A (novel)."""
    from matplotlib.figure import Figure

    a, b = an.names
    fig = Figure(figsize=(12.0, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    va = np.asarray(an.a_to_b.max_cos, np.float64)[an.norms_a != 0]
    vb = np.asarray(an.b_to_a.max_cos, np.float64)[an.norms_b != 0]
    _hist(ax1, va, an.tau, "lost", "shared", f"max decoder cos to {b}", f"features of {a}", f"{a} -> {b}")
    _hist(ax2, vb, an.tau, "novel", "shared", f"max decoder cos to {a}", f"features of {b}", f"{b} -> {a}")
    return fig


def matched_cos_figure(an: CompareAnalysis) -> Figure:
    """The cos of the one-to-one assignment's pairs, with PW-MCC and the shared share in the title."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    asg = an.assignment
    _hist(ax, asg.cos, an.tau, "below", "shared", "decoder cos of the assigned pair", "assigned pairs",
          f"{an.names[0]} <-> {an.names[1]}: PW-MCC {asg.pw_mcc:.4f}, shared {100 * asg.shared_share(an.tau):.1f}%")
    return fig


def decoder_vs_activation_figure(an: CompareAnalysis) -> Figure:
    """Decoder cos against masked activation cos of every co-active pair (2-D histogram, log colour) and, on
    top, the assigned pairs; Spearman and precision/recall of the decoder edges in the title."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    assert an.coactive is not None and an.agreement is not None and an.sim is not None
    i, j, dec, met = an.coactive
    act = met["masked_cos"]
    ok = np.isfinite(act)
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    if ok.any():
        h = ax.hist2d(dec[ok], act[ok], bins=[np.linspace(-1, 1, 81), np.linspace(0, 1, 41)], cmap="Greys",
                      norm=LogNorm(), rasterized=True)
        fig.colorbar(h[3], ax=ax, label="co-active pairs")
    asg = an.assignment
    m = an.sim.metrics(asg.rows, asg.cols)["masked_cos"]
    keep = np.isfinite(m)
    ax.scatter(asg.cos[keep], m[keep], s=3, color="#d95f02", alpha=0.6, label="assigned pairs", rasterized=True)
    ax.axvline(an.tau, color="black", linestyle="--", linewidth=1)
    g = an.agreement
    ax.axhline(g.act_threshold, color="#7570b3", linestyle=":", linewidth=1)
    ax.set_xlabel("decoder cos")
    ax.set_ylabel("masked activation cos")
    ax.set_title(f"Spearman {g.spearman['masked_cos']:.3f} over {g.n_coactive} co-active pairs; decoder edges: "
                 f"P {g.precision:.3f}, R {g.recall:.3f}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    return fig
