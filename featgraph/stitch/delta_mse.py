"""delta-MSE of adding donor features to a base SAE, or swapping families, for all candidates in one pass.

MSE is per token the sum over d of ``(x - x_hat)^2``, averaged over tokens (GUIDE.md). With ``r = x_hat - x``
the base SAE's residual, a hybrid (see :mod:`featgraph.stitch.hybrid`) changes it to ``r + Delta`` with::

    Delta = sum_{c in children} f_c d_c - sum_{p in parents} f_p d_p        (f: activations in their own SAE)

so ``dMSE = E[2 r . Delta + ||Delta||^2]``. Writing ``g_m = +f_m`` for added and ``-f_m`` for removed members
of a group and ``K`` for the Gram matrix of the members' decoder rows restricted to pairs *within* one group::

    dMSE_group = E[ sum_{m in group} 2 g_m (r . d_m)  +  sum_{m in group} g_m (g K)_m ]

Groups are disjoint (a feature belongs to at most one family), so ``K`` is block-diagonal and every group's
dMSE comes from two batched products per token batch: ``r @ D^T`` and ``g @ K``. Adding one donor feature
``j`` is the group ``{j}``: ``dMSE_j = E[2 f_j (r . d_j) + f_j^2 ||d_j||^2]``. dL0 is exact too: ``E[#active
added - #active removed]``. Accumulation is in float64 (configurable) so it agrees with building each hybrid
to ~1e-10 relative.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from featgraph.errors import ConfigError, ShapeMismatchError
from featgraph.matching.core import is_novel  # the one definition of "novel"
from featgraph.sae import Sae
from featgraph.stitch.batches import ActivationsLike, as_dtype, encode_columns, iter_acts, n_rows
from featgraph.stitch.hybrid import check_stitchable
from featgraph.training.delta_mse import GroupDeltas, grouped_delta_mse


def delta_mse_groups(
    base: Sae,
    donor: Sae,
    acts: ActivationsLike,
    base_group: np.ndarray,
    donor_group: np.ndarray,
    *,
    batch_size: int = 4096,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> GroupDeltas:
    """dMSE and dL0 of each group's swap (:func:`featgraph.training.delta_mse.grouped_delta_mse`) for two SAEs
    whose features can be moved exactly (:func:`featgraph.stitch.hybrid.check_stitchable`)."""
    check_stitchable(base, donor)
    return grouped_delta_mse(base, donor, acts, base_group, donor_group, batch_size=batch_size, dtype=dtype,
                             progress=progress)


def delta_mse_add(
    base: Sae,
    donor: Sae,
    acts: ActivationsLike,
    candidates: Sequence[int] | np.ndarray | None = None,
    **kw: Any,
) -> GroupDeltas:
    """dMSE of adding each donor feature in ``candidates`` (default: all) to ``base`` on its own, in one pass.

    Result arrays follow the order of ``candidates``.
    """
    cand = np.arange(donor.n_features) if candidates is None else np.asarray(candidates, dtype=np.int64)
    if cand.size and (cand.min() < 0 or cand.max() >= donor.n_features or np.unique(cand).size != cand.size):
        raise ConfigError(f"candidates must be distinct indices in [0, {donor.n_features}), got {cand[:5]}...")
    dg = np.full(donor.n_features, -1, dtype=np.int64)
    dg[cand] = np.arange(cand.size)
    return delta_mse_groups(base, donor, acts, np.full(base.n_features, -1, dtype=np.int64), dg, **kw)


def family_groups(
    families: Sequence[tuple[Sequence[int], Sequence[int]]], n_base: int, n_donor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Group-id arrays for :func:`delta_mse_groups` from ``(parents, children)`` pairs; checks
    disjointness."""
    bg = np.full(n_base, -1, dtype=np.int64)
    dg = np.full(n_donor, -1, dtype=np.int64)
    for i, (parents, children) in enumerate(families):
        for arr, idx, n, what in ((bg, parents, n_base, "base"), (dg, children, n_donor, "donor")):
            idx = np.asarray(idx, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ConfigError(f"family {i}: {what} indices {idx.tolist()[:5]} out of range for {n} features")
            clash = idx[arr[idx] >= 0]
            if clash.size:
                raise ConfigError(
                    f"family {i}: {what} features {clash.tolist()[:5]} are already in family "
                    f"{int(arr[clash[0]])}; families must be disjoint"
                )
            arr[idx] = i
    return bg, dg


def delta_mse_swap(
    base: Sae,
    donor: Sae,
    acts: ActivationsLike,
    families: Sequence[tuple[Sequence[int], Sequence[int]]],
    **kw: Any,
) -> GroupDeltas:
    """dMSE and dL0 of swapping each family on its own (its parents out of ``base``, its children in), one
    pass."""
    bg, dg = family_groups(families, base.n_features, donor.n_features)
    out = delta_mse_groups(base, donor, acts, bg, dg, **kw)
    if out.dmse.size < len(families):  # trailing families with no members at all
        pad = len(families) - out.dmse.size
        out.dmse = np.concatenate([out.dmse, np.zeros(pad)])
        out.dl0 = np.concatenate([out.dl0, np.zeros(pad)])
    return out


@dataclasses.dataclass
class ActiveInactive:
    """Per donor feature: base and donor MSE on tokens where it is active vs inactive (the post's table)."""

    active_frac: np.ndarray  #: [k]
    base_active: np.ndarray
    base_inactive: np.ndarray
    donor_active: np.ndarray
    donor_inactive: np.ndarray


def active_inactive_mse(
    base: Sae,
    donor: Sae,
    acts: ActivationsLike,
    features: Sequence[int] | np.ndarray,
    *,
    batch_size: int = 4096,
    progress: bool = True,
) -> ActiveInactive:
    """MSE of each SAE on tokens where each donor feature in ``features`` fires vs does not (NaN if
    never/always)."""
    idx = torch.as_tensor(np.asarray(features, dtype=np.int64))
    s_act = torch.zeros(len(idx), dtype=torch.float64)
    d_act = torch.zeros(len(idx), dtype=torch.float64)
    cnt = torch.zeros(len(idx), dtype=torch.float64)
    s_tot = d_tot = 0.0
    n = 0
    with torch.no_grad():
        bar = tqdm(total=n_rows(acts), unit="tok", desc="active/inactive MSE", disable=not progress)
        for x in iter_acts(acts, batch_size, base.d_in):
            x = x.float()
            es = ((base(x).x_hat - x) ** 2).sum(-1).double()
            fd = donor.encode(x)
            ed = ((fd @ donor.W_dec + donor.b_dec - x) ** 2).sum(-1).double()
            a = (fd[:, idx] > 0).double()
            s_act += es @ a
            d_act += ed @ a
            cnt += a.sum(0)
            s_tot += float(es.sum())
            d_tot += float(ed.sum())
            n += x.shape[0]
            bar.update(x.shape[0])
        bar.close()
    with np.errstate(invalid="ignore", divide="ignore"):
        c, sa, da = cnt.numpy(), s_act.numpy(), d_act.numpy()
        return ActiveInactive(
            active_frac=c / n,
            base_active=sa / c,
            base_inactive=(s_tot - sa) / (n - c),
            donor_active=da / c,
            donor_inactive=(d_tot - da) / (n - c),
        )


def cumulative_add_mse(
    base: Sae,
    donor: Sae,
    acts: ActivationsLike,
    order: Sequence[int] | np.ndarray,
    *,
    batch_size: int = 4096,
    dtype: torch.dtype = torch.float64,
    progress: bool = True,
) -> np.ndarray:
    """MSE after adding the donor features ``order[:k]`` together, for every ``k = 0..len(order)`` (one pass).

    Added features interact, so this is not a cumulative sum of single dMSEs: with ``a_i = E[2 f_i r . d_i]``
    and ``M_ij = E[f_i f_j] (d_i . d_j)``, ``MSE_k = MSE_0 + sum_{i<=k} a_i + sum_{i,j<=k} M_ij``; we
    accumulate the co-activation matrix ``E[f f^T]`` (``[k, k]``) over the tokens and take prefix sums.
    """
    check_stitchable(base, donor)
    idx = torch.as_tensor(np.asarray(order, dtype=np.int64))
    if idx.numel() and (
        int(idx.min()) < 0 or int(idx.max()) >= donor.n_features or torch.unique(idx).numel() != idx.numel()
    ):
        raise ConfigError(f"order must hold distinct donor feature indices in [0, {donor.n_features})")
    b, dn = as_dtype(base, dtype), as_dtype(donor, dtype)
    k = idx.numel()
    with torch.no_grad():
        D = dn.W_dec[idx]
        lin = torch.zeros(k, dtype=dtype)
        co = torch.zeros(k, k, dtype=dtype)
        sse, n = torch.zeros((), dtype=dtype), 0
        bar = tqdm(total=n_rows(acts), unit="tok", desc="cumulative MSE", disable=not progress)
        for x in iter_acts(acts, batch_size, base.d_in):
            x = x.to(dtype)
            r = b(x).x_hat - x
            f = encode_columns(dn, x, idx)
            sse += (r * r).sum()
            lin += 2 * (f * (r @ D.T)).sum(0)
            co += f.T @ f
            n += x.shape[0]
            bar.update(x.shape[0])
        bar.close()
    if n == 0:
        raise ConfigError("no activations given (0 tokens)")
    M = (co / n) * (D @ D.T)
    step = lin / n + torch.diagonal(M) + 2 * torch.tril(M, -1).sum(1)
    return float(sse / n) + np.concatenate([[0.0], torch.cumsum(step, 0).numpy()])


def two_by_two(max_cos: np.ndarray, dmse: np.ndarray, tau: float = 0.7) -> dict[str, dict[str, int]]:
    """The post's table: novel (max cos <= tau) / reconstruction (> tau) x dMSE < 0 / > 0 (/ == 0: never
    fires)."""
    max_cos, dmse = np.asarray(max_cos), np.asarray(dmse)
    if max_cos.shape != dmse.shape:
        raise ShapeMismatchError(f"max_cos has shape {list(max_cos.shape)} but dmse {list(dmse.shape)}")
    novel = is_novel(max_cos, tau)
    out = {}
    for name, m in (("novel", novel), ("reconstruction", ~novel)):
        out[name] = {
            "dmse_lt_0": int((dmse[m] < 0).sum()),
            "dmse_gt_0": int((dmse[m] > 0).sum()),
            "dmse_eq_0": int((dmse[m] == 0).sum()),
            "total": int(m.sum()),
        }
    return out
