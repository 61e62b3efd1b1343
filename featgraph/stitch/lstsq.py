"""The exact decoder of an SAE whose encoder is frozen: ridge least squares, the ridge chosen on validation tokens.

With the encoder fixed every feature's activation ``f_t`` on every token is fixed, so the decoder that minimises the
reconstruction MSE is a linear least-squares problem in ``W_dec`` and ``b_dec`` together::

    min_{W, b}  mean_t ||x_t - f_t W - b||^2  +  lam * s * ||W||_F^2,      s = mean_j (F^T F)_jj / n

(``s`` makes ``lam`` unit-free; ``b`` is not penalised). Its normal equations need only ``F1^T F1`` and ``F1^T X``
with ``F1 = [F, 1]``; both are accumulated in float64 in one streaming pass (:func:`decoder_moments`), the activations
sparse (few features fire per token), and the system is solved by Cholesky (``scipy.linalg.solve(assume_a='pos')``)
for every ridge value of a grid. Each candidate is scored on held-out validation tokens (the rest of the same pass)
and the lowest validation MSE wins; ties go to the earlier grid value, so the choice is deterministic.

Decisions:

- Features that never fire on the fitting tokens carry no information about their row: they keep their old decoder
  row (a ridge would zero it) and are left out of the system, which also keeps it positive definite at ``lam = 0``.
- A grid value whose system is not positive definite (collinear features at ``lam = 0``) is skipped and recorded.
- The encoder is untouched: ``b_dec`` is also the pre-encoder bias, so its change is folded into ``b_enc``
  (``b_enc += (b_new - b_old) @ W_enc`` in float64), exactly as the Adam retraining did; every feature fires as
  before.
- Features are encoded in the SAE's own dtype (the activations that evaluation sees), then summed in float64: the
  solution is the exact optimum for those activations.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse
import torch
from tqdm.auto import tqdm

from featgraph.errors import ConfigError
from featgraph.sae import Sae, SaeConfig
from featgraph.stitch.batches import ActivationsLike, iter_acts

#: relative ridge values tried (see the module docstring for the scale ``s``)
RIDGES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


@dataclasses.dataclass
class DecoderMoments:
    """Sums over ``n`` tokens: ``G = F1^T F1`` ``[F+1, F+1]`` and ``C = F1^T X`` ``[F+1, d]`` (the last index is the
    constant feature of ``b_dec``) and ``sxx = sum ||x||^2``, all float64."""

    n: int
    G: np.ndarray
    C: np.ndarray
    sxx: float

    @property
    def n_features(self) -> int:
        return self.G.shape[0] - 1

    def prefix(self, k: int) -> DecoderMoments:
        """The moments of the first ``k`` features (the bias kept): a nested SAE's, from one pass."""
        idx = np.r_[np.arange(k), self.n_features]
        return DecoderMoments(self.n, self.G[np.ix_(idx, idx)], self.C[idx], self.sxx)

    def mse(self, W: np.ndarray, b: np.ndarray) -> float:
        """Mean squared error (summed over d) of decoder ``(W, b)`` on these tokens, from the sums alone."""
        W1 = np.vstack([W, b[None, :]])
        return float((self.sxx - 2.0 * np.sum(W1 * self.C) + np.sum((self.G @ W1) * W1)) / self.n)


def _empty(F: int, d: int) -> dict[str, Any]:
    return {"n": 0, "G": np.zeros((F + 1, F + 1)), "C": np.zeros((F + 1, d)), "sxx": 0.0}


def _add(acc: dict[str, Any], f: scipy.sparse.csr_matrix, x: np.ndarray) -> None:
    F = f.shape[1]
    P = (f.T @ f).tocoo()
    P.sum_duplicates()
    acc["G"][P.row, P.col] += P.data  # no duplicate (row, col) after sum_duplicates: fancy += is exact
    colsum = np.asarray(f.sum(0)).ravel()
    acc["G"][:F, F] += colsum
    acc["G"][F, :F] += colsum
    acc["G"][F, F] += x.shape[0]
    acc["C"][:F] += f.T @ x
    acc["C"][F] += x.sum(0)
    acc["sxx"] += float(np.einsum("ij,ij->", x, x))
    acc["n"] += x.shape[0]


@torch.no_grad()
def encode_sparse(sae: Sae, x: torch.Tensor) -> scipy.sparse.csr_matrix:
    """The SAE's activations of ``x`` (in its own dtype) as a float64 sparse matrix."""
    f = sae.encode(x.to(sae.W_dec.dtype))
    return scipy.sparse.csr_matrix(f.double().numpy())


def decoder_moments(sae: Sae, acts: ActivationsLike, *, batch_size: int = 4096, progress: bool = True,
                    desc: str = "decoder moments") -> DecoderMoments:
    """:class:`DecoderMoments` of ``sae``'s frozen encoder on ``acts``, one streaming pass."""
    acc = _empty(sae.n_features, sae.d_in)
    bar = tqdm(total=len(acts) if hasattr(acts, "__len__") else None, unit="tok", desc=desc, disable=not progress)
    for xt in iter_acts(acts, batch_size, sae.d_in):
        _add(acc, encode_sparse(sae, xt), xt.double().numpy())
        bar.update(xt.shape[0])
    bar.close()
    if acc["n"] == 0:
        raise ConfigError("no activations to fit the decoder on (0 tokens)")
    return DecoderMoments(acc["n"], acc["G"], acc["C"], acc["sxx"])


def solve_decoder(m: DecoderMoments, ridge: float, W_old: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(W [F, d], b [d])`` minimising the ridge objective on the moments ``m`` (module docstring); features that
    never fired keep their row of ``W_old``. Raises ``numpy.linalg.LinAlgError`` when the system is not positive
    definite."""
    F = m.n_features
    if not ridge >= 0:
        raise ConfigError(f"ridge must be >= 0, got {ridge}")
    diag = np.diagonal(m.G)[:F]
    live = np.flatnonzero(diag > 0)
    idx = np.r_[live, F]
    A = m.G[np.ix_(idx, idx)] / m.n
    B = m.C[idx] / m.n
    if live.size:
        scale = float(np.mean(diag[live])) / m.n
        A[np.arange(live.size), np.arange(live.size)] += ridge * scale
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)  # ill-conditioned counts as a failed solve
        try:
            sol = scipy.linalg.solve(A, B, assume_a="pos", check_finite=False)
        except scipy.linalg.LinAlgWarning as e:
            raise np.linalg.LinAlgError(str(e)) from e
    W = np.array(W_old, dtype=np.float64, copy=True)
    W[live] = sol[:-1]
    return W, sol[-1]


def _val_mse(sae: Sae, cands: Sequence[tuple[np.ndarray, np.ndarray]], acts: ActivationsLike, batch_size: int,
             progress: bool) -> np.ndarray:
    """Validation MSE of every candidate decoder (encoder frozen), one pass over ``acts``."""
    sse, n = np.zeros(len(cands)), 0
    bar = tqdm(total=len(acts) if hasattr(acts, "__len__") else None, unit="tok", desc="ridge validation",
               disable=not progress)
    for xt in iter_acts(acts, batch_size, sae.d_in):
        f, x = encode_sparse(sae, xt), xt.double().numpy()
        for i, (W, b) in enumerate(cands):
            r = f @ W + b - x
            sse[i] += float(np.einsum("ij,ij->", r, r))
        n += x.shape[0]
        bar.update(x.shape[0])
    bar.close()
    if n == 0:
        raise ConfigError("no validation activations to choose the ridge on (0 tokens)")
    return sse / n


@dataclasses.dataclass
class ExactDecoder:
    sae: Sae  #: the SAE with its optimal decoder (encoder unchanged)
    ridge: float  #: the ridge value chosen
    val_mse: dict[str, float]  #: validation MSE per ridge value tried (NaN: not positive definite)
    train_mse: float  #: fitting-token MSE of the chosen decoder
    n_fit: int
    n_val: int


def with_decoder(sae: Sae, W: np.ndarray, b: np.ndarray, record: dict[str, Any]) -> Sae:
    """``sae`` with decoder ``(W, b)``, the ``b_dec`` change folded into ``b_enc`` so that every feature's activation
    is unchanged, and ``record`` under ``cfg.extra['decoder_retrained']``."""
    dt = sae.W_dec.dtype
    t = {k: v.detach().clone() for k, v in sae.tensors().items()}
    t["W_dec"] = torch.as_tensor(W).to(dt)
    t["b_dec"] = torch.as_tensor(b).to(dt)
    if sae.cfg.apply_b_dec_to_input:  # the encoder reads x - b_dec: keep its pre-activations unchanged
        shift = (torch.as_tensor(b) - sae.b_dec.detach().double()) @ sae.W_enc.detach().double()
        t["b_enc"] = (sae.b_enc.detach().double() + shift).to(dt)
    extra = dict(sae.cfg.extra) if isinstance(sae.cfg.extra, dict) else {}
    extra["decoder_retrained"] = record
    cfg = SaeConfig(**{**dataclasses.asdict(sae.cfg), "extra": extra})
    return Sae.from_tensors(t, cfg, where="exact decoder")


def fit_exact_decoder(sae: Sae, fit: ActivationsLike, val: ActivationsLike, *, ridges: Sequence[float] = RIDGES,
                      moments: DecoderMoments | None = None, batch_size: int = 4096,
                      progress: bool = True) -> ExactDecoder:
    """The least-squares decoder of ``sae`` on ``fit`` for each ridge value, the one with the lowest MSE on ``val``
    chosen (module docstring). ``moments``: precomputed :func:`decoder_moments` of ``sae`` on ``fit`` (e.g. a
    prefix of a nested SAE's)."""
    if sae.cfg.architecture == "topk":
        raise ConfigError("an exact decoder needs a relu or jumprelu SAE (a frankenstein SAE is never TopK)")
    if not ridges:
        raise ConfigError("need at least one ridge value")
    m = moments if moments is not None else decoder_moments(sae, fit, batch_size=batch_size, progress=progress)
    if m.n_features != sae.n_features:
        raise ConfigError(f"moments of {m.n_features} features for an SAE of {sae.n_features}")
    W_old = sae.W_dec.detach().double().numpy()
    cands, tried = [], []
    for lam in ridges:
        try:
            cands.append(solve_decoder(m, float(lam), W_old))
            tried.append(float(lam))
        except np.linalg.LinAlgError:
            continue
    if not cands:
        raise ConfigError(f"no ridge value in {list(ridges)} gave a positive definite system")
    val_mse = _val_mse(sae, cands, val, batch_size, progress)
    best = int(np.argmin(val_mse))  # first minimum: ties go to the earlier grid value
    W, b = cands[best]
    scores = {repr(float(lam)): float("nan") for lam in ridges} | {repr(lam): float(v)
                                                                  for lam, v in zip(tried, val_mse, strict=True)}
    record = {"method": "exact least squares (ridge chosen on validation tokens)", "ridge": tried[best],
              "val_mse": scores, "n_fit": m.n, "n_val": int(n_val_of(val))}
    record["n_tokens"] = m.n + record["n_val"]  # every training token read: fitting + validation
    return ExactDecoder(with_decoder(sae, W, b, record), tried[best], scores, m.mse(W, b), m.n, record["n_val"])


def n_val_of(acts: ActivationsLike) -> int:
    return len(acts) if hasattr(acts, "__len__") else -1


def split_fit_val(acts: ActivationsLike, n_tokens: int | None, val_fraction: float = 0.1) -> tuple[Any, Any]:
    """(fitting rows, validation rows) of the first ``n_tokens`` rows of ``acts``: validation is the last
    ``val_fraction`` of them, whole contexts at the end of the store rather than scattered tokens, so neighbouring
    tokens of one context never sit on both sides."""
    from featgraph.activations.batches import StoreRows
    from featgraph.activations.store import ActivationStore

    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if isinstance(acts, ActivationStore):
        acts = StoreRows(acts)
    if isinstance(acts, StoreRows):
        rows = acts.head(n_tokens) if n_tokens is not None else acts
        n = len(rows)
        per = rows.store.meta["context_size"] - int(bool(rows.store.meta.get("exclude_bos")))
        n_val = max(1, round(n * val_fraction / per)) * per if n > 2 * per else max(1, int(n * val_fraction))
        if n_val >= n:
            raise ConfigError(f"{rows.store.folder}: {n} tokens are too few to hold out validation tokens")
        return rows.head(n - n_val), rows.tail(n - n_val)
    x = torch.as_tensor(acts)
    x = x[:n_tokens] if n_tokens is not None else x
    n_val = max(1, int(round(x.shape[0] * val_fraction)))
    if n_val >= x.shape[0]:
        raise ConfigError(f"{x.shape[0]} tokens are too few to hold out validation tokens")
    return x[: x.shape[0] - n_val], x[x.shape[0] - n_val:]
