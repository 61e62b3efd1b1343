"""Interpolating from a small SAE to a larger one: add every novel feature, then swap families one by one.

The path (the post's "Can we swap features"):

- step 0: the small SAE itself;
- step 1: plus every *novel* feature of the large SAE (no edge, i.e. max cos to the small SAE <= tau);
- steps 2, 3, ...: swap one family at a time (its small parents out, its large children in).

Order of the swaps: the graph decides it. Each family is ranked by its strongest edge (the highest decoder cos
between one of its parents and one of its children), highest first; ties go to the lower family id. Copies
(cos ~ 1) are swapped first, where a swap changes the reconstruction least, and loose splits last. The last
step holds every large feature plus the small features that have no child (they are in no family), on the
small SAE's ``b_dec``, so it is close to, but not the same model as, the large SAE.

After every step we record the number of features, L0, MSE and explained variance. All steps come from one
pass over the activations: per token batch the running residual is updated by each family's ``sum f_c d_c -
sum f_p d_p`` (exact, since ReLU/JumpReLU features fire independently of each other; see
:mod:`featgraph.stitch.hybrid`), only on the tokens where a member of that family fires. CE loss recovered needs a
model forward per step, so it is computed only at the steps you ask for, via a callback.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from featgraph.errors import ConfigError
from featgraph.graph import Family, families_from_edges, family_of_features
from featgraph.matching import PairMatch, is_novel, match_saes
from featgraph.sae import Sae
from featgraph.stitch.batches import ActivationsLike, as_dtype, encode_columns, iter_acts, n_rows
from featgraph.stitch.hybrid import check_stitchable, hybrid
from featgraph.tables import PATH_SCHEMA

log = logging.getLogger(__name__)


def novel_features(match: PairMatch, tau: float) -> np.ndarray:
    """Large features that are novel (:func:`featgraph.matching.is_novel`), ascending."""
    return np.flatnonzero(is_novel(match.max_cos, tau))


def family_max_cos(match: PairMatch, families: Sequence[Family]) -> np.ndarray:
    """Each family's strongest edge cos (float64 [n_families])."""
    fam_of_large = family_of_features(families, match.max_cos.size, "large")
    out = np.full(len(families), -np.inf)
    np.maximum.at(out, fam_of_large[match.edge_large], match.edge_cos)
    return out


def swap_order(match: PairMatch, families: Sequence[Family]) -> np.ndarray:
    """Positions in ``families`` in swap order: strongest edge first, ties by family id (see module
    docstring)."""
    strength = family_max_cos(match, families)
    ids = np.array([f.family for f in families], dtype=np.int64)
    return np.lexsort((ids, -strength))


@dataclasses.dataclass
class InterpolationPlan:
    """What the path does: novel features added at step 1, then ``families[order[i]]`` swapped at step ``i +
    2``."""

    novel: np.ndarray
    families: list[Family]
    order: np.ndarray
    strength: np.ndarray  # family max cos, indexed like ``families``

    @property
    def n_steps(self) -> int:
        return 2 + len(self.order)

    def members_at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(removed small features, added large features) of the hybrid after ``step`` (0 = the small SAE)."""
        if not 0 <= step < self.n_steps:
            raise ConfigError(f"step {step} out of range: the path has steps 0..{self.n_steps - 1}")
        if step == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        fams = [self.families[i] for i in self.order[: step - 1]]
        removed = np.concatenate([np.zeros(0, np.int64)] + [f.small_features for f in fams])
        added = np.concatenate([self.novel] + [f.large_features for f in fams])
        return removed.astype(np.int64), added.astype(np.int64)


def plan_interpolation(
    small: Sae, large: Sae, tau: float = 0.7, *, match: PairMatch | None = None, progress: bool = True
) -> InterpolationPlan:
    """Match the pair (unless ``match`` is given), find families and novel features, order the swaps."""
    check_stitchable(small, large)
    match = match if match is not None else match_saes(small, large, tau, progress=progress)
    fams = families_from_edges(match.edge_small, match.edge_large)
    return InterpolationPlan(
        novel=novel_features(match, tau),
        families=fams,
        order=swap_order(match, fams),
        strength=family_max_cos(match, fams),
    )


def path_sae(small: Sae, large: Sae, plan: InterpolationPlan, step: int) -> Sae:
    """The hybrid SAE after ``step`` steps of the path, built explicitly."""
    removed, added = plan.members_at(step)
    return hybrid(small, large, add=added, remove=removed, name=f"path step {step}")


def interpolation_path(
    small: Sae,
    large: Sae,
    acts: ActivationsLike,
    plan: InterpolationPlan,
    *,
    ce_fn: Callable[[Sae], float] | None = None,
    ce_steps: Sequence[int] = (),
    batch_size: int = 4096,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> pl.DataFrame:
    """One row per step (see module docstring) with n_features, L0, MSE, explained variance and CE recovered.

    ``ce_recovered`` is filled at ``ce_steps`` with ``ce_fn(path_sae(...))`` and null elsewhere.
    """
    check_stitchable(small, large)
    s, lg = as_dtype(small, dtype), as_dtype(large, dtype)
    fams = [plan.families[i] for i in plan.order]
    n_steps = plan.n_steps
    # every large feature the path ever adds, encoded once per batch; positions into that block per family
    added_all = np.concatenate([plan.novel] + [f.large_features for f in fams]).astype(np.int64)
    col = {int(j): i for i, j in enumerate(added_all)}
    novel_pos = torch.as_tensor([col[int(j)] for j in plan.novel], dtype=torch.long)
    fam_pos = [torch.as_tensor([col[int(j)] for j in f.large_features], dtype=torch.long) for f in fams]
    fam_par = [torch.as_tensor(f.small_features, dtype=torch.long) for f in fams]
    idx_all = torch.from_numpy(added_all)
    with torch.no_grad():
        D_add = lg.W_dec[idx_all]
        sse = torch.zeros(n_steps, dtype=torch.float64)
        nnz = torch.zeros(n_steps, dtype=torch.float64)  # per-step change in the number of active features
        n, sx, sxx = (
            0,
            torch.zeros(small.d_in, dtype=torch.float64),
            torch.zeros(small.d_in, dtype=torch.float64),
        )
        bar = tqdm(total=n_rows(acts), unit="tok", desc="interpolation path", disable=not progress)
        for x in iter_acts(acts, batch_size, small.d_in):
            x = x.to(dtype)
            f = s.encode(x)
            g = encode_columns(lg, x, idx_all)
            r = f @ s.W_dec + s.b_dec - x
            sse[0] += (r * r).sum()
            nnz[0] += (f != 0).sum()
            r = r + g[:, novel_pos] @ D_add[novel_pos]
            running = (r * r).sum()
            sse[1] += running
            nnz[1] += (g[:, novel_pos] != 0).sum()
            for k, (pos, par) in enumerate(zip(fam_pos, fam_par, strict=True)):
                # a swap changes the residual only on tokens where one of the family's members fires (a few
                # percent), so update those rows and the running squared error instead of the whole batch
                gc, fp = g[:, pos], f[:, par]
                rows = torch.nonzero((gc != 0).any(1) | (fp != 0).any(1)).squeeze(1)
                if rows.numel():
                    old = r[rows]
                    new = old + gc[rows] @ D_add[pos] - fp[rows] @ s.W_dec[par]
                    running = running + (new * new).sum() - (old * old).sum()
                    r[rows] = new
                    nnz[k + 2] += (gc[rows] != 0).sum() - (fp[rows] != 0).sum()
                sse[k + 2] += running
            xd = x.double()
            sx += xd.sum(0)
            sxx += (xd * xd).sum(0)
            n += x.shape[0]
            bar.update(x.shape[0])
        bar.close()
    if n == 0:
        raise ConfigError("no activations given (0 tokens)")
    total_var = float((sxx / n - (sx / n) ** 2).sum())
    mse = (sse / n).numpy()
    l0 = np.cumsum((nnz / n).numpy())
    ce: list[float | None] = [None] * n_steps
    if ce_fn is not None:
        for st in sorted(set(int(c) for c in ce_steps)):
            ce[st] = float(ce_fn(path_sae(small, large, plan, st)))
    return path_table(small.n_features, plan, mse, l0, total_var, ce)


def path_table(n_small: int, plan: InterpolationPlan, mse: np.ndarray, l0: np.ndarray, total_var: float,
               ce: list[float | None]) -> pl.DataFrame:
    """The interpolation path's table (:data:`featgraph.tables.PATH_SCHEMA`), one row per step, from the per-step
    MSE and L0 however they were computed (this module's own pass or the stitch pipeline's shared one)."""
    fams = [plan.families[i] for i in plan.order]
    n_removed = np.array([0, 0] + [len(f.small_features) for f in fams])
    n_added = np.array([0, len(plan.novel)] + [len(f.large_features) for f in fams])
    return pl.DataFrame(
        {
            "step": np.arange(plan.n_steps),
            "action": ["base", "add_novel"] + ["swap"] * len(fams),
            "family": [-1, -1] + [f.family for f in fams],
            "family_kind": ["", ""] + [f.kind for f in fams],
            "family_max_cos": [float("nan")] * 2 + [float(plan.strength[i]) for i in plan.order],
            "n_removed": n_removed,
            "n_added": n_added,
            "n_features": n_small + np.cumsum(n_added - n_removed),
            "l0": l0,
            "mse": mse,
            "explained_variance": 1.0 - mse / total_var,
            "ce_recovered": ce,
        },
        schema=PATH_SCHEMA,
    )


def default_ce_steps(n_steps: int, n_points: int = 6) -> list[int]:
    """Steps 0 and 1, the last step, and evenly spaced swaps in between (at most ``n_points`` in all)."""
    if n_steps <= n_points:
        return list(range(n_steps))
    inner = np.linspace(1, n_steps - 1, n_points - 1).round().astype(int).tolist()
    return sorted(set([0, *inner]))
