"""The 0.1 stitch pipeline (commit 2160269's ``featgraph.stitch.analyze_pair``), kept as the oracle of the
streaming one: one pass per analysis, built from the per-analysis functions that stay in the library
(``delta_mse_add``, ``active_inactive_mse``, ``cumulative_add_mse``, ``delta_mse_swap``, ``interpolation_path``,
``evaluate_sae``). Only the composition is copied here, nothing is re-derived; it returns plain tables and numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from featgraph.matching import match_saes
from featgraph.stitch.delta_mse import (
    active_inactive_mse,
    cumulative_add_mse,
    delta_mse_add,
    delta_mse_swap,
    two_by_two,
)
from featgraph.stitch.interpolate import interpolation_path, plan_interpolation
from featgraph.training.evaluate import evaluate_sae


def old_analyze_pair(small, large, acts, *, tau: float = 0.7, batch_size: int = 4096) -> dict[str, Any]:
    kw = {"batch_size": batch_size, "progress": False}
    match = match_saes(small, large, tau, progress=False)
    plan = plan_interpolation(small, large, tau, match=match)
    add = delta_mse_add(small, large, acts, **kw)
    novel = match.max_cos <= tau
    ai = active_inactive_mse(small, large, acts, np.arange(large.n_features), **kw)
    features = pl.DataFrame({
        "dmse": add.dmse, "dl0": add.dl0, "active_frac": ai.active_frac,
        "small_mse_active": ai.base_active, "small_mse_inactive": ai.base_inactive,
        "large_mse_active": ai.donor_active, "large_mse_inactive": ai.donor_inactive,
    })
    novel_order = np.flatnonzero(novel)[np.argsort(add.dmse[novel], kind="stable")]
    recon_order = np.flatnonzero(~novel)[np.argsort(add.dmse[~novel], kind="stable")]
    cumulative = {
        f"novel ({novel_order.size})": cumulative_add_mse(small, large, acts, novel_order, **kw),
        f"reconstruction ({recon_order.size})": cumulative_add_mse(small, large, acts, recon_order, **kw),
    }
    fams = [(f.small_features, f.large_features) for f in plan.families]
    swap = delta_mse_swap(small, large, acts, fams, **kw)
    path = interpolation_path(small, large, acts, plan, **kw)
    rows = [evaluate_sae(s, acts=acts, name=n) for s, n in ((small, "small"), (large, "large"))]
    return {
        "features": features,
        "two_by_two": two_by_two(match.max_cos, add.dmse, tau),
        "cumulative": cumulative,
        "swaps": pl.DataFrame({"dmse": swap.dmse, "dl0": swap.dl0}),
        "path": path,
        "points": pl.DataFrame([{c: r[c] for c in ("l0", "mse", "explained_variance")} for r in rows]),
        "mse_small": add.mse_base,
        "l0_small": add.l0_base,
    }
