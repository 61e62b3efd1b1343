"""The post's stitching analyses of one (small, large) pair, from one pass over the activations.

:func:`analyze_pair` matches the pair's decoders, finds its novel features and families, reads the activations
once (:func:`featgraph.stitch.stream.stream_pair`) and derives from that pass: every large feature's delta-MSE when
added alone, the 2x2 table, the cumulative-MSE curves, the active/inactive MSE table for novel features, every
family's swap delta-MSE and delta-L0, the interpolation path, and the pair's own points (MSE, L0, explained
variance). CE loss recovered needs the model; :class:`~featgraph.stitch.evaluator.Evaluator` carries it (or not:
CE columns are then null/NaN). :func:`write_pair_files` saves it: ``dmse.parquet`` (one row per large feature),
``swaps.parquet`` (one row per family swapped alone; not the families command's ``families.parquet``, whose
schema differs), ``interpolation.parquet``, ``points.parquet``, ``cumulative_mse.parquet``, ``summary.json`` and
the PNG figures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from featgraph.graph import family_of_features
from featgraph.io.files import atomic_write, write_json
from featgraph.matching import is_novel, match_saes
from featgraph.sae import Sae
from featgraph.stitch import figures as plots
from featgraph.stitch.batches import ActivationsLike
from featgraph.stitch.delta_mse import two_by_two
from featgraph.stitch.evaluator import Evaluator, points_table
from featgraph.stitch.interpolate import default_ce_steps, path_sae, path_table, plan_interpolation
from featgraph.stitch.stream import stream_pair
from featgraph.tables import DMSE_SCHEMA as FEATURE_SCHEMA
from featgraph.tables import SWAP_SCHEMA

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DMSE_FILE, SWAPS_FILE, PATH_FILE = "dmse.parquet", "swaps.parquet", "interpolation.parquet"
POINTS_FILE, CUMULATIVE_FILE, SUMMARY_FILE = "points.parquet", "cumulative_mse.parquet", "summary.json"
FIGURES = ("two_by_two", "dmse_vs_max_cos", "cumulative_mse", "active_inactive", "interpolation")


@dataclasses.dataclass
class PairAnalysis:
    small_name: str
    large_name: str
    tau: float
    features: pl.DataFrame  #: one row per large feature (dmse.parquet)
    swaps: pl.DataFrame  #: one row per family, swapped alone (swaps.parquet)
    path: pl.DataFrame  #: the interpolation path (interpolation.parquet)
    points: pl.DataFrame  #: the pair's own SAEs, evaluated on the same activations
    cumulative: dict[str, np.ndarray]
    active_inactive: pl.DataFrame
    summary: dict[str, Any]

    @property
    def title(self) -> str:
        return f"{self.small_name} -> {self.large_name}"

    def figures(self) -> dict[str, Figure]:
        f = self.features
        t = self.title
        return {
            "two_by_two": plots.two_by_two_figure(self.summary["two_by_two"], title=f"2x2 table, {t}"),
            "dmse_vs_max_cos": plots.dmse_vs_max_cos(
                f["max_cos"].to_numpy(),
                f["dmse"].to_numpy(),
                tau=self.tau,
                mse_base=self.summary["mse_small"],
                title=f"delta-MSE of adding one feature, {t}",
            ),
            "cumulative_mse": plots.cumulative_mse(
                self.cumulative,
                mse_large=self.summary["mse_large"],
                title=f"adding features cumulatively, {t}",
            ),
            "active_inactive": plots.active_inactive(
                self.active_inactive, title=f"MSE where novel features fire, {t}"
            ),
            "interpolation": plots.interpolation_plane(
                self.path, self.points, title=f"interpolation path on the MSE-L0 plane, {t}"
            ),
        }


def _mean_finite(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def _share(a: float, b: float) -> float:
    return a / b if b else float("nan")


def analyze_pair(
    small: Sae,
    large: Sae,
    acts: ActivationsLike,
    *,
    small_name: str = "small",
    large_name: str = "large",
    tau: float = 0.7,
    evaluator: Evaluator | None = None,
    ce_points: int = 6,
    batch_size: int = 4096,
    progress: bool = True,
    n_boot: int = 1000,
    boot_seed: int = 0,
) -> PairAnalysis:
    """Every table and curve of the post's stitching sections for one pair, from one pass over ``acts``.

    ``points`` holds the pair's two SAEs; a report replaces it with the whole ladder's rows. ``summary['intervals']``
    holds 95% bootstrap intervals over held-out contexts (``n_boot`` replicates, seeded by ``boot_seed``; none when
    ``n_boot`` is 0), from per-context sums of the same pass (:mod:`featgraph.stitch.bootstrap`).
    """
    from featgraph.config import check_tau
    from featgraph.stitch.bootstrap import context_layout, pair_intervals

    tau = check_tau(tau)
    evaluator = evaluator or Evaluator(acts)
    match = match_saes(small, large, tau, progress=progress)
    plan = plan_interpolation(small, large, tau, match=match)
    per, phase, unit = context_layout(acts)
    m = stream_pair(small, large, acts, plan.families, batch_size=batch_size, progress=progress,
                    novel=np.asarray(plan.novel, np.int64), context_rows=per if n_boot else None,
                    context_phase=phase, context_unit=unit)
    novel = is_novel(match.max_cos, tau)
    dmse, dl0 = m.add_each()
    features = pl.DataFrame(
        {
            "large_feature": np.arange(large.n_features),
            "max_cos": match.max_cos,
            "argmax_small": match.argmax,
            "category": np.where(novel, "novel", "reconstruction"),
            "family": family_of_features(plan.families, large.n_features, "large"),
            "dmse": dmse,
            "dmse_relative": dmse / m.mse_small,
            "dl0": dl0,
            "active_frac": m.active_frac,
            "small_mse_active": m.small_active,
            "small_mse_inactive": m.small_inactive,
            "large_mse_active": m.large_active,
            "large_mse_inactive": m.large_inactive,
        },
        schema=FEATURE_SCHEMA,
    )
    # cumulative curves: each set ordered by its own single-feature delta-MSE, most helpful first
    novel_order = np.flatnonzero(novel)[np.argsort(dmse[novel], kind="stable")]
    recon_order = np.flatnonzero(~novel)[np.argsort(dmse[~novel], kind="stable")]
    cumulative = {
        f"novel ({novel_order.size})": m.cumulative(novel_order),
        f"reconstruction ({recon_order.size})": m.cumulative(recon_order),
    }
    swap_dmse, swap_dl0 = m.swap_each(plan.families)
    swaps = pl.DataFrame(
        {
            "family": [f.family for f in plan.families],
            "kind": [f.kind for f in plan.families],
            "n_small": [len(f.small_features) for f in plan.families],
            "n_large": [len(f.large_features) for f in plan.families],
            "max_cos": plan.strength,
            "swap_rank": np.argsort(plan.order).astype(np.int64),
            "dmse": swap_dmse,
            "dmse_relative": swap_dmse / m.mse_small,
            "dl0": swap_dl0,
        },
        schema=SWAP_SCHEMA,
    )
    path = _path_table(small, large, plan, m, evaluator, ce_points)
    own = [
        {"name": small_name, "width": small.n_features, "l0": m.l0_small, "mse": m.mse_small,
         "explained_variance": 1.0 - m.mse_small / m.total_var, **evaluator.ce(small)},
        {"name": large_name, "width": large.n_features, "l0": m.l0_large, "mse": m.mse_large,
         "explained_variance": 1.0 - m.mse_large / m.total_var, **evaluator.ce(large)},
    ]
    nf = features.filter(pl.col("category") == "novel")
    active_inactive = pl.DataFrame(
        {
            "sae": [small_name, large_name],
            "inactive": [_mean_finite(nf["small_mse_inactive"].to_numpy()),
                         _mean_finite(nf["large_mse_inactive"].to_numpy())],
            "active": [_mean_finite(nf["small_mse_active"].to_numpy()),
                       _mean_finite(nf["large_mse_active"].to_numpy())],
        }
    ).with_columns((pl.col("active") - pl.col("inactive")).alias("difference"))
    t22 = two_by_two(match.max_cos, dmse, tau)
    after_novel = float(path["mse"][1])
    summary = {
        "small": small_name,
        "large": large_name,
        "width_small": small.n_features,
        "width_large": large.n_features,
        "tau": tau,
        "n_tokens": m.n_tokens,
        "mse_small": m.mse_small,
        "mse_large": m.mse_large,
        "l0_small": m.l0_small,
        "l0_large": m.l0_large,
        "two_by_two": t22,
        "share_novel_lowering_mse": _share(t22["novel"]["dmse_lt_0"], t22["novel"]["total"]),
        "share_reconstruction_raising_mse": _share(t22["reconstruction"]["dmse_gt_0"], t22["reconstruction"]["total"]),
        "add_all_novel": {
            "n_added": int(novel.sum()),
            "mse": after_novel,
            "relative_change": after_novel / m.mse_small - 1.0,
            "l0": float(path["l0"][1]),
            "sum_of_single_dmse": float(dmse[novel].sum()),
            "best_prefix_mse": float(cumulative[f"novel ({novel_order.size})"].min()),
        },
        "swaps": {
            "n_families": len(plan.families),
            "kinds": {k: int(v) for k, v in swaps["kind"].value_counts().iter_rows()},
            "share_raising_mse": _share(int((swap_dmse > 0).sum()), len(plan.families)),
            "share_lowering_l0": _share(int((swap_dl0 < 0).sum()), len(plan.families)),
        },
        "path_end": {
            "n_features": int(path["n_features"][-1]),
            "mse": float(path["mse"][-1]),
            "l0": float(path["l0"][-1]),
        },
        "active_inactive_novel_mean": active_inactive.to_dicts(),
        "swap_order": "families by their strongest edge (max decoder cos), highest first; ties by family id",
    }
    if n_boot:
        summary["intervals"] = pair_intervals(m, novel, n_boot=n_boot, seed=boot_seed)
    return PairAnalysis(small_name, large_name, tau, features, swaps, path, points_table(own), cumulative,
                        active_inactive, summary)


def _path_table(small: Sae, large: Sae, plan, m, evaluator: Evaluator, ce_points: int) -> pl.DataFrame:
    """The interpolation path (:mod:`featgraph.stitch.interpolate`) from the pass's sums; CE at chosen steps."""
    fams = [plan.families[i] for i in plan.order]
    mse, l0 = m.path([np.asarray(plan.novel, np.int64)] + [m.family_members(f) for f in fams])
    n_steps = plan.n_steps
    ce: list[float | None] = [None] * n_steps
    for st in default_ce_steps(n_steps, ce_points) if evaluator.has_ce else []:
        ce[st] = evaluator.ce_recovered(path_sae(small, large, plan, st))
    return path_table(small.n_features, plan, mse, l0, m.total_var, ce)


def write_pair_files(a: PairAnalysis, out: Path, config: dict[str, Any] | None = None) -> Path:
    """The files of a pair analysis, into a folder the caller owns (a temporary of :mod:`featgraph.io.output`)."""
    from featgraph.tables import write_parquet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(a.features, out / DMSE_FILE)
    write_parquet(a.swaps, out / SWAPS_FILE)
    write_parquet(a.path, out / PATH_FILE)
    write_parquet(a.points, out / POINTS_FILE)
    write_parquet(pl.DataFrame({k: pl.Series(v) for k, v in _pad(a.cumulative).items()}), out / CUMULATIVE_FILE)
    for name, png in plots.pngs(a).items():
        atomic_write(out / f"{name}.png", lambda p, png=png: p.write_bytes(png))
    write_json(out / SUMMARY_FILE, a.summary)
    if config is not None:
        write_json(out / "config.json", config)
    return out


def _pad(curves: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = max(len(c) for c in curves.values())
    return {k: np.concatenate([c, np.full(n - len(c), np.nan)]) for k, c in curves.items()}
