"""One pass over the activations for every analysis of a (small, large) pair.

Every stitching number of a pair is a function of a few sums over tokens, so the pipeline reads each batch once,
encodes it with each SAE once (in float64), adds to those sums and drops the batch; memory is set by the batch
size and the SAE widths, never by the store.

The members. Every large feature ``j`` (signed activation ``h_j = +g_j``, it is added) and every small feature
``p`` that belongs to a family (``h_p = -f_p``, it is removed), with decoder rows ``d_m``. Any hybrid along the
way (:mod:`featgraph.stitch.hybrid`) changes the small SAE's residual ``r = x_hat - x`` to ``r + sum_{m in S} h_m
d_m`` for its member set ``S``, so its MSE is::

    MSE(S) = MSE_0 + sum_{m in S} 2 a_m + sum_{m, m' in S} Q_mm',    a_m = E[h_m (r . d_m)],
                                                                        Q_mm' = E[h_m h_m'] (d_m . d_m')

The pass accumulates ``sum h_m (r . d_m)``, the co-activation matrix ``H^T H`` (a sparse product: few features
fire per token) and each member's active count; afterwards (:class:`PairMoments`):

- one large feature added alone: ``S = {j}``; one family swapped alone: ``S = family``;
- a cumulative curve: ``S`` = the first k features of an order, for every k (prefix sums of ``Q``);
- the interpolation path: ``S`` = the novel features, then family after family (each step adds its own block of
  ``Q`` and twice its cross terms with every earlier step).

Also from the same batches: each SAE's MSE, L0 and explained variance (the pair's points) and, per large feature,
both SAEs' MSE on the tokens where it fires and where it does not. All sums are float64.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.sparse
import torch
from tqdm.auto import tqdm

from featgraph.errors import ConfigError
from featgraph.graph import Family
from featgraph.sae import Sae
from featgraph.stitch.batches import ActivationsLike, as_dtype, iter_acts, n_rows
from featgraph.stitch.hybrid import check_stitchable


@dataclasses.dataclass
class PairMoments:
    """The sums of one pass (see module docstring), divided by the number of tokens where that is the mean."""

    n_tokens: int
    n_large: int
    small_members: np.ndarray  #: int64: the small features in families (members n_large.. in that order)
    lin: np.ndarray  #: [M] E[h_m (r . d_m)]
    quad: np.ndarray  #: [M, M] Q = E[h h^T] * (D D^T)
    active: np.ndarray  #: [M] share of tokens where member m fires
    sign: np.ndarray  #: [M] +1 added (large), -1 removed (small)
    mse_small: float
    l0_small: float
    mse_large: float
    l0_large: float
    total_var: float  #: sum_d Var(x_d), for explained variance
    active_frac: np.ndarray  #: [F_large] share of tokens where each large feature fires
    small_active: np.ndarray  #: [F_large] small SAE's MSE where large feature j fires (NaN: never)
    small_inactive: np.ndarray
    large_active: np.ndarray
    large_inactive: np.ndarray
    # per-context sums of the same pass, for the bootstrap (featgraph.stitch.bootstrap): tokens, both SAEs' SSE,
    # the small SAE's SSE with every novel feature added, and each large feature's delta-MSE sum [C, F_large]
    ctx_n: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    ctx_sse_small: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    ctx_sse_large: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    ctx_sse_novel: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    ctx_dmse: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0)))
    ctx_unit: str = "context"

    def member_of_small(self, features: np.ndarray) -> np.ndarray:
        """Member positions of small features (each must belong to a family)."""
        pos = np.searchsorted(self.small_members, features)
        return (self.n_large + pos).astype(np.int64)

    def group_dmse(self, members: np.ndarray) -> tuple[float, float]:
        """(delta-MSE, delta-L0) of moving the member set ``members`` alone."""
        m = np.asarray(members, dtype=np.int64)
        return (float(2 * self.lin[m].sum() + self.quad[np.ix_(m, m)].sum()),
                float((self.sign[m] * self.active[m]).sum()))

    def add_each(self) -> tuple[np.ndarray, np.ndarray]:
        """(delta-MSE, delta-L0) of adding each large feature alone, ``[F_large]``."""
        j = np.arange(self.n_large)
        return 2 * self.lin[j] + self.quad[j, j], self.active[j].copy()

    def swap_each(self, families: Sequence[Family]) -> tuple[np.ndarray, np.ndarray]:
        """(delta-MSE, delta-L0) of swapping each family alone, in the order given."""
        out = [self.group_dmse(self.family_members(f)) for f in families]
        return (np.array([o[0] for o in out], dtype=np.float64).reshape(-1),
                np.array([o[1] for o in out], dtype=np.float64).reshape(-1))

    def family_members(self, f: Family) -> np.ndarray:
        return np.concatenate([np.asarray(f.large_features, np.int64), self.member_of_small(f.small_features)])

    def cumulative(self, order: np.ndarray) -> np.ndarray:
        """MSE after adding the large features ``order[:k]`` together, for ``k = 0..len(order)``."""
        o = np.asarray(order, dtype=np.int64)
        sub = self.quad[np.ix_(o, o)]
        step = 2 * self.lin[o] + np.diagonal(sub) + 2 * np.tril(sub, -1).sum(1)
        return self.mse_small + np.concatenate([[0.0], np.cumsum(step)])

    def path(self, steps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(MSE, L0) after each step of a path: step 0 is the small SAE, step ``k >= 1`` moves ``steps[k-1]``
        (member positions) on top of every earlier step."""
        rank = np.full(self.lin.size, -1, dtype=np.int64)
        for k, m in enumerate(steps):
            rank[np.asarray(m, dtype=np.int64)] = k
        used = np.flatnonzero(rank >= 0)
        r = rank[used]
        q = self.quad[np.ix_(used, used)]
        # a member's step adds its own block once and its cross terms with every earlier step twice
        weight = (r[:, None] == r[None, :]) + 2.0 * (r[None, :] < r[:, None])
        per_member = 2 * self.lin[used] + (q * weight).sum(1)
        inc = np.bincount(r, weights=per_member, minlength=len(steps))
        dl0 = np.bincount(r, weights=self.sign[used] * self.active[used], minlength=len(steps))
        mse = self.mse_small + np.concatenate([[0.0], np.cumsum(inc)])
        l0 = self.l0_small + np.concatenate([[0.0], np.cumsum(dl0)])
        return mse, l0


def _csr(a: torch.Tensor) -> scipy.sparse.csr_matrix:
    """A batch of activations as a sparse matrix: few features fire per token, so decoding and the member sums
    cost (number of active entries) x d instead of batch x features x d."""
    return scipy.sparse.csr_matrix(a.numpy())


def stream_pair(
    small: Sae,
    large: Sae,
    acts: ActivationsLike,
    families: Sequence[Family],
    *,
    batch_size: int = 4096,
    progress: bool = True,
    novel: np.ndarray | None = None,
    context_rows: int | None = None,
    context_phase: int = 0,
    context_unit: str = "context",
) -> PairMoments:
    """Read ``acts`` once and return every sum the pair's analyses need (see module docstring).

    With ``context_rows`` the pass also keeps per-context sums (row ``i`` in context ``(i + context_phase) //
    context_rows``) for a bootstrap over contexts; ``novel`` (large feature indices) is the set whose joint addition
    those sums track."""
    check_stitchable(small, large)
    s, lg = as_dtype(small, torch.float64), as_dtype(large, torch.float64)
    P = np.unique(np.concatenate([np.zeros(0, np.int64)] + [np.asarray(f.small_features, np.int64) for f in families]))
    F, M = large.n_features, large.n_features + P.size
    with torch.no_grad():
        Ws, Wl = s.W_dec.numpy(), lg.W_dec.numpy()
        bs, bl = s.b_dec.numpy(), lg.b_dec.numpy()
    D = np.concatenate([Wl, Ws[P]])  # [M, d]: member rows
    lin = np.zeros(M)
    active = np.zeros(M)
    co = np.zeros((M, M))
    sx, sxx = np.zeros(small.d_in), np.zeros(small.d_in)
    s_act, l_act = np.zeros(F), np.zeros(F)
    sse_s = sse_l = l0_s = l0_l = 0.0
    n = 0
    N = np.asarray(novel if novel is not None else np.zeros(0), dtype=np.int64)
    dn = (Wl * Wl).sum(1)  # ||d_j||^2
    ctx: dict[str, list] = {"n": [], "s": [], "l": [], "nov": [], "dmse": []}  # per-batch pieces, merged at the end
    bar = tqdm(total=n_rows(acts), unit="tok", desc="stitch pass", disable=not progress)
    for xt in iter_acts(acts, batch_size, small.d_in):
        xt = xt.to(torch.float64)
        with torch.no_grad():  # the encoders are dense: one float64 matmul per SAE, the floor of this pass
            fs, gs = _csr(s.encode(xt)), _csr(lg.encode(xt))
        x = xt.numpy()
        r = fs @ Ws + bs - x
        rl = gs @ Wl + bl - x
        es, el = np.einsum("ij,ij->i", r, r), np.einsum("ij,ij->i", rl, rl)
        hs = scipy.sparse.hstack([gs, -fs[:, P]], format="csr")  # signed member activations [B, M]
        lin += np.einsum("md,md->m", np.asarray(hs.T @ r), D)
        co += (hs.T @ hs).toarray()
        active += np.bincount(hs.indices, minlength=M)
        fires = scipy.sparse.csr_matrix((np.ones(gs.nnz), gs.indices, gs.indptr), shape=gs.shape)
        s_act += fires.T @ es
        l_act += fires.T @ el
        sse_s += float(es.sum())
        sse_l += float(el.sum())
        l0_s += fs.nnz
        l0_l += gs.nnz
        sx += x.sum(0)
        sxx += (x * x).sum(0)
        if context_rows:
            _context_sums(ctx, (n + np.arange(x.shape[0]) + context_phase) // context_rows, gs, r, Wl, dn, N, es, el)
        n += x.shape[0]
        bar.update(x.shape[0])
    bar.close()
    if n == 0:
        raise ConfigError("no activations given (0 tokens)")
    K = D @ D.T
    cnt = active[:F]
    sa, la = s_act, l_act
    with np.errstate(invalid="ignore", divide="ignore"):
        small_active, small_inactive = sa / cnt, (sse_s - sa) / (n - cnt)
        large_active, large_inactive = la / cnt, (sse_l - la) / (n - cnt)
    return PairMoments(
        n_tokens=n,
        n_large=F,
        small_members=P,
        lin=lin / n,
        quad=(co / n) * K,
        active=active / n,
        sign=np.concatenate([np.ones(F), -np.ones(P.size)]),
        mse_small=sse_s / n,
        l0_small=l0_s / n,
        mse_large=sse_l / n,
        l0_large=l0_l / n,
        total_var=float((sxx / n - (sx / n) ** 2).sum()),
        active_frac=cnt / n,
        small_active=small_active,
        small_inactive=small_inactive,
        large_active=large_active,
        large_inactive=large_inactive,
        **_merge_context_sums(ctx, F, context_unit),
    )


def _context_sums(ctx: dict[str, list], ids: np.ndarray, gs: scipy.sparse.csr_matrix, r: np.ndarray, Wl: np.ndarray,
                  dn: np.ndarray, novel: np.ndarray, es: np.ndarray, el: np.ndarray) -> None:
    """One batch's per-context sums (``ids``: each row's context): tokens, SSEs, SSE with all novel features
    added, and per large feature ``2 g_j (r . d_j) + g_j^2 ||d_j||^2`` (its added-alone delta-MSE, summed)."""
    lo = int(ids[0])
    local = ids - lo
    C = int(local[-1]) + 1
    rows = np.repeat(np.arange(gs.shape[0]), np.diff(gs.indptr))
    cols, g = gs.indices, gs.data
    contrib = 2 * g * np.einsum("id,id->i", r[rows], Wl[cols]) + g * g * dn[cols]
    per = scipy.sparse.coo_matrix((contrib, (local[rows], cols)), shape=(C, gs.shape[1])).toarray()
    rn = r + gs[:, novel] @ Wl[novel] if novel.size else r
    for key, vals in (("n", np.ones(len(ids))), ("s", es), ("l", el), ("nov", np.einsum("ij,ij->i", rn, rn))):
        ctx[key].append((lo, np.bincount(local, weights=vals, minlength=C)))
    ctx["dmse"].append((lo, per))


def _merge_context_sums(ctx: dict[str, list], F: int, unit: str) -> dict[str, object]:
    """The per-batch pieces summed into per-context arrays (a context cut by a batch boundary is added up)."""
    if not ctx["n"]:
        return {}
    C = max(lo + len(a) for lo, a in ctx["n"])
    out: dict[str, object] = {"ctx_unit": unit}
    for key, name in (("n", "ctx_n"), ("s", "ctx_sse_small"), ("l", "ctx_sse_large"), ("nov", "ctx_sse_novel")):
        acc = np.zeros(C)
        for lo, a in ctx[key]:
            acc[lo:lo + len(a)] += a
        out[name] = acc
    dm = np.zeros((C, F))
    for lo, a in ctx["dmse"]:
        dm[lo:lo + a.shape[0]] += a
    out["ctx_dmse"] = dm
    return out
