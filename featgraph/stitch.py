"""The post's stitching analyses end to end, as tables and figures.

- :func:`analyze_pair`: for one (small, large) pair, every candidate's delta-MSE when added alone (one pass),
  the 2x2 table, the cumulative-MSE curves, the active/inactive MSE table for novel features, every family's
  swap delta-MSE and delta-L0, and the interpolation path with the pair's own SAEs as points.
  :func:`write_pair` saves it (``dmse.parquet``, ``families.parquet``, ``interpolation.parquet``,
  ``summary.json``, PNGs).
- :func:`analyze_frankenstein`: Frankenstein assembly across a ladder, decoder retraining of every stage, and
  the comparison with the ladder's own SAEs on MSE, L0 and CE recovered.

CE loss recovered needs the model; :class:`Evaluator` carries it (or not: CE columns are then null/NaN).
:mod:`featgraph.report` renders these analyses as one HTML page.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from featgraph import stitch_plots
from featgraph.delta_mse import (
    ActivationsLike,
    active_inactive_mse,
    cumulative_add_mse,
    delta_mse_add,
    delta_mse_swap,
    two_by_two,
)
from featgraph.frankenstein import Assembly, assemble, retrain_decoder
from featgraph.interpolate import default_ce_steps, interpolation_path, match_saes, plan_interpolation
from featgraph.io_utils import atomic_write, write_json
from featgraph.sae import Sae

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


# -- evaluation (reconstruction always, CE when a model is given)
# --------------------------------------------------
class Evaluator:
    """Evaluates SAEs on fixed activations and, when ``model`` and ``tokens`` are given, CE recovered."""

    def __init__(
        self,
        acts: ActivationsLike,
        *,
        model: Any = None,
        tokens: torch.Tensor | None = None,
        hook_name: str | None = None,
        model_batch_size: int = 8,
    ):
        self.acts, self.model, self.tokens, self.hook_name = acts, model, tokens, hook_name
        self.model_batch_size = model_batch_size
        self._baselines: dict[str, Any] | None = None

    @property
    def has_ce(self) -> bool:
        return self.model is not None and self.tokens is not None and len(self.tokens) > 0

    def _hook(self, sae: Sae) -> str | None:
        return self.hook_name or sae.cfg.hook_name

    def baselines(self, sae: Sae) -> dict[str, Any]:
        if self._baselines is None:
            from featgraph.evaluate import ce_baselines

            self._baselines = ce_baselines(self.model, self.tokens, self._hook(sae), batch_size=self.model_batch_size)
        return self._baselines

    def row(self, sae: Sae, name: str) -> dict[str, Any]:
        """evaluate_sae's row; cached per (name, SAE object), so a ladder SAE is evaluated once per report."""
        key = (name, id(sae))
        cache = self.__dict__.setdefault("_rows", {})
        if key not in cache:
            cache[key] = (sae, self._row(sae, name))  # holding sae keeps its id from being reused
        return dict(cache[key][1])

    def _row(self, sae: Sae, name: str) -> dict[str, Any]:
        from featgraph.evaluate import evaluate_sae

        kw = {}
        if self.has_ce:
            kw = {"model": self.model, "tokens": self.tokens, "baselines": self.baselines(sae)}
        return evaluate_sae(
            sae,
            acts=self.acts,
            hook_name=self._hook(sae),
            name=name,
            model_batch_size=self.model_batch_size,
            **kw,
        )

    def ce_recovered(self, sae: Sae) -> float:
        """CE loss recovered from zero ablation (the post's first CE column)."""
        from featgraph.evaluate import ce_metrics

        return float(
            ce_metrics(
                sae,
                self.model,
                self.tokens,
                self._hook(sae),
                batch_size=self.model_batch_size,
                baselines=self.baselines(sae),
            )["ce_recovered_zero"]
        )


POINT_COLUMNS = ("name", "width", "l0", "mse", "explained_variance", "ce_recovered_zero", "ce_recovered_mean")


def _points(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame([{c: r[c] for c in POINT_COLUMNS} for r in rows])


# -- one pair
# ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PairAnalysis:
    small_name: str
    large_name: str
    tau: float
    features: pl.DataFrame  #: one row per large feature (dmse.parquet)
    families: pl.DataFrame  #: one row per family, swapped alone (families.parquet)
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
            "two_by_two": stitch_plots.two_by_two_figure(self.summary["two_by_two"], title=f"2x2 table, {t}"),
            "dmse_vs_max_cos": stitch_plots.dmse_vs_max_cos(
                f["max_cos"].to_numpy(),
                f["dmse"].to_numpy(),
                tau=self.tau,
                mse_base=self.summary["mse_small"],
                title=f"delta-MSE of adding one feature, {t}",
            ),
            "cumulative_mse": stitch_plots.cumulative_mse(
                self.cumulative,
                mse_large=self.summary["mse_large"],
                title=f"adding features cumulatively, {t}",
            ),
            "active_inactive": stitch_plots.active_inactive(
                self.active_inactive, title=f"MSE where novel features fire, {t}"
            ),
            "interpolation": stitch_plots.interpolation_plane(
                self.path, self.points, title=f"interpolation path on the MSE-L0 plane, {t}"
            ),
        }


FEATURE_SCHEMA = {
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


def _mean_finite(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


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
    ladder: Sequence[tuple[Sae, str]] = (),
    progress: bool = True,
) -> PairAnalysis:
    """Every table and curve of the post's stitching sections for one pair (see module docstring).

    ``ladder``: (SAE, name) of every SAE to show as a point on the interpolation plane (default: the pair).
    """
    evaluator = evaluator or Evaluator(acts)
    kw = {"batch_size": batch_size, "progress": progress}
    match = match_saes(small, large, tau, progress=progress)
    plan = plan_interpolation(small, large, tau, match=match)
    add = delta_mse_add(small, large, acts, **kw)
    novel = match.max_cos <= tau
    fam_of_large = np.full(large.n_features, -1, dtype=np.int64)
    for fam in plan.families:
        fam_of_large[fam.large_features] = fam.family
    ai = active_inactive_mse(small, large, acts, np.arange(large.n_features), **kw)
    features = pl.DataFrame(
        {
            "large_feature": np.arange(large.n_features),
            "max_cos": match.max_cos,
            "argmax_small": match.argmax,
            "category": np.where(novel, "novel", "reconstruction"),
            "family": fam_of_large,
            "dmse": add.dmse,
            "dmse_relative": add.dmse / add.mse_base,
            "dl0": add.dl0,
            "active_frac": ai.active_frac,
            "small_mse_active": ai.base_active,
            "small_mse_inactive": ai.base_inactive,
            "large_mse_active": ai.donor_active,
            "large_mse_inactive": ai.donor_inactive,
        },
        schema=FEATURE_SCHEMA,
    )
    # cumulative curves: each set ordered by its own single-feature delta-MSE, most helpful first
    novel_order = np.flatnonzero(novel)[np.argsort(add.dmse[novel], kind="stable")]
    recon_order = np.flatnonzero(~novel)[np.argsort(add.dmse[~novel], kind="stable")]
    cumulative = {
        f"novel ({novel_order.size})": cumulative_add_mse(small, large, acts, novel_order, **kw),
        f"reconstruction ({recon_order.size})": cumulative_add_mse(small, large, acts, recon_order, **kw),
    }
    fams = [(f.small_features, f.large_features) for f in plan.families]
    swap = delta_mse_swap(small, large, acts, fams, **kw)
    families = pl.DataFrame(
        {
            "family": [f.family for f in plan.families],
            "kind": [f.kind for f in plan.families],
            "n_small": [len(f.small_features) for f in plan.families],
            "n_large": [len(f.large_features) for f in plan.families],
            "max_cos": plan.strength,
            "swap_rank": np.argsort(plan.order).astype(np.int64),
            "dmse": swap.dmse,
            "dmse_relative": swap.dmse / swap.mse_base,
            "dl0": swap.dl0,
        },
        schema={
            "family": pl.Int64,
            "kind": pl.Utf8,
            "n_small": pl.Int64,
            "n_large": pl.Int64,
            "max_cos": pl.Float64,
            "swap_rank": pl.Int64,
            "dmse": pl.Float64,
            "dmse_relative": pl.Float64,
            "dl0": pl.Float64,
        },
    )
    steps = default_ce_steps(plan.n_steps, ce_points) if evaluator.has_ce else []
    path = interpolation_path(
        small, large, acts, plan, ce_fn=evaluator.ce_recovered if steps else None, ce_steps=steps, **kw
    )
    shown = list(ladder) or [(small, small_name), (large, large_name)]
    if not any(sae is large for sae, _ in shown):
        shown.append((large, large_name))
    points = _points([evaluator.row(sae, name) for sae, name in shown])
    nf = features.filter(pl.col("category") == "novel")
    active_inactive = pl.DataFrame(
        {
            "sae": [small_name, large_name],
            "inactive": [
                _mean_finite(nf["small_mse_inactive"].to_numpy()),
                _mean_finite(nf["large_mse_inactive"].to_numpy()),
            ],
            "active": [
                _mean_finite(nf["small_mse_active"].to_numpy()),
                _mean_finite(nf["large_mse_active"].to_numpy()),
            ],
        }
    ).with_columns((pl.col("active") - pl.col("inactive")).alias("difference"))
    t22 = two_by_two(match.max_cos, add.dmse, tau)
    large_row = evaluator.row(large, large_name)
    mse_small, mse_large = add.mse_base, float(large_row["mse"])
    after_novel = float(path["mse"][1])
    share = lambda a, b: a / b if b else float("nan")  # noqa: E731
    summary = {
        "small": small_name,
        "large": large_name,
        "width_small": small.n_features,
        "width_large": large.n_features,
        "tau": tau,
        "n_tokens": add.n_tokens,
        "mse_small": mse_small,
        "mse_large": mse_large,
        "l0_small": add.l0_base,
        "l0_large": float(large_row["l0"]),
        "two_by_two": t22,
        "share_novel_lowering_mse": share(t22["novel"]["dmse_lt_0"], t22["novel"]["total"]),
        "share_reconstruction_raising_mse": share(t22["reconstruction"]["dmse_gt_0"], t22["reconstruction"]["total"]),
        "add_all_novel": {
            "n_added": int(novel.sum()),
            "mse": after_novel,
            "relative_change": after_novel / mse_small - 1.0,
            "l0": float(path["l0"][1]),
            "sum_of_single_dmse": float(add.dmse[novel].sum()),
            "best_prefix_mse": float(cumulative[f"novel ({novel_order.size})"].min()),
        },
        "swaps": {
            "n_families": len(plan.families),
            "kinds": {k: int(v) for k, v in families["kind"].value_counts().iter_rows()},
            "share_raising_mse": share(int((swap.dmse > 0).sum()), len(plan.families)),
            "share_lowering_l0": share(int((swap.dl0 < 0).sum()), len(plan.families)),
        },
        "path_end": {
            "n_features": int(path["n_features"][-1]),
            "mse": float(path["mse"][-1]),
            "l0": float(path["l0"][-1]),
        },
        "active_inactive_novel_mean": active_inactive.to_dicts(),
        "swap_order": "families by their strongest edge (max decoder cos), highest first; ties by family id",
    }
    return PairAnalysis(
        small_name, large_name, tau, features, families, path, points, cumulative, active_inactive, summary
    )


def write_pair(
    a: PairAnalysis,
    out: str | Path,
    config: dict[str, Any] | None = None,
    *,
    inputs: Sequence[str | Path | None] = (),
) -> Path:
    """Write a pair analysis into ``out`` as a whole (:func:`featgraph.output_dir.open_output`: never over an
    input, never over a foreign folder, a killed run leaves the earlier result) and return the folder."""
    from featgraph.output_dir import open_output

    with open_output(out, command="stitch", inputs=inputs) as tmp:
        write_pair_files(a, tmp, config)
    return Path(out)


def write_pair_files(a: PairAnalysis, out: Path, config: dict[str, Any] | None = None) -> Path:
    """The files of a pair analysis, into a folder the caller owns (a temporary of :mod:`featgraph.output_dir`)."""
    from featgraph.tables import write_parquet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(a.features, out / "dmse.parquet")
    write_parquet(a.families, out / "families.parquet")
    write_parquet(a.path, out / "interpolation.parquet")
    write_parquet(a.points, out / "points.parquet")
    write_parquet(
        pl.DataFrame({k: pl.Series(v) for k, v in _pad(a.cumulative).items()}), out / "cumulative_mse.parquet"
    )
    for name, png in pngs(a).items():
        atomic_write(out / f"{name}.png", lambda p, png=png: p.write_bytes(png))
    write_json(out / "summary.json", a.summary)
    if config is not None:
        write_json(out / "config.json", config)
    return out


def _pad(curves: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = max(len(c) for c in curves.values())
    return {k: np.concatenate([c, np.full(n - len(c), np.nan)]) for k, c in curves.items()}


# -- Frankenstein
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FrankensteinAnalysis:
    assembly: Assembly
    retrained: list[Sae]  #: one per stage (stage 0 too: its decoder is retrained like the others)
    table: pl.DataFrame  #: kind, name, width, l0, mse, explained_variance, CE recovered
    losses: list[list[float]]

    def figures(self) -> dict[str, Figure]:
        return {"frankenstein": stitch_plots.frankenstein_comparison(self.table)}


def analyze_frankenstein(
    saes: Sequence[Sae],
    names: Sequence[str],
    *,
    train_acts: ActivationsLike,
    evaluator: Evaluator,
    tau: float = 0.7,
    n_tokens: int = 200_000,
    lr: float = 1e-3,
    batch_size: int = 1024,
    seed: int = 0,
    retrain_ladder: bool = True,
    progress: bool = True,
) -> FrankensteinAnalysis:
    """Assemble, retrain every stage's decoder on ``train_acts``, and evaluate everything with ``evaluator``.

    With ``retrain_ladder`` the ladder's own SAEs get the same decoder retraining (same tokens, lr, seed) as a
    control: retraining alone can lower an SAE's MSE (an L1-trained decoder is shrunk), and only this control
    separates the gain from stitching from the gain from retraining. Stage 0 *is* the smallest SAE, so its row
    is reused.
    """
    asm = assemble(saes, names, tau=tau, progress=progress)
    by_name = dict(zip(names, saes, strict=False))
    rows = [dict(evaluator.row(by_name[n], n), kind="ladder") for n in asm.names]
    retrained, losses = [], []
    for k, stage in enumerate(asm.stages):
        label = f"frank-{k + 1}sae"
        rows.append(dict(evaluator.row(stage, label), kind="frankenstein"))
        res = retrain_decoder(
            stage, train_acts, n_tokens=n_tokens, lr=lr, batch_size=batch_size, seed=seed, progress=progress
        )
        retrained.append(res.sae)
        losses.append(res.losses)
        rows.append(dict(evaluator.row(res.sae, label + "-retrained"), kind="frankenstein (retrained)"))
    if retrain_ladder:
        control = "ladder (decoder retrained)"
        for k, n in enumerate(asm.names):
            if k == 0:
                rows.append(dict(evaluator.row(retrained[0], f"{n}-retrained"), kind=control))
                continue
            res = retrain_decoder(
                by_name[n],
                train_acts,
                n_tokens=n_tokens,
                lr=lr,
                batch_size=batch_size,
                seed=seed,
                progress=progress,
            )
            rows.append(dict(evaluator.row(res.sae, f"{n}-retrained"), kind=control))
    cols = ("kind", *POINT_COLUMNS)
    table = pl.DataFrame([{c: r[c] for c in cols} for r in rows])
    return FrankensteinAnalysis(asm, retrained, table, losses)


def write_frankenstein(
    a: FrankensteinAnalysis,
    out: str | Path,
    config: dict[str, Any] | None = None,
    *,
    inputs: Sequence[str | Path | None] = (),
) -> Path:
    """Write a Frankenstein analysis into ``out`` as a whole (see :func:`write_pair`) and return the folder."""
    from featgraph.output_dir import open_output

    with open_output(out, command="frankenstein", inputs=inputs) as tmp:
        write_frankenstein_files(a, tmp, config)
    return Path(out)


def write_frankenstein_files(a: FrankensteinAnalysis, out: Path, config: dict[str, Any] | None = None) -> Path:
    """The final retrained SAE (featgraph and SAELens formats), per-stage origin, comparison table and
    figure, into a folder the caller owns."""
    from featgraph.formats import save_saelens
    from featgraph.tables import write_parquet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = a.retrained[-1]
    final.save(out / "sae")
    save_saelens(final, out / "sae_saelens")
    a.assembly.sae.save(out / "sae_before_retraining")
    write_parquet(a.assembly.origin, out / "origin.parquet")
    write_parquet(a.table, out / "comparison.parquet")
    for name, png in pngs(a).items():
        atomic_write(out / f"{name}.png", lambda p, png=png: p.write_bytes(png))
    final_row = a.table.filter(pl.col("kind") == "frankenstein (retrained)").row(-1, named=True)
    write_json(
        out / "metrics.json",
        {
            "final": final_row,
            "stage_widths": [s.n_features for s in a.assembly.stages],
            "sources": a.assembly.names,
            "loss_first": [lo[0] for lo in a.losses],
            "loss_last": [float(np.mean(lo[-10:])) for lo in a.losses],
        },
    )
    if config is not None:
        write_json(out / "config.json", config)
    return out


def pngs(a: PairAnalysis | FrankensteinAnalysis) -> dict[str, bytes]:
    """Each figure of an analysis as PNG bytes, rendered once and kept (files and HTML share them)."""
    cache = a.__dict__.setdefault("_pngs", {})
    if not cache:
        cache.update({name: stitch_plots.figure_png(fig) for name, fig in a.figures().items()})
    return cache
