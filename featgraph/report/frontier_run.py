"""The entry point of the equal-L0 comparison (``examples/frontier_smollm2.py``): measure every ladder SAE of the runs
with the Frankenstein comparison's decoder treatment, read each Frankenstein stage off the frontier
(:mod:`featgraph.report.frontier`), and give each difference a 95% interval from a bootstrap over held-out contexts.

The interval needs each stage's per-context squared error, which a ``featgraph frankenstein`` folder does not keep;
the stages are rebuilt from it instead: stage k is the first ``width`` (comparison.parquet) features of
``sae_before_retraining`` (assembly only appends), refit exactly on the same tokens from one pass over the final
stage (prefix moments, as :func:`featgraph.stitch.frankenstein.analyze_frankenstein` does) and evaluated; their MSEs
must equal the folder's (``stage_gap``). A difference ``stage - sum_i w_i * point_i`` (the frontier's weights,
linear in log L0) is recomputed per replicate from the per-context sums, as
:func:`featgraph.stitch.bootstrap.comparison_intervals` does for the Frankenstein table, with its BCa interval.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featgraph.config import CommandConfig, check_int, check_path, check_seed, run_only
from featgraph.errors import ConfigError
from featgraph.report.frontier import (
    POINT_FIELDS,
    STAGE_KIND,
    control_gap,
    equal_l0_markdown,
    equal_l0_table,
    frontier_figure,
    frontiers,
    read_comparison,
    sae_l1,
)


@dataclasses.dataclass
class FrontierConfig(CommandConfig):
    """``examples/frontier_smollm2.py``: ladder runs (each a folder of SAE folders, or a training run folder with
    ``ladder/``) and a ``featgraph frankenstein`` folder; the held-out and training stores and the fitting tokens
    default to the Frankenstein run's own and must match them. ``n_boot = 0``: no intervals (and no stage rebuild)."""

    command = "frontier"
    path_fields = ("runs", "frankenstein", "acts", "train_acts")
    out: str = ""
    runs: tuple[str, ...] = ()
    frankenstein: str = ""
    acts: str | None = None
    train_acts: str | None = None
    fit_tokens: int | None = None
    n_tokens: int | None = None
    n_boot: int = 1000
    seed: int = 0
    progress: bool = run_only(True)

    def __post_init__(self) -> None:
        self.out = check_path("out", self.out)
        self.runs = tuple(check_path("run", r) for r in self.runs)
        if not self.runs:
            raise ConfigError("need at least one --run")
        self.frankenstein = check_path("frankenstein", self.frankenstein)
        self.acts = check_path("acts", self.acts, optional=True)
        self.train_acts = check_path("train_acts", self.train_acts, optional=True)
        self.fit_tokens = check_int("fit_tokens", self.fit_tokens, minimum=2, optional=True)
        self.n_tokens = check_int("n_tokens", self.n_tokens, minimum=1, optional=True)
        self.n_boot = check_int("n_boot", self.n_boot)
        self.seed = check_seed(self.seed)


@dataclasses.dataclass
class FrontierResult:
    out: Path
    points: pl.DataFrame
    equal_l0: pl.DataFrame
    control_gap: dict[str, float]
    stage_gap: dict[str, float]
    config: dict[str, Any]


def point_label(name: str, l1: float) -> str:
    """The evaluator's name of a point: a folder name may repeat across runs, (name, L1) does not."""
    return f"{name} (L1 {l1:g})"


def measure_points(saes: Sequence[Any], names: Sequence[str], runs: Sequence[str], l1s: Sequence[float], *, fit: Any,
                   val: Any, evaluator: Any, progress: bool = True) -> pl.DataFrame:
    """The frontier points: each SAE's decoder refit exactly on ``fit`` (ridge chosen on ``val``), then evaluated
    with ``evaluator`` (the Frankenstein comparison's treatment). L0 is the SAE's own: the encoder is unchanged."""
    from tqdm.auto import tqdm

    from featgraph.stitch.lstsq import fit_exact_decoder

    rows = []
    for sae, name, run, l1 in tqdm(list(zip(saes, names, runs, l1s, strict=True)), desc="frontier SAEs",
                                   unit="sae", disable=not progress):
        res = fit_exact_decoder(sae, fit, val, progress=progress)
        row = evaluator.row(res.sae, point_label(name, l1))
        rows.append({"run": run, "name": name, "width": int(sae.n_features), "l1": float(l1), "l0": row["l0"],
                     "mse": row["mse"], "explained_variance": row["explained_variance"], "ridge": res.ridge,
                     "fit_mse": res.train_mse, "n_fit": res.n_fit, "n_val": res.n_val})
    return pl.DataFrame(rows).select(POINT_FIELDS).sort("width", "l0")


def prefix_sae(sae: Any, k: int) -> Any:
    """The SAE of ``sae``'s first ``k`` features (encoder, decoder rows and thresholds; biases of the input kept)."""
    from featgraph.sae import Sae, SaeConfig

    t = {n: v.detach().clone() for n, v in sae.tensors().items()}
    t["W_enc"], t["b_enc"], t["W_dec"] = t["W_enc"][:, :k], t["b_enc"][:k], t["W_dec"][:k]
    if "threshold" in t:
        t["threshold"] = t["threshold"][:k]
    cfg = SaeConfig(**{**dataclasses.asdict(sae.cfg), "n_features": k})
    return Sae.from_tensors(t, cfg, where=f"stage of {k} features")


def folders_read(fcfg: dict[str, Any]) -> list[str]:
    """The folders a Frankenstein run read its SAEs from, resolved: ``featgraph frankenstein`` records the ladder
    folder, ``featgraph report`` each SAE folder, so a run matches either way (the path itself or its parent)."""
    read = [Path(p).resolve() for p in fcfg.get("saes", [])]
    return sorted({str(p) for p in read} | {str(p.parent) for p in read})


def rebuild_stages(folder: str | Path, stages: pl.DataFrame, *, fit: Any, val: Any, evaluator: Any,
                   progress: bool = True) -> dict[str, float]:
    """Rebuild and evaluate every retrained stage of a Frankenstein folder (module docstring), the evaluator keeping
    their per-context sums under the stage names; returns |rebuilt MSE - folder MSE| / folder MSE per stage."""
    from featgraph.sae import Sae
    from featgraph.stitch.lstsq import decoder_moments, fit_exact_decoder

    folder = Path(folder)
    final = Sae.load(folder / "sae_before_retraining")
    widths = sorted(stages["width"].to_list())
    if widths[-1] != final.n_features:
        raise ConfigError(f"{folder}: the last stage of comparison.parquet has {widths[-1]} features, "
                          f"sae_before_retraining {final.n_features}")
    m = decoder_moments(final, fit, progress=progress, desc="decoder moments (Frankenstein stages)")
    gap = {}
    for r in stages.sort("width").iter_rows(named=True):
        k = int(r["width"])
        res = fit_exact_decoder(prefix_sae(final, k), fit, val, moments=m.prefix(k), progress=progress)
        row = evaluator.row(res.sae, r["name"])
        gap[r["name"]] = abs(row["mse"] - r["mse"]) / r["mse"]
    return gap


def add_intervals(table: pl.DataFrame, points: pl.DataFrame, per_context: dict[str, tuple], *, n_boot: int,
                  seed: int) -> pl.DataFrame:
    """``table`` with ``diff_lo``, ``diff_hi`` (95% BCa over held-out contexts) and ``p_frank_better`` (share of
    replicates with a negative difference) for every row read off the frontier; null outside it."""
    from featgraph.stitch.bootstrap import bca_interval, context_weights

    fronts = frontiers(points)
    n_ctx = len(next(iter(per_context.values()))[0])
    W = context_weights(n_ctx, n_boot=n_boot, seed=seed)

    def reps(label: str) -> tuple[np.ndarray, np.ndarray, float]:
        sse, n = (np.asarray(a, dtype=np.float64) for a in per_context[label])
        with np.errstate(invalid="ignore", divide="ignore"):  # a context of no token left out: NaN, dropped later
            return (W @ sse) / (W @ n), (sse.sum() - sse) / (n.sum() - n), float(sse.sum() / n.sum())

    lo, hi, better = [], [], []
    for r in table.iter_rows(named=True):
        w = fronts[r["width"]].weights(r["stage_l0"])
        if w is None:
            lo.append(None)
            hi.append(None)
            better.append(None)
            continue
        rep, jack, est = reps(r["stage"])
        pts = points.filter(pl.col("width") == r["width"]).sort("l0")
        for i, wi in w:
            p_rep, p_jack, p_est = reps(point_label(pts["name"][i], pts["l1"][i]))
            rep, jack, est = rep - wi * p_rep, jack - wi * p_jack, est - wi * p_est
        iv, _ = bca_interval(rep, est, jack)
        lo.append(iv[0])
        hi.append(iv[1])
        better.append(float(np.mean(rep[np.isfinite(rep)] < 0)))
    return table.with_columns(pl.Series("diff_lo", lo, pl.Float64), pl.Series("diff_hi", hi, pl.Float64),
                              pl.Series("p_frank_better", better, pl.Float64))


def _same(mine: Any, theirs: Any, what: str, frank: str) -> Any:
    """``mine`` when unset or equal (paths compared resolved) to the Frankenstein run's ``theirs``; refused else."""
    if mine is None:
        return theirs
    a, b = (str(Path(v).resolve()) if isinstance(v, str) else v for v in (mine, theirs))
    if a != b:
        raise ConfigError(f"{what} {mine!r} differs from the Frankenstein run's {theirs!r} ({frank}/config.json): "
                          "the comparison needs the same tokens on both sides")
    return theirs


def load_runs(runs: Sequence[str]) -> tuple[list, list[str], list[str], list[float]]:
    """(SAEs, names, run folders, L1s) of every run; two SAEs of one width and one L1 are refused."""
    from featgraph.ladder import expand_sae_paths, load_saes

    saes, names, roots, l1s = [], [], [], []
    for run in runs:
        root = Path(run) / "ladder" if (Path(run) / "ladder").is_dir() else Path(run)
        found = expand_sae_paths([root])  # a folder of SAE folders: a seed-control subfolder is not expanded
        loaded, nm = load_saes(found)
        saes += loaded
        names += nm
        roots += [str(root.resolve())] * len(loaded)
        l1s += [sae_l1(s, str(p)) for s, p in zip(loaded, found, strict=True)]
    seen: dict[tuple[int, float], str] = {}
    for s, r, n, l1 in zip(saes, roots, names, l1s, strict=True):
        if (s.n_features, l1) in seen:  # two points at one (width, L1): not one frontier
            raise ConfigError(f"{r}/{n} and {seen[s.n_features, l1]}: two SAEs of width {s.n_features} at L1 {l1:g}")
        seen[s.n_features, l1] = f"{r}/{n}"
    return saes, names, roots, l1s


def run_frontier(cfg: FrontierConfig) -> FrontierResult:
    """Measure every run's SAEs, read the Frankenstein stages off the frontier, write the folder atomically."""
    from featgraph.io.files import write_json_into
    from featgraph.io.output import check_output, open_output
    from featgraph.stitch.figures import figure_png
    from featgraph.stitch.lstsq import split_fit_val
    from featgraph.stitch.run import make_evaluator, split_acts
    from featgraph.tables import write_parquet

    inputs = cfg.inputs()
    check_output(cfg.out, command=cfg.command, inputs=inputs)
    comparison, fcfg = read_comparison(cfg.frankenstein)
    if fcfg.get("decoder_fit", "exact") != "exact" or not fcfg.get("train_acts"):
        raise ConfigError(f"{cfg.frankenstein}: the Frankenstein run must refit decoders exactly on a --train-acts "
                          "store")
    acts = _same(cfg.acts, fcfg["acts"], "--acts", cfg.frankenstein)
    train = _same(cfg.train_acts, fcfg["train_acts"], "--train-acts", cfg.frankenstein)
    fit_tokens = _same(cfg.fit_tokens, fcfg["retrain_tokens"], "--fit-tokens", cfg.frankenstein)
    n_tokens = _same(cfg.n_tokens, fcfg.get("n_tokens"), "--n-tokens", cfg.frankenstein)
    inputs += [acts, train]
    check_output(cfg.out, command=cfg.command, inputs=inputs)
    saes, names, runs, l1s = load_runs(cfg.runs)
    eval_acts, store, train_rows, _ = split_acts(acts, n_tokens, train)
    fit, val = split_fit_val(train_rows, fit_tokens, 0.1)  # exactly the Frankenstein's split (analyze_frankenstein)
    ev = make_evaluator(eval_acts, store, 0, None, None)
    points = measure_points(saes, names, runs, l1s, fit=fit, val=val, evaluator=ev, progress=cfg.progress)
    stages = comparison.filter(pl.col("kind") == STAGE_KIND).select("name", "width", "l0", "mse")
    table = equal_l0_table(stages, frontiers(points))
    stage_gap: dict[str, float] = {}
    if cfg.n_boot:
        stage_gap = rebuild_stages(cfg.frankenstein, stages, fit=fit, val=val, evaluator=ev, progress=cfg.progress)
        table = add_intervals(table, points, ev.per_context, n_boot=cfg.n_boot, seed=cfg.seed)
    gap = control_gap(points, comparison, folders_read(fcfg))
    config = cfg.to_json(acts=acts, train_acts=train, fit_tokens=fit_tokens, n_tokens=n_tokens,
                         n_tokens_eval=len(eval_acts))
    with open_output(cfg.out, command=cfg.command, inputs=inputs) as tmp:
        write_parquet(points, tmp / "frontier.parquet")
        write_parquet(table, tmp / "equal_l0.parquet")
        (tmp / "frontier.png").write_bytes(figure_png(frontier_figure(points, stages)))
        (tmp / "equal_l0.md").write_text(equal_l0_markdown(table), encoding="utf-8")
        write_json_into(tmp / "config.json", config | {"control_gap": gap, "stage_gap": stage_gap})
    return FrontierResult(Path(cfg.out), points, table, gap, stage_gap, config)
