"""One pass over the activations gives the exact delta-MSE of many feature-group edits of an SAE at once.

GUIDE.md ("Metrics"): with everything else fixed, removing base features P and adding donor features C changes the
reconstruction by ``sum_C f_c d_c - sum_P f_p d_p``, so each group's dMSE is ``E[2 g.(r D^T) + g K g]`` with
``r = x_hat - x`` and ``K`` the Gram matrix of the group's rows: linear and quadratic sums accumulated per batch.
It sits in the training room, below :mod:`featgraph.stitch`, because two rooms need it: training health (removing
each feature from its own SAE) and the stitch analyses (adding and swapping another SAE's features).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm.auto import tqdm

from featgraph.activations.batches import ActivationsLike, iter_acts, n_rows
from featgraph.errors import ConfigError, ShapeMismatchError
from featgraph.sae import Sae, as_dtype, encode_columns


@dataclasses.dataclass
class GroupDeltas:
    """Result of :func:`grouped_delta_mse`: one value per group, plus the base SAE's own MSE and L0."""

    dmse: np.ndarray  #: float64 [G]: MSE(hybrid) - MSE(base)
    dl0: np.ndarray  #: float64 [G]: L0(hybrid) - L0(base)
    mse_base: float
    l0_base: float
    n_tokens: int

    def relative(self) -> np.ndarray:
        return self.dmse / self.mse_base


def _group_gram(D: torch.Tensor, gid: torch.Tensor) -> torch.Tensor:
    """Sparse ``[M, M]`` Gram matrix of the rows ``D`` with entries only between members of one group."""
    order = torch.argsort(gid, stable=True)
    rows, cols = [], []
    sorted_gid = gid[order]
    bounds = torch.nonzero(torch.diff(sorted_gid, prepend=sorted_gid[:1] - 1)).flatten().tolist() + [len(gid)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=False):
        m = order[a:b]
        rows.append(m.repeat_interleave(len(m)))
        cols.append(m.repeat(len(m)))
    r, c = torch.cat(rows), torch.cat(cols)
    vals = (D[r] * D[c]).sum(-1)
    return torch.sparse_coo_tensor(torch.stack([r, c]), vals, (len(gid), len(gid)), check_invariants=False).coalesce()


def grouped_delta_mse(
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
    """dMSE and dL0 of each group's swap: base features with ``base_group == g`` out, donor ones with g in.

    ``base_group`` ``[F_base]`` and ``donor_group`` ``[F_donor]`` hold group ids ``0..G-1`` or -1 (not in a
    group). No stitchability check here: callers state their policy (:func:`featgraph.stitch.delta_mse_groups`
    refuses TopK and mixed input conventions; health measures removals from relu/jumprelu SAEs only).
    """
    bg = np.asarray(base_group, dtype=np.int64)
    dg = np.asarray(donor_group, dtype=np.int64)
    if bg.shape != (base.n_features,) or dg.shape != (donor.n_features,):
        raise ShapeMismatchError(
            f"group arrays have shapes {list(bg.shape)} and {list(dg.shape)}, expected "
            f"[{base.n_features}] and [{donor.n_features}]"
        )
    n_groups = int(max(bg.max(initial=-1), dg.max(initial=-1)) + 1)
    if (bg < -1).any() or (dg < -1).any():
        raise ConfigError("group ids must be -1 (no group) or >= 0")
    b, dn = as_dtype(base, dtype), as_dtype(donor, dtype)
    P = torch.from_numpy(np.flatnonzero(bg >= 0))
    C = torch.from_numpy(np.flatnonzero(dg >= 0))
    gid = torch.from_numpy(np.concatenate([bg[P.numpy()], dg[C.numpy()]]))
    sign = torch.cat([-torch.ones(len(P), dtype=dtype), torch.ones(len(C), dtype=dtype)])
    with torch.no_grad():
        D = torch.cat([b.W_dec[P], dn.W_dec[C]])  # [M, d]
        K = _group_gram(D, gid) if len(gid) else None
        lin = torch.zeros(len(gid), dtype=dtype)
        quad = torch.zeros(len(gid), dtype=dtype)
        active = torch.zeros(len(gid), dtype=dtype)
        sse, l0_sum, n = torch.zeros((), dtype=dtype), torch.zeros((), dtype=dtype), 0
        total = n_rows(acts)
        bar = tqdm(total=total, unit="tok", desc="delta-MSE", disable=not progress)
        for x in iter_acts(acts, batch_size, base.d_in):
            x = x.to(dtype)
            f = b.encode(x)
            r = f @ b.W_dec + b.b_dec - x
            sse += (r * r).sum()
            l0_sum += (f != 0).sum()
            n += x.shape[0]
            if K is not None:
                parts = ([-f[:, P]] if len(P) else []) + ([encode_columns(dn, x, C)] if len(C) else [])
                g = torch.cat(parts, dim=1)
                lin += (g * (r @ D.T)).sum(0)
                quad += (g * torch.sparse.mm(K, g.T).T).sum(0)
                active += (g != 0).sum(0)
            bar.update(x.shape[0])
        bar.close()
    if n == 0:
        raise ConfigError("no activations given (0 tokens)")
    per_member_dmse = (2 * lin + quad) / n
    dmse = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, gid, per_member_dmse.double())
    dl0 = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, gid, (sign * active / n).double())
    return GroupDeltas(
        dmse=dmse.numpy(), dl0=dl0.numpy(), mse_base=float(sse / n), l0_base=float(l0_sum / n), n_tokens=n
    )
