"""Training-health diagnostics: does an SAE look trained, or do its numbers come from features that never learned?

Definitions (GUIDE.md, "Metrics"), all on held-out activations:

- **firing frequency** of a feature: the share of tokens where it is active. ``dead`` = never active on the eval
  set, ``rare`` = active on fewer than :data:`RARE` of the tokens (dead included), ``dense`` = active on more than
  :data:`DENSE`. A log-spaced histogram of the frequencies goes with them.
- **moved**: a decoder row moved when its cosine to its own initial row is below :data:`MOVED_COS`. The initial
  rows are regenerated from the recipe and seed that :func:`featgraph.training.train_ladder` records in
  ``cfg.extra['init']``; for SAEs trained elsewhere this diagnostic is unknown (``None``).
- **useless or harmful**: removing feature ``j`` from its SAE, with everything else fixed, changes the
  reconstruction by ``-f_j d_j``, so ``dMSE_remove_j = E[-2 f_j (x_hat - x) . d_j + f_j^2 ||d_j||^2]``
  (:func:`featgraph.training.delta_mse.grouped_delta_mse`, each feature a removal group: the same one-pass formula as
  adding a donor feature, sign reversed). A feature is useless or harmful when its removal lowers MSE or raises it
  by less than :data:`USELESS_REL` (0.01%) of the SAE's MSE. Dead features count as useless (their delta is 0).
- **random-like** (needs a second SAE): a feature whose max decoder cos to the other SAE is below the 99th
  percentile that random unit vectors reach against that SAE.

An SAE **looks under-trained** when fewer than :data:`MIN_MOVED_SHARE` of its rows moved or at least
:data:`MAX_USELESS_SHARE` of its features are useless or harmful (:func:`undertrained_reasons`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from featgraph.activations.batches import ActivationsLike, iter_acts
from featgraph.errors import ConfigError, UnsupportedError
from featgraph.sae import Sae
from featgraph.training.delta_mse import grouped_delta_mse

RARE = 1e-4
DENSE = 0.1
MOVED_COS = 0.9
USELESS_REL = 1e-4
MIN_MOVED_SHARE = 0.9
MAX_USELESS_SHARE = 0.05
RANDOM_QUANTILE = 0.99
#: histogram bin edges of log10(firing frequency); dead features get their own bin
HIST_EDGES = tuple(float(e) for e in range(-7, 1))


@torch.no_grad()
def firing_frequencies(sae: Sae, acts: ActivationsLike, *, batch_size: int = 4096) -> tuple[np.ndarray, int]:
    """(share of tokens on which each feature is active ``[F]`` float64, number of tokens)."""
    freq, n, _ = _frequencies_and_mse(sae, acts, batch_size)
    return freq, n


def _frequencies_and_mse(sae: Sae, acts: ActivationsLike, batch_size: int) -> tuple[np.ndarray, int, float]:
    """Firing frequencies, the number of tokens and the SAE's MSE (per token, summed over d) in one pass."""
    counts = torch.zeros(sae.n_features, dtype=torch.float64)
    sse, n = 0.0, 0
    with torch.no_grad():
        for x in iter_acts(acts, batch_size, sae.d_in):
            x = x.to(sae.W_dec.dtype)
            f = sae.encode(x)
            counts += (f != 0).sum(0).double()
            sse += float(((sae.decode(f) - x).double() ** 2).sum())
            n += x.shape[0]
    if n == 0:
        raise ConfigError("no activations given (0 tokens)")
    return (counts / n).numpy(), n, sse / n


def frequency_histogram(freq: np.ndarray) -> dict[str, int]:
    """Counts of features per decade of firing frequency, ``"dead"`` first (keys are readable bin labels)."""
    freq = np.asarray(freq, dtype=np.float64)
    out = {"dead": int((freq == 0).sum())}
    alive = np.log10(freq[freq > 0])
    edges = (-math.inf, *HIST_EDGES[1:-1], math.inf)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        label = (f"<1e{int(hi)}" if lo == -math.inf else f">=1e{int(lo)}" if hi == math.inf
                 else f"1e{int(lo)}..1e{int(hi)}")
        out[label] = int(((alive >= lo) & (alive < hi)).sum())
    return out


def removal_delta_mse(sae: Sae, acts: ActivationsLike, *, batch_size: int = 4096) -> tuple[np.ndarray, float]:
    """(``dMSE_remove_j`` for every feature ``[F]``, the SAE's own MSE) in one float64 pass over ``acts``.

    Exact for relu and jumprelu SAEs only: in a TopK SAE removing a feature lets another one into the top k, which
    the closed form does not see, so TopK is refused here (:func:`sae_health` reports the share as unknown).
    """
    if sae.cfg.architecture == "topk":
        raise UnsupportedError(f"removal delta-MSE of a TopK SAE (k={sae.cfg.k}) has no closed form: removing a "
                               "feature changes which k features fire")
    groups = np.arange(sae.n_features, dtype=np.int64)
    res = grouped_delta_mse(sae, sae, acts, groups, np.full(sae.n_features, -1, dtype=np.int64),
                            batch_size=batch_size, progress=False)
    return res.dmse, res.mse_base


def initial_decoder_of(sae: Sae) -> torch.Tensor | None:
    """The SAE's initial unit decoder rows, regenerated from ``cfg.extra['init']``; None when not recorded."""
    from featgraph.training.trainer import init_seed, initial_decoder

    extra = sae.cfg.extra if isinstance(sae.cfg.extra, dict) else {}
    init, train = extra.get("init"), extra.get("train")
    if isinstance(init, dict) and isinstance(init.get("init_seed"), int):
        return initial_decoder(sae.n_features, sae.d_in, init["init_seed"])
    # featgraph 0.1's trainer recorded only its settings; it drew the init with the same recipe and seed rule
    if isinstance(train, dict) and isinstance(train.get("seed"), int) and "resample_every" in train:
        return initial_decoder(sae.n_features, sae.d_in, init_seed(train["seed"], sae.n_features))
    return None


def init_cosines(sae: Sae, W_init: torch.Tensor | None = None) -> np.ndarray | None:
    """Cosine of each decoder row to its own initial row ``[F]``; None when the init is unknown."""
    W0 = initial_decoder_of(sae) if W_init is None else torch.as_tensor(W_init)
    if W0 is None:
        return None
    W = sae.W_dec.detach().double()
    W0 = W0.double()
    if W0.shape != W.shape:
        raise ConfigError(f"initial decoder has shape {list(W0.shape)}, the SAE's is {list(W.shape)}")
    cos = (W * W0).sum(1) / (W.norm(dim=1) * W0.norm(dim=1)).clamp_min(1e-12)
    return cos.numpy()


def random_max_cos_threshold(W: torch.Tensor | np.ndarray, *, n_random: int = 4096, seed: int = 0,
                             q: float = RANDOM_QUANTILE) -> float:
    """The ``q`` quantile of the max |cos| that seeded random unit vectors reach against the rows of ``W``."""
    W = torch.as_tensor(np.asarray(W), dtype=torch.float64)
    Wn = W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(n_random, W.shape[1], generator=g, dtype=torch.float64)
    r /= r.norm(dim=1, keepdim=True)
    return float(torch.quantile((r @ Wn.T).max(1).values, q))


def max_cos_to(W_large: torch.Tensor | np.ndarray, W_small: torch.Tensor | np.ndarray) -> np.ndarray:
    """Max decoder cos of each row of ``W_large`` to the rows of ``W_small`` (signed, as featgraph's matching)."""
    A = torch.as_tensor(np.asarray(W_large), dtype=torch.float64)
    B = torch.as_tensor(np.asarray(W_small), dtype=torch.float64)
    A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    B = B / B.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.cat([(a @ B.T).max(1).values for a in A.split(4096)]).numpy()


def random_like_share(large: Sae, small: Sae, *, seed: int = 0) -> dict[str, float]:
    """Share of ``large``'s features whose max cos to ``small`` is below what random unit vectors reach."""
    thr = random_max_cos_threshold(small.W_dec.detach(), seed=seed)
    mc = max_cos_to(large.W_dec.detach(), small.W_dec.detach())
    return {"random_like_share": float((mc < thr).mean()), "random_max_cos_p99": thr,
            "median_max_cos": float(np.median(mc))}


def sae_health(sae: Sae, acts: ActivationsLike, *, batch_size: int = 4096) -> dict[str, Any]:
    """Every single-SAE diagnostic on ``acts`` as one JSON-ready dict (see the module docstring)."""
    freq, n, mse = _frequencies_and_mse(sae, acts, batch_size)
    dmse = None  # TopK: no exact removal delta-MSE (see removal_delta_mse), so unknown rather than guessed
    if sae.cfg.architecture != "topk":
        dmse, mse = removal_delta_mse(sae, acts, batch_size=batch_size)
    cos = init_cosines(sae)
    out: dict[str, Any] = {
        "n_features": sae.n_features,
        "n_tokens": n,
        "mse": mse,
        "dead_share": float((freq == 0).mean()),
        "rare_share": float((freq < RARE).mean()),
        "dense_share": float((freq > DENSE).mean()),
        "frequency_histogram": frequency_histogram(freq),
        "useless_share": None if dmse is None else float((dmse < USELESS_REL * mse).mean()),
        "harmful_share": None if dmse is None else float((dmse < 0).mean()),
        "median_removal_dmse_rel": (None if dmse is None else float(np.median(dmse) / mse) if mse > 0
                                    else float("nan")),
        "moved_share": None if cos is None else float((cos < MOVED_COS).mean()),
        "median_init_cos": None if cos is None else float(np.median(cos)),
        "thresholds": {"rare": RARE, "dense": DENSE, "moved_cos": MOVED_COS, "useless_rel": USELESS_REL,
                       "min_moved_share": MIN_MOVED_SHARE, "max_useless_share": MAX_USELESS_SHARE},
    }
    out["undertrained"] = undertrained_reasons(out)
    return out


def undertrained_reasons(health: dict[str, Any]) -> list[str]:
    """Why an SAE looks under-trained (empty when it does not), each reason naming its threshold."""
    reasons = []
    moved = health.get("moved_share")
    if moved is not None and moved < MIN_MOVED_SHARE:
        reasons.append(f"only {moved:.1%} of decoder rows moved below cos {MOVED_COS} from their init "
                       f"(threshold {MIN_MOVED_SHARE:.0%})")
    useless = health.get("useless_share")
    if useless is not None and useless >= MAX_USELESS_SHARE:
        reasons.append(f"{useless:.1%} of features are useless or harmful (removal changes MSE by < "
                       f"{USELESS_REL:.2%} or lowers it; threshold {MAX_USELESS_SHARE:.0%})")
    return reasons


def write_health(sae: Sae, acts: ActivationsLike, target: Any, *, note: str = "") -> dict[str, Any]:
    """Compute :func:`sae_health` on ``acts`` and write it (plus ``eval_set``, what ``acts`` were) atomically."""
    from featgraph.io.files import write_json

    health = sae_health(sae, acts) | {"eval_set": note or "unspecified activations"}
    write_json(target, health)
    return health
