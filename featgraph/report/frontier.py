"""The MSE-L0 frontier of ladders trained at several L1 values, and Frankenstein SAEs compared with it at equal L0.

A Frankenstein SAE has its own L0 (its features fire as in their source SAEs), so comparing its MSE with a ladder SAE
of another L0 mixes two effects: more active features buy lower MSE. Training each ladder width at several L1 values
gives, per width, MSE as a function of L0; a Frankenstein stage is then compared with the ladder width(s) nearest its
number of features *at its own L0*.

Decisions:

- **The same decoder treatment on both sides.** Frankenstein stages are compared after their decoder is refit
  exactly (ridge least squares, :func:`featgraph.stitch.lstsq.fit_exact_decoder`) on the first ``retrain_tokens``
  of the training store, validation tokens the last 10% of them, and evaluated with
  :class:`featgraph.stitch.evaluator.Evaluator` on the held-out store. Every frontier SAE gets exactly that: the same
  fitting / validation split, the same ridge grid, the same evaluation tokens
  (:func:`featgraph.report.frontier_run.measure_points`, where the entry point and the bootstrap live). A ladder
  SAE that the Frankenstein run also refit as its control must come out with the same MSE (checked by
  :func:`control_gap`).
- **Piecewise-linear in log L0, no extrapolation.** Between two measured points of one width MSE is linear in
  ``log L0`` (the usual shape of the trade-off, and scale-free); at a measured L0 the value is the measured MSE
  exactly. Outside ``[min L0, max L0]`` of a width there is no number: the row says "outside the frontier" and gives
  the measured range, because an L1 sweep can bend anywhere beyond it.
- **Which widths.** A stage of ``n`` features is compared with the ladder widths bracketing ``n`` (the largest width
  ``<= n`` and the smallest ``>= n``; one when ``n`` is a width or outside the widths measured); the one nearer in
  ``|log(n / width)|`` is flagged ``nearest`` (both on a tie).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from featgraph.errors import ConfigError, SaeFormatError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUTSIDE = "outside the frontier"
STAGE_KIND = "frankenstein (retrained)"
CONTROL_KIND = "ladder (decoder retrained)"
POINT_FIELDS = ("run", "name", "width", "l1", "l0", "mse", "explained_variance", "ridge", "fit_mse", "n_fit",
                "n_val")


@dataclasses.dataclass(frozen=True)
class Frontier:
    """One width's measured (L0, MSE) points, ascending in L0, and the L1 each was trained with."""

    width: int
    l0: np.ndarray
    mse: np.ndarray
    l1: np.ndarray

    @classmethod
    def from_points(cls, width: int, l0: Sequence[float], mse: Sequence[float],
                    l1: Sequence[float] | None = None) -> Frontier:
        l0a, msea = np.asarray(l0, dtype=np.float64), np.asarray(mse, dtype=np.float64)
        l1a = np.full(l0a.shape, np.nan) if l1 is None else np.asarray(l1, dtype=np.float64)
        if l0a.ndim != 1 or not l0a.size or l0a.shape != msea.shape or l1a.shape != l0a.shape:
            raise ConfigError(f"width {width}: need matching non-empty L0 / MSE / L1 lists, got {len(l0a)} / "
                              f"{len(msea)} / {len(l1a)}")
        if not (np.isfinite(l0a).all() and (l0a > 0).all() and np.isfinite(msea).all()):
            raise ConfigError(f"width {width}: L0 must be finite and > 0 and MSE finite, got L0 {l0a.tolist()}, "
                              f"MSE {msea.tolist()}")
        order = np.argsort(l0a, kind="stable")
        l0a, msea, l1a = l0a[order], msea[order], l1a[order]
        if np.any(np.diff(l0a) == 0):  # two MSEs at one L0: no single curve through them
            raise ConfigError(f"width {width}: two points at the same L0 ({l0a.tolist()})")
        return cls(int(width), l0a, msea, l1a)

    def covers(self, l0: float) -> bool:
        return bool(self.l0[0] <= l0 <= self.l0[-1])

    def weights(self, l0: float) -> list[tuple[int, float]] | None:
        """``[(point index, weight)]`` whose weighted sum of MSEs is the frontier at ``l0`` (one point at a measured
        L0, the two neighbours between, weights linear in log L0); None outside. The bootstrap reuses them."""
        if not (math.isfinite(l0) and l0 > 0) or not self.covers(l0):
            return None
        i = int(np.searchsorted(self.l0, l0, side="left"))
        if self.l0[i] == l0:
            return [(i, 1.0)]
        x0, x1 = math.log(self.l0[i - 1]), math.log(self.l0[i])
        t = (math.log(l0) - x0) / (x1 - x0)
        return [(i - 1, 1.0 - t), (i, t)]

    def at(self, l0: float) -> float | None:
        """MSE at ``l0`` (linear in log L0 between the measured points, exact at them); None outside."""
        w = self.weights(l0)
        if w is None:
            return None
        if len(w) == 1:
            return float(self.mse[w[0][0]])
        (a, wa), (b, t) = w
        return float(self.mse[a] + t * (self.mse[b] - self.mse[a]))


def frontiers(points: pl.DataFrame) -> dict[int, Frontier]:
    """One :class:`Frontier` per width of a points table (columns width, l0, mse, l1)."""
    out = {}
    for w in sorted(points["width"].unique().to_list()):
        sub = points.filter(pl.col("width") == w)
        out[int(w)] = Frontier.from_points(w, sub["l0"].to_list(), sub["mse"].to_list(), sub["l1"].to_list())
    return out


def bracketing_widths(n_features: int, widths: Sequence[int]) -> list[tuple[int, bool]]:
    """``[(width, nearest)]``: the widths bracketing ``n_features`` (module docstring), ascending."""
    ws = sorted(set(int(w) for w in widths))
    if not ws or n_features < 1:
        raise ConfigError(f"need widths and n_features >= 1, got {ws} and {n_features}")
    below = [w for w in ws if w <= n_features]
    above = [w for w in ws if w >= n_features]
    picked = sorted({*(below[-1:]), *(above[:1])})
    dist = [abs(math.log(n_features / w)) for w in picked]
    return [(w, math.isclose(d, min(dist), rel_tol=1e-12, abs_tol=1e-15)) for w, d in zip(picked, dist, strict=True)]


def equal_l0_table(stages: pl.DataFrame, fronts: Mapping[int, Frontier]) -> pl.DataFrame:
    """One row per (stage, bracketing width): the frontier's MSE at the stage's L0 and the difference (stage minus
    frontier; negative: the Frankenstein SAE reconstructs better than the ladder at equal L0), or "outside the
    frontier" with the measured L0 range."""
    rows = []
    for s in stages.iter_rows(named=True):
        for w, nearest in bracketing_widths(int(s["width"]), list(fronts)):
            f = fronts[w]
            m = f.at(float(s["l0"]))
            status = "interpolated" if m is not None else (
                f"{OUTSIDE} (L0 {s['l0']:.1f} not in [{f.l0[0]:.1f}, {f.l0[-1]:.1f}])")
            if m is not None and s["l0"] in f.l0:
                status = "measured"
            rows.append({"stage": s["name"], "stage_features": int(s["width"]), "stage_l0": float(s["l0"]),
                         "stage_mse": float(s["mse"]), "width": w, "nearest": nearest, "n_points": int(f.l0.size),
                         "frontier_l0_min": float(f.l0[0]), "frontier_l0_max": float(f.l0[-1]),
                         "frontier_mse": m, "diff": None if m is None else float(s["mse"]) - m,
                         "rel_diff": None if m is None else (float(s["mse"]) - m) / m, "status": status})
    schema = {"stage": pl.String, "stage_features": pl.Int64, "stage_l0": pl.Float64, "stage_mse": pl.Float64,
              "width": pl.Int64, "nearest": pl.Boolean, "n_points": pl.Int64, "frontier_l0_min": pl.Float64,
              "frontier_l0_max": pl.Float64, "frontier_mse": pl.Float64, "diff": pl.Float64, "rel_diff": pl.Float64,
              "status": pl.String}
    return pl.DataFrame(rows, schema=schema)


def sae_l1(sae: Any, where: str) -> float:
    """The L1 coefficient an SAE was trained with (``cfg.extra['train']``, as ``featgraph train`` records it)."""
    train = sae.cfg.extra.get("train") if isinstance(sae.cfg.extra, dict) else None
    l1 = train.get("l1_coefficient") if isinstance(train, dict) else None
    if isinstance(l1, bool) or not isinstance(l1, (int, float)) or not math.isfinite(l1):
        raise SaeFormatError(f"{where}: no L1 coefficient recorded (cfg.json extra.train.l1_coefficient), got {l1!r}")
    return float(l1)


def control_gap(points: pl.DataFrame, comparison: pl.DataFrame, runs: Sequence[str]) -> dict[str, float]:
    """|frontier MSE - Frankenstein control MSE| / control MSE for every point of ``runs`` (the ladder folders the
    Frankenstein run read) that its comparison also refit (matched by name and width): ~0 when both gave the same
    decoder treatment on the same tokens, as they must."""
    ctrl = comparison.filter(pl.col("kind") == CONTROL_KIND)
    out = {}
    for r in points.filter(pl.col("run").is_in(list(runs))).iter_rows(named=True):
        hit = ctrl.filter((pl.col("name") == f"{r['name']}-retrained") & (pl.col("width") == r["width"]))
        if hit.height:
            m = float(hit["mse"][0])
            out[r["name"]] = abs(r["mse"] - m) / m
    return out


def read_comparison(folder: str | Path) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(comparison.parquet, config.json) of a ``featgraph frankenstein`` folder (or a report's ``frankenstein/``),
    checked."""
    from featgraph.io.readers import read_json

    folder = Path(folder)
    path, cfg_path = folder / "comparison.parquet", folder / "config.json"
    for p in (path, cfg_path):
        if not p.is_file():
            raise ConfigError(f"{p}: missing (is {folder} a `featgraph frankenstein --out` folder?)")
    try:
        table = pl.read_parquet(path)
    except Exception as e:  # a truncated or foreign file: one line naming it
        raise SaeFormatError(f"{path}: not a readable Parquet table ({type(e).__name__}: {e})") from e
    missing = {"kind", "name", "width", "l0", "mse"} - set(table.columns)
    if missing:
        raise SaeFormatError(f"{path}: missing columns {sorted(missing)}")
    if not table.filter(pl.col("kind") == STAGE_KIND).height:
        raise SaeFormatError(f"{path}: no '{STAGE_KIND}' rows")
    cfg = read_json(cfg_path)
    # `featgraph report` writes the same Frankenstein folder (same files, same keys) under its own command name
    if not isinstance(cfg, dict) or cfg.get("command") not in ("frankenstein", "report"):
        raise SaeFormatError(f"{cfg_path}: not a frankenstein config")
    return table, cfg


# -- the figure and the markdown table -------------------------------------------------------------------------------
def frontier_figure(points: pl.DataFrame, stages: pl.DataFrame, *, title: str = "") -> Figure:
    """MSE against L0 (log), one line per width (each point labelled with its L1), Frankenstein stages as stars."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.subplots()
    widths = sorted(points["width"].unique().to_list())
    cmap = matplotlib.colormaps["viridis"]
    for i, w in enumerate(widths):
        sub = points.filter(pl.col("width") == w).sort("l0")
        color = cmap(0.85 * i / max(1, len(widths) - 1))  # 0.85: the top of viridis is too pale on white
        ax.plot(sub["l0"].to_numpy(), sub["mse"].to_numpy(), marker="o", color=color, label=f"ladder {w}")
        for r in sub.iter_rows(named=True):
            ax.annotate(f"L1 {r['l1']:g}", (r["l0"], r["mse"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for r in stages.iter_rows(named=True):
        ax.plot([r["l0"]], [r["mse"]], marker="*", markersize=13, color="tab:red", linestyle="none", alpha=0.8)
        ax.annotate(f"{r['name']} ({r['width']})", (r["l0"], r["mse"]), textcoords="offset points", xytext=(5, -10),
                    fontsize=7, color="tab:red")
    ax.plot([], [], marker="*", color="tab:red", linestyle="none", label="Frankenstein (decoder refit)")
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter

    for axis in (ax.xaxis,):  # plain numbers: "2x10^1" labels read badly on an L0 axis
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("L0 (held-out)")
    ax.set_ylabel("MSE (held-out, decoder refit exactly)")
    ax.legend(fontsize=8)
    ax.set_title(title or "MSE-L0 frontier per width, Frankenstein stages at their own L0")
    return fig


def equal_l0_markdown(table: pl.DataFrame) -> str:
    """The equal-L0 table as markdown (diff: stage minus ladder frontier; negative = Frankenstein better), with the
    95% interval and the share of bootstrap replicates where the Frankenstein SAE is better when the table has them."""
    ci = "diff_lo" in table.columns
    head = "| stage | features | L0 | MSE | ladder width | ladder MSE at that L0 | diff | rel. diff |"
    lines = [head + (" 95% interval | P(Frank. better) |" if ci else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---|---:|" if ci else "")]
    for r in table.iter_rows(named=True):
        w = f"{r['width']}{' (nearest)' if r['nearest'] else ''}"
        if r["frontier_mse"] is None:
            tail = f"{r['status']} | | |" + (" | |" if ci else "")
        else:
            tail = f"{r['frontier_mse']:.4f} | {r['diff']:+.4f} | {100 * r['rel_diff']:+.2f}% |"
            if ci:
                tail += f" [{r['diff_lo']:+.4f}, {r['diff_hi']:+.4f}] | {r['p_frank_better']:.3f} |"
        lines.append(f"| {r['stage']} | {r['stage_features']} | {r['stage_l0']:.1f} | {r['stage_mse']:.4f} | {w} | "
                     + tail)
    return "\n".join(lines) + "\n"
