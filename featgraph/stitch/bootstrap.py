"""95% intervals for the stitching numbers from a bootstrap over held-out contexts, at no extra pass.

Why contexts, not tokens: the 127 tokens of one context share a topic and a document, so their errors are
correlated; resampling tokens treats them as independent and gives intervals that are too narrow. Every number
here is a ratio of sums over tokens, so the streaming pass keeps those sums *per context* (the sufficient statistics)
and a bootstrap replicate is a reweighting of contexts: replicate ``b`` draws ``C`` contexts with replacement
(``w_bc`` = how often context ``c`` was drawn, multinomial, seeded) and recomputes each number from
``sum_c w_bc * (per-context sums)``.

Intervals are BCa (Efron's bias-corrected and accelerated bootstrap, Efron & Tibshirani 1993, ch. 14): the
bias correction ``z0 = Phi^-1(share of replicates below the estimate, ties counted as half)`` and the acceleration
``a`` (the skewness of the leave-one-context-out jackknife) move the two percentiles taken from the replicates to
``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))`` for ``z = Phi^-1(0.025), Phi^-1(0.975)``. A jackknife replicate is the
total minus one context's sums (every number is a ratio of sums, unchanged by the total weight), so it costs no
pass. Written by hand because ``scipy.stats.bootstrap(method="BCa")`` re-evaluates a statistic on resampled data:
it cannot reweight our per-context sums (one matrix product for all replicates) nor share one draw across the
numbers of a pair; a test checks this code against it on a mean. Where BCa is undefined the record says so in
``fallbacks``: every replicate equal to the estimate gives ``[estimate, estimate]``; every replicate on one side of
it (``z0`` infinite) or ``1 - a (z0 + z) <= 0`` gives the percentile interval.

What BCa does not fix: a 2x2 cell counts features whose delta-MSE is below / above 0. Features whose delta-MSE is
near 0 change sign under resampling, so the replicates of a count are shifted against the estimate (the count of
noisy signs is biased toward the middle, and resampling adds more noise). BCa reads that shift as bias and moves
the interval the other way, but its ends are still percentiles of the replicates: it contains the estimate exactly
when the percentile interval does, up to ties (continuous case: both iff ``|z0| <= 1.96``). Numbers whose interval
does not contain their own estimate are listed in ``estimate_outside_interval``: for them the bootstrap says the
estimate is biased by more than its spread, and the interval is a bias-corrected range, not a spread around it.
What a reader can use instead is ``two_by_two_decided``: per cell, how many features have a BCa interval of their
own delta-MSE entirely below / above 0, and how many are ``undecided`` (interval holds 0, estimate not 0): a cell's
count is its decided features plus some of the undecided ones (per-feature 95% intervals, not simultaneous).

What gets intervals: a pair's 2x2 table and its two shares (a feature's delta-MSE of being added alone is
``sum_c s_cj / sum_c n_c``, so the table is recounted per replicate; which features are novel is fixed by the
decoders), the add-all-novel relative MSE change, both SAEs' MSE (:func:`pair_intervals`); a Frankenstein
comparison's MSE per row and the MSE difference of every retrained Frankenstein stage to every retrained ladder
SAE, with the share of replicates in which the Frankenstein SAE is better (:func:`comparison_intervals`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from featgraph.errors import ConfigError

N_BOOT = 1000
LEVEL = 0.95
#: rows per "context" when the activations carry no context layout (a plain tensor): consecutive blocks
DEFAULT_CONTEXT_ROWS = 128
METHOD = "bca"
#: a bound on the elements of one [B or C, block] array of recounted delta-MSEs (the bootstrap and the jackknife go
#: over blocks of features so that a wide SAE on many contexts never holds [B or C, F_large] at once)
_BLOCK_ELEMENTS = 1 << 22
_CELLS = ("dmse_lt_0", "dmse_gt_0", "dmse_eq_0")


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
    e.g. a share whose denominator was drawn empty). BCa's fallback, and the baseline it is compared with."""
    a = np.asarray(samples, dtype=np.float64)
    q = (1 - level) / 2
    with np.errstate(all="ignore"):
        if a.ndim == 1:
            fin = a[np.isfinite(a)]
            return [float("nan")] * 2 if not fin.size else [float(v) for v in np.quantile(fin, [q, 1 - q])]
    raise ConfigError("percentile_interval takes one number's replicates")


def acceleration(jackknife: np.ndarray) -> float:
    """BCa's acceleration from the jackknife replicates (``sum d^3 / (6 (sum d^2)^1.5)``, ``d = mean - value``;
    scipy's sign convention); 0 where it is undefined (fewer than two finite values, or all equal)."""
    j = np.asarray(jackknife, dtype=np.float64).ravel()
    j = j[np.isfinite(j)]
    if j.size < 2:
        return 0.0
    d = j.mean() - j
    ss = float((d * d).sum())
    return float((d**3).sum() / (6.0 * ss**1.5)) if ss > 0 else 0.0


def bca_interval(replicates: np.ndarray, estimate: float, jackknife: np.ndarray,
                 level: float = LEVEL) -> tuple[list[float], str | None]:
    """``([lo, hi], note)``: the BCa interval of one number from its bootstrap replicates, its point estimate and
    its jackknife replicates; ``note`` is ``None`` for a BCa interval, else why it fell back (see the module doc).
    NaN replicates (a ratio whose denominator was drawn empty) are left out; a NaN estimate gives NaN ends with a
    note, never silently."""
    r = np.asarray(replicates, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    est = float(estimate)
    if not np.isfinite(est):
        return [float("nan")] * 2, "undefined: the estimate is not a finite number (e.g. a share of no features)"
    if not r.size:
        return [est, est], "no finite replicate: the interval is the estimate"
    below, ties = int((r < est).sum()), int((r == est).sum())
    if ties == r.size:
        return [est, est], "every replicate equals the estimate: the interval is the estimate"
    p = (below + 0.5 * ties) / r.size
    if p <= 0.0 or p >= 1.0:
        side = "above" if p <= 0.0 else "below"
        return percentile_interval(r, level), f"every replicate is {side} the estimate (z0 infinite): percentile"
    z0 = float(ndtri(p))
    a = acceleration(jackknife)
    zq = z0 + ndtri(np.array([(1 - level) / 2, (1 + level) / 2]))
    den = 1.0 - a * zq
    if (den <= 0).any():
        return percentile_interval(r, level), f"acceleration {a:.3g} too large for z0 {z0:.3g}: percentile"
    return [float(v) for v in np.quantile(r, ndtr(z0 + zq / den))], None


class _Record:
    """Collects the intervals of one set of numbers and what the reader must know about them: which fell back
    from BCa (and why), which do not contain their own estimate."""

    def __init__(self, level: float):
        self.level, self.fallbacks, self.outside = level, {}, []

    def __call__(self, key: str, reps: np.ndarray, est: float, jack: np.ndarray) -> list[float]:
        iv, note = bca_interval(reps, est, jack, self.level)
        if note is not None:
            self.fallbacks[key] = note
        # an end interpolated between two replicates can sit 1e-9 off a count it equals: not "outside"
        tol = 1e-6 * max(abs(est), iv[1] - iv[0]) if np.isfinite(est) else 0.0
        if np.isfinite(est) and not iv[0] - tol <= est <= iv[1] + tol:
            self.outside.append(key)
        return iv

    def fields(self) -> dict[str, Any]:
        return {"fallbacks": self.fallbacks, "estimate_outside_interval": self.outside}


def _ratio_parts(num: np.ndarray, den: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(replicates, estimate, jackknife) of ``sum num / sum den`` from per-context sums and weights ``[B, C]``."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    sn, sd = float(num.sum()), float(den.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ num) / (w @ den), sn / sd if sd else float("nan"), (sn - num) / (sd - den)


def ratio_interval(num: np.ndarray, den: np.ndarray, w: np.ndarray, level: float = LEVEL) -> list[float]:
    """BCa interval of ``sum num / sum den`` from per-context sums under the weights ``w`` (``[B, C]``); the
    percentile interval where BCa is undefined."""
    return bca_interval(*_ratio_parts(num, den, w), level)[0]


def _blocks(n: int, height: int) -> Iterator[slice]:
    """Slices of ``n`` features, each a block of at most :data:`_BLOCK_ELEMENTS` ``[height, block]`` values."""
    step = max(1, _BLOCK_ELEMENTS // max(height, 1))
    return (slice(i, min(i + step, n)) for i in range(0, n, step))


def feature_bca(reps: np.ndarray, est: np.ndarray, jack: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """``[2, k]`` BCa ends of ``k`` numbers at once (columns of ``reps`` ``[B, k]`` and ``jack`` ``[C, k]``), the
    same as :func:`bca_interval` column by column; a column where BCa is undefined gets its percentile interval
    (every replicate equal to the estimate: that value at both ends)."""
    b = reps.shape[0]
    p = ((reps < est).sum(0) + 0.5 * (reps == est).sum(0)) / b
    d = jack.mean(0) - jack
    ss = (d * d).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.nan_to_num(np.where(ss > 0, (d**3).sum(0) / (6.0 * ss**1.5), 0.0))  # NaN: one context, a = 0
        zq = ndtri(p)[None, :] + ndtri(np.array([(1 - level) / 2, (1 + level) / 2]))[:, None]
        den = 1.0 - a[None, :] * zq
        alpha = ndtr(ndtri(p)[None, :] + zq / den)
    bad = ~np.isfinite(zq).all(0) | (den <= 0).any(0)
    alpha[:, bad] = np.array([(1 - level) / 2, (1 + level) / 2])[:, None]
    # np.quantile's default (linear) at a different level per column: interpolate in the sorted columns
    srt, pos = np.sort(reps, axis=0), alpha * (b - 1)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, b - 1)
    i1, cols = np.minimum(i0 + 1, b - 1), np.arange(reps.shape[1])[None, :]
    return srt[i0, cols] + (pos - i0) * (srt[i1, cols] - srt[i0, cols])


def _feature_pass(m: Any, w: np.ndarray, est: np.ndarray, masks: Mapping[str, np.ndarray],
                  level: float) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]],
                                         dict[str, dict[str, int]]]:
    """One pass over blocks of features: per bootstrap replicate and per jackknife replicate, how many features of
    each mask have delta-MSE < 0, > 0, == 0; and per mask how many features' own BCa interval of delta-MSE lies
    below 0, above 0, or holds 0 while the estimate is not 0 (``undecided``: its sign is within noise)."""
    b, c = w.shape
    n, s_n = w @ m.ctx_n, float(m.ctx_n.sum())
    boot = {k: {cell: np.zeros(b) for cell in _CELLS} for k in masks}
    jack = {k: {cell: np.zeros(c) for cell in _CELLS} for k in masks}
    decided = {k: {"dmse_lt_0": 0, "dmse_gt_0": 0, "undecided": 0} for k in masks}
    for blk in _blocks(est.size, max(b, c)):
        x = m.ctx_dmse[:, blk]
        with np.errstate(invalid="ignore", divide="ignore"):
            d, j = (w @ x) / n[:, None], (x.sum(0) - x) / (s_n - m.ctx_n)[:, None]
        lo, hi = feature_bca(d, est[blk], j, level)
        for k, mask in masks.items():
            mk = mask[blk]
            for out, y in ((boot[k], d[:, mk]), (jack[k], j[:, mk])):
                for cell, v in zip(_CELLS, ((y < 0).sum(1), (y > 0).sum(1), (y == 0).sum(1)), strict=True):
                    out[cell] += v
            e = est[blk][mk]
            decided[k]["dmse_lt_0"] += int((hi[mk] < 0).sum())
            decided[k]["dmse_gt_0"] += int((lo[mk] > 0).sum())
            decided[k]["undecided"] += int(((lo[mk] <= 0) & (hi[mk] >= 0) & (e != 0)).sum())
    return boot, jack, decided


def _share(num: np.ndarray, den: int) -> np.ndarray:
    return np.asarray(num, dtype=np.float64) / den if den > 0 else np.full(np.shape(num), np.nan)


def pair_intervals(m: Any, novel: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0,
                   level: float = LEVEL) -> dict[str, Any]:
    """BCa bootstrap intervals of one pair's numbers from the per-context sums of
    :class:`~featgraph.stitch.stream.PairMoments` (``ctx_*``); ``novel`` is the ``[F_large]`` novel mask. The 2x2
    cells' estimates are the pass's own delta-MSEs (``m.add_each()``), the ones the table shows; besides the
    intervals, ``two_by_two_decided`` counts the features whose sign the bootstrap decides (module doc)."""
    novel = np.asarray(novel, dtype=bool)
    n_ctx = m.ctx_n.size
    w = context_weights(n_ctx, n_boot=n_boot, seed=seed)
    masks = {"novel": novel, "reconstruction": ~novel}
    dmse = np.asarray(m.add_each()[0], dtype=np.float64)
    boot, jack, decided = _feature_pass(m, w, dmse, masks, level)
    est = {k: {"dmse_lt_0": (dmse[mk] < 0).sum(), "dmse_gt_0": (dmse[mk] > 0).sum(),
               "dmse_eq_0": (dmse[mk] == 0).sum()} for k, mk in masks.items()}
    rec = _Record(level)
    table = {k: {c: rec(f"two_by_two.{k}.{c}", boot[k][c], float(est[k][c]), jack[k][c]) for c in _CELLS}
             for k in masks}
    n_novel, n_recon = int(novel.sum()), int((~novel).sum())

    def share(key: str, kind: str, cell: str, total: int) -> list[float]:
        return rec(key, _share(boot[kind][cell], total), float(_share(est[kind][cell], total)),
                   _share(jack[kind][cell], total))

    rel = _ratio_parts(m.ctx_sse_novel, m.ctx_sse_small, w)
    out = {
        "method": METHOD,
        "description": f"BCa bootstrap over held-out contexts, {n_boot} replicates, seed {seed}; acceleration from "
                       "the leave-one-context-out jackknife",
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "n_contexts": int(n_ctx),
        "unit": m.ctx_unit,
        "two_by_two": table,
        "two_by_two_decided": decided,
        "share_novel_lowering_mse": share("share_novel_lowering_mse", "novel", "dmse_lt_0", n_novel),
        "share_reconstruction_raising_mse": share("share_reconstruction_raising_mse", "reconstruction", "dmse_gt_0",
                                                  n_recon),
        "add_all_novel_relative_change": [v - 1.0 for v in rec("add_all_novel_relative_change", *rel)],
        "mse_small": rec("mse_small", *_ratio_parts(m.ctx_sse_small, m.ctx_n, w)),
        "mse_large": rec("mse_large", *_ratio_parts(m.ctx_sse_large, m.ctx_n, w)),
        "mse_large_minus_small": rec("mse_large_minus_small",
                                     *_ratio_parts(m.ctx_sse_large - m.ctx_sse_small, m.ctx_n, w)),
    }
    return {**out, **rec.fields()}


def comparison_intervals(rows: Sequence[Mapping[str, Any]], per_context: Mapping[str, tuple[np.ndarray, np.ndarray]],
                         *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL,
                         unit: str = "context") -> dict[str, Any]:
    """BCa intervals of a Frankenstein comparison: every row's MSE, and for every retrained Frankenstein stage
    against every retrained ladder SAE the MSE difference (Frankenstein minus ladder; < 0: Frankenstein better) with
    the share of replicates in which the Frankenstein SAE is better. ``rows``: the comparison table's rows
    (``kind``, ``name``, ``width``, ``l0``, ``mse``); ``per_context``: ``name -> (sse per context, tokens per
    context)`` from the evaluation pass."""
    names = [r["name"] for r in rows if r["name"] in per_context]
    if not names:
        raise ConfigError("no per-context sums to bootstrap the comparison from")
    n_ctx = {per_context[n][1].size for n in names}
    if len(n_ctx) != 1:
        raise ConfigError(f"the compared SAEs were evaluated on different contexts ({sorted(n_ctx)})")
    w = context_weights(n_ctx.pop(), n_boot=n_boot, seed=seed)  # one draw for all rows: differences are paired
    parts = {name: _ratio_parts(*per_context[name], w) for name in names}
    rec = _Record(level)
    out: dict[str, Any] = {
        "method": METHOD,
        "description": f"BCa bootstrap over held-out contexts, {n_boot} replicates, seed {seed}, paired across rows "
                       "(every SAE scored on the same resampled contexts); acceleration from the leave-one-context-"
                       "out jackknife",
        "level": level, "n_boot": n_boot, "seed": seed, "n_contexts": int(w.shape[1]), "unit": unit,
        "mse": {name: rec(f"mse.{name}", *parts[name]) for name in names},
    }
    frank = [r for r in rows if r["kind"] == "frankenstein (retrained)" and r["name"] in parts]
    ladder = [r for r in rows if r["kind"] == "ladder (decoder retrained)" and r["name"] in parts]

    def diff(a: str, b: str) -> list[float]:
        (ra, ea, ja), (rb, eb, jb) = parts[a], parts[b]
        return rec(f"frankenstein_vs_ladder.{a} - {b}", ra - rb, ea - eb, ja - jb)

    out["frankenstein_vs_ladder"] = [
        {"frankenstein": f["name"], "ladder": lad["name"], "width_frankenstein": int(f["width"]),
         "width_ladder": int(lad["width"]), "l0_frankenstein": float(f["l0"]), "l0_ladder": float(lad["l0"]),
         "mse_difference": float(f["mse"] - lad["mse"]),
         "mse_difference_interval": diff(f["name"], lad["name"]),
         "share_frankenstein_better": float(np.mean(parts[f["name"]][0] < parts[lad["name"]][0]))}
        for f in frank for lad in ladder
    ]
    return {**out, **rec.fields()}
