"""95% intervals for the stitching numbers from a bootstrap over held-out contexts, at no extra pass.

Why contexts, not tokens: the 127 tokens of one context share a topic and a document, so their errors are
correlated; resampling tokens treats them as independent and gives intervals that are too narrow. Every number
here is a ratio of sums over tokens, so the streaming pass keeps those sums *per context* (the sufficient statistics)
and a bootstrap replicate is a reweighting of contexts: replicate ``b`` draws ``C`` contexts with replacement
(``w_bc`` = how often context ``c`` was drawn, multinomial, seeded) and recomputes each number from
``sum_c w_bc * (per-context sums)``. Intervals are the 2.5 / 97.5 percentiles of the replicates.

What gets intervals: a pair's 2x2 table and its two shares (a feature's delta-MSE of being added alone is
``sum_c s_cj / sum_c n_c``, so the table is recounted per replicate; which features are novel is fixed by the
decoders), the add-all-novel relative MSE change, both SAEs' MSE (:func:`pair_intervals`); a Frankenstein
comparison's MSE per row and the MSE difference of every retrained Frankenstein stage to every retrained ladder
SAE, with the share of replicates in which the Frankenstein SAE is better (:func:`comparison_intervals`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from featgraph.errors import ConfigError

N_BOOT = 1000
LEVEL = 0.95
#: rows per "context" when the activations carry no context layout (a plain tensor): consecutive blocks
DEFAULT_CONTEXT_ROWS = 128


def context_layout(acts: Any) -> tuple[int, int, str]:
    """(rows per context, phase, unit) of ``acts``: a store (or a row range of one) knows its contexts (context size,
    less the BOS position when it is left out; the phase is the range's offset into its first context); anything
    else is cut into blocks of :data:`DEFAULT_CONTEXT_ROWS` consecutive rows."""
    from featgraph.activations.store import ActivationStore

    store = acts if isinstance(acts, ActivationStore) else getattr(acts, "store", None)
    if isinstance(store, ActivationStore):
        per = int(store.meta["context_size"]) - int(bool(store.meta.get("exclude_bos")))
        if per >= 1:
            return per, int(getattr(acts, "offset", 0)) % per, "context"
    return DEFAULT_CONTEXT_ROWS, 0, f"block of {DEFAULT_CONTEXT_ROWS} rows (no context layout known)"


def context_weights(n_contexts: int, *, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``[n_boot, n_contexts]`` float64 draw counts: each row resamples the contexts with replacement (seeded)."""
    if n_contexts < 1 or n_boot < 1:
        raise ConfigError(f"a bootstrap needs >= 1 context and >= 1 replicate, got {n_contexts} and {n_boot}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_contexts, np.full(n_contexts, 1.0 / n_contexts), size=n_boot).astype(np.float64)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> list[float]:
    """``[lo, hi]``: the central ``level`` percentile interval of ``samples`` along axis 0 (NaN replicates ignored,
    e.g. a share whose denominator was drawn empty)."""
    a = np.asarray(samples, dtype=np.float64)
    q = (1 - level) / 2
    with np.errstate(all="ignore"):
        if a.ndim == 1:
            fin = a[np.isfinite(a)]
            return [float("nan")] * 2 if not fin.size else [float(v) for v in np.quantile(fin, [q, 1 - q])]
    raise ConfigError("percentile_interval takes one number's replicates")


def ratio_interval(num: np.ndarray, den: np.ndarray, w: np.ndarray, level: float = LEVEL) -> list[float]:
    """Interval of ``sum num / sum den`` from per-context sums under the weights ``w`` (``[B, C]``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return percentile_interval((w @ num) / (w @ den), level)


def _share(num: np.ndarray, den: np.ndarray | int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.asarray(den) > 0, num / np.maximum(den, 1), np.nan)


def pair_intervals(m: Any, novel: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0,
                   level: float = LEVEL) -> dict[str, Any]:
    """Bootstrap intervals of one pair's numbers from the per-context sums of
    :class:`~featgraph.stitch.stream.PairMoments` (``ctx_*``); ``novel`` is the ``[F_large]`` novel mask."""
    novel = np.asarray(novel, dtype=bool)
    n_ctx = m.ctx_n.size
    w = context_weights(n_ctx, n_boot=n_boot, seed=seed)
    n = w @ m.ctx_n
    with np.errstate(invalid="ignore", divide="ignore"):
        dmse = (w @ m.ctx_dmse) / n[:, None]  # [B, F_large]: each feature's delta-MSE of being added alone
    table: dict[str, dict[str, list[float]]] = {}
    counts = {}
    for name, mask in (("novel", novel), ("reconstruction", ~novel)):
        d = dmse[:, mask]
        c = {"dmse_lt_0": (d < 0).sum(1), "dmse_gt_0": (d > 0).sum(1), "dmse_eq_0": (d == 0).sum(1)}
        counts[name] = c
        table[name] = {k: percentile_interval(v.astype(np.float64), level) for k, v in c.items()}
    n_novel, n_recon = int(novel.sum()), int((~novel).sum())
    return {
        "method": f"percentile bootstrap over held-out contexts, {n_boot} replicates, seed {seed}",
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "n_contexts": int(n_ctx),
        "unit": m.ctx_unit,
        "two_by_two": table,
        "share_novel_lowering_mse": percentile_interval(_share(counts["novel"]["dmse_lt_0"], n_novel), level),
        "share_reconstruction_raising_mse": percentile_interval(
            _share(counts["reconstruction"]["dmse_gt_0"], n_recon), level),
        "add_all_novel_relative_change": [v - 1.0 for v in ratio_interval(m.ctx_sse_novel, m.ctx_sse_small, w,
                                                                          level)],
        "mse_small": ratio_interval(m.ctx_sse_small, m.ctx_n, w, level),
        "mse_large": ratio_interval(m.ctx_sse_large, m.ctx_n, w, level),
        "mse_large_minus_small": percentile_interval((w @ (m.ctx_sse_large - m.ctx_sse_small)) / n, level),
    }


def comparison_intervals(rows: Sequence[Mapping[str, Any]], per_context: Mapping[str, tuple[np.ndarray, np.ndarray]],
                         *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                         unit: str = "context") -> dict[str, Any]:
    """Intervals of a Frankenstein comparison: every row's MSE, and for every retrained Frankenstein stage against
    every retrained ladder SAE the MSE difference (Frankenstein minus ladder; < 0: Frankenstein better) with the
    share of replicates in which the Frankenstein SAE is better. ``rows``: the comparison table's rows (``kind``,
    ``name``, ``width``, ``l0``, ``mse``); ``per_context``: ``name -> (sse per context, tokens per context)`` from
    the evaluation pass."""
    names = [r["name"] for r in rows if r["name"] in per_context]
    if not names:
        raise ConfigError("no per-context sums to bootstrap the comparison from")
    n_ctx = {per_context[n][1].size for n in names}
    if len(n_ctx) != 1:
        raise ConfigError(f"the compared SAEs were evaluated on different contexts ({sorted(n_ctx)})")
    w = context_weights(n_ctx.pop(), n_boot=n_boot, seed=seed)  # one draw for all rows: differences are paired
    n = w @ per_context[names[0]][1]
    mse = {name: (w @ per_context[name][0]) / n for name in names}
    out: dict[str, Any] = {
        "method": f"percentile bootstrap over held-out contexts, {n_boot} replicates, seed {seed}, paired across "
                  "rows (every SAE scored on the same resampled contexts)",
        "level": level, "n_boot": n_boot, "seed": seed, "n_contexts": int(w.shape[1]), "unit": unit,
        "mse": {name: percentile_interval(mse[name], level) for name in names},
    }
    frank = [r for r in rows if r["kind"] == "frankenstein (retrained)" and r["name"] in mse]
    ladder = [r for r in rows if r["kind"] == "ladder (decoder retrained)" and r["name"] in mse]
    out["frankenstein_vs_ladder"] = [
        {"frankenstein": f["name"], "ladder": lad["name"], "width_frankenstein": int(f["width"]),
         "width_ladder": int(lad["width"]), "l0_frankenstein": float(f["l0"]), "l0_ladder": float(lad["l0"]),
         "mse_difference": float(f["mse"] - lad["mse"]),
         "mse_difference_interval": percentile_interval(mse[f["name"]] - mse[lad["name"]], level),
         "share_frankenstein_better": float(np.mean(mse[f["name"]] < mse[lad["name"]]))}
        for f in frank for lad in ladder
    ]
    return out
