"""SAE training: the post's ReLU + L1 SAE and a TopK SAE, one width or a whole ladder in one pass.

Recipe (ReLU):
  loss = E_x[ sum_d (x - x_hat)^2 ] + lambda * E_x[ sum_i f_i(x) ]
with **unit-norm decoder rows**: after every Adam step each row of ``W_dec`` is renormalised, and the gradient
component parallel to each row is removed before the step. With unit rows the plain L1 equals the decoder-norm
weighted L1, so the penalty cannot be dodged by shrinking ``f`` and growing ``W_dec``. TopK: loss is the MSE
alone.

Inputs are scaled by one constant ``c`` (estimated from the first batches) so that E||c x|| = sqrt(d): the L1
coefficient then means the same on any model and layer. The scale is folded into the saved weights
(``b_enc / c``, ``b_dec / c``; ``W_enc``, ``W_dec`` unchanged), so the saved SAE reads raw activations, keeps
unit decoder rows, and its feature activations are the trained ones divided by ``c``.

Dead features: a feature that has not fired for ``dead_window`` tokens is **resampled** (Anthropic, 2023): its
decoder row becomes the normalised residual of a poorly reconstructed input of the current batch, its encoder
column that direction times 0.2 x the mean alive encoder norm, its bias 0, and its Adam moments are reset.
Resampling runs every ``resample_every`` steps during the first ``resample_until`` fraction of training.

Initialisation: decoder rows are seeded random unit vectors, the encoder is the decoder's transpose (every feature
starts as a matched detector of its own direction, so it fires and gets gradient from the first step), and
``b_dec`` is the geometric median of the first batches (robust to the few huge-norm tokens that pull the mean).
The initial decoder is recorded as a recipe (``cfg.extra['init']``: generator and seed), so
:func:`initial_decoder` regenerates it exactly and the health diagnostics can tell moved rows from untouched ones.

Schedules: the learning rate warms up linearly over the first ``lr_warmup_fraction`` of steps (Adam's first steps
are otherwise full-size on unit rows) and decays linearly to 0 over the last ``lr_decay_fraction``; the L1
coefficient ramps linearly from 0 over the first ``l1_warmup_fraction``, so features settle on directions before
sparsity prunes them. Why small batches: on a store of half a million tokens the budget is steps, not tokens
(batch 256 for many epochs moves nearly every decoder row where batch 1024 for 1.5 epochs left most wide-SAE rows
at their random start).

Resumable: with ``checkpoint_dir`` the whole training state (weights, Adam moments, dead-feature counters,
resampling generators, step) is saved atomically every ``checkpoint_every`` steps, and a restarted run with the same
store, widths and config continues from the last checkpoint and ends with the same weights as an unbroken run.
Everything is seeded: the same store, config and seed give the same weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import torch

from featgraph.activations.store import ActivationStore
from featgraph.errors import ConfigError
from featgraph.sae import Sae, SaeConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """Settings shared by every SAE of a ladder (they end up in each checkpoint's ``cfg.extra['train']``)."""

    architecture: str = "relu"  #: relu (L1 penalty) or topk (no penalty)
    k: int | None = None  #: active features per token for topk
    l1_coefficient: float = 5.0
    lr: float = 4e-4
    batch_size: int = 256
    epochs: float = 1.0  #: passes over the store (fractions allowed)
    n_tokens: int | None = None  #: training tokens; overrides epochs when set
    seed: int = 0
    l1_warmup_fraction: float = 0.05
    lr_warmup_fraction: float = 0.01
    lr_decay_fraction: float = 0.2
    b_dec_init: str = "geometric_median"  #: geometric_median or mean of the first batches
    checkpoint_every: int = 1000  #: steps between checkpoints when train_ladder gets a checkpoint_dir
    dead_window: int = 100_000  #: tokens without firing before a feature counts as dead
    resample_every: int = 500  #: steps between resampling rounds (0 = never)
    resample_until: float = 0.5  #: no resampling after this fraction of the steps
    buffer_tokens: int = 2**18
    scale_batches: int = 16  #: batches used to estimate the input scale and the b_dec initialisation

    def __post_init__(self) -> None:
        if self.architecture not in ("relu", "topk"):
            raise ConfigError(f"architecture must be 'relu' or 'topk', got {self.architecture!r}")
        if self.architecture == "topk" and (self.k is None or self.k < 1):
            raise ConfigError(f"a topk SAE needs k >= 1, got k={self.k!r}")
        if self.b_dec_init not in ("geometric_median", "mean"):
            raise ConfigError(f"b_dec_init must be 'geometric_median' or 'mean', got {self.b_dec_init!r}")
        if self.lr <= 0 or self.batch_size < 1 or self.l1_coefficient < 0:
            raise ConfigError(
                f"need lr > 0, batch_size >= 1, l1 >= 0; got {self.lr}, {self.batch_size}, "
                f"{self.l1_coefficient}"
            )


#: the hand-written ReLU gradients gather active entries when fewer than this share of them are nonzero (measured:
#: gathering is memory-bound, so it only beats the dense products below about 1% density)
DENSE_BELOW = 0.01
INIT_RECIPE = "W_dec = torch.randn(width, d_in, generator=torch.Generator().manual_seed(init_seed)), rows / norm"


def init_seed(seed: int, width: int) -> int:
    """The generator seed of the initial decoder of a ``width``-wide SAE trained with ``seed``."""
    return seed * 1_000_003 + width


def initial_decoder(width: int, d_in: int, seed: int) -> torch.Tensor:
    """The initial unit decoder rows ``[width, d_in]`` for generator seed ``seed`` (see :data:`INIT_RECIPE`)."""
    g = torch.Generator().manual_seed(int(seed))
    W_dec = torch.randn(width, d_in, generator=g)
    return W_dec / W_dec.norm(dim=1, keepdim=True)


def geometric_median(x: torch.Tensor, n_iter: int = 50, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's iteration for the point minimising the summed Euclidean distance to the rows of ``x``."""
    x = x.double()
    m = x.mean(0)
    for _ in range(n_iter):
        w = 1.0 / (x - m).norm(dim=1).clamp_min(eps)
        new = (w[:, None] * x).sum(0) / w.sum()
        if float((new - m).norm()) <= eps * float(m.norm().clamp_min(1.0)):
            m = new
            break
        m = new
    return m.float()


class _Trainer:
    """One SAE being trained on scaled inputs: parameters, optimiser, dead-feature counters."""

    def __init__(self, width: int, d_in: int, cfg: TrainConfig, b_dec: torch.Tensor, seed: int):
        self.cfg = cfg
        self.init_seed = int(seed)
        W_dec = initial_decoder(width, d_in, seed)
        # its own resampling generator: an SAE's result does not depend on which others train beside it
        self.gen = torch.Generator().manual_seed(int(seed) + 7)
        self.sae = Sae(SaeConfig(d_in=d_in, n_features=width, architecture=cfg.architecture, k=cfg.k))
        with torch.no_grad():
            self.sae.W_dec.copy_(W_dec)
            self.sae.W_enc.copy_(W_dec.T)  # tied init: every feature starts as a matched detector
            self.sae.b_dec.copy_(b_dec)
        # fused: one kernel for all parameters, ~8x faster than the default on a CPU (Adam dominated the step)
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999), fused=True)
        self.since_fired = torch.zeros(width, dtype=torch.long)
        self.n_resampled = 0
        self.seconds = 0.0  #: wall time spent in this SAE's steps (this process only; logged, never saved)
        self.last: dict[str, float] = {}

    def step(self, x: torch.Tensor, l1: float, lr: float) -> torch.Tensor:
        t0 = time.perf_counter()
        sae = self.sae
        for group in self.opt.param_groups:
            group["lr"] = lr
        if self.cfg.architecture == "relu":
            err, fired, stats = self._relu_grads(x, l1)
        else:
            f = sae.encode(x)
            err = (sae.decode(f) - x).pow(2).sum(-1)
            mse = err.mean()
            self.opt.zero_grad(set_to_none=True)
            mse.backward()
            fired = (f > 0).any(0)
            stats = {"loss": mse.item(), "mse": mse.item(), "l0": (f > 0).float().sum(-1).mean().item()}
        with torch.no_grad():
            W, G = sae.W_dec, sae.W_dec.grad
            G -= (G * W).sum(1, keepdim=True) * W  # keep the step tangent to the unit sphere
            self.opt.step()
            W /= W.norm(dim=1, keepdim=True).clamp_min(1e-8)
            self.since_fired += len(x)
            self.since_fired[fired] = 0
        self.last = stats
        self.seconds += time.perf_counter() - t0
        return err.detach()

    @torch.no_grad()
    def _relu_grads(self, x: torch.Tensor, l1: float) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Exact gradients of ``mean ||x_hat - x||^2 + l1 * mean sum f`` written into ``.grad`` by hand.

        Why by hand: once L0 is in the tens, ``f`` has a few nonzeros per row, and every gradient except the
        encoder's forward product only involves the active (token, feature) pairs. Gathering those replaces two
        of the three dense ``[B, d] x [d, F]`` products of autograd (3x fewer FLOPs on a CPU). While more than
        :data:`DENSE_BELOW` of the entries are active (the first steps), the same formulas run dense.
        """
        sae = self.sae
        W_enc, b_enc, W_dec, b_dec = sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec
        B = x.shape[0]
        xin = x - b_dec if sae.cfg.apply_b_dec_to_input else x
        pre = torch.addmm(b_enc, xin, W_enc)
        active = pre > 0
        nnz = int(active.sum())
        if nnz > DENSE_BELOW * pre.numel():
            f = pre.clamp_min_(0.0)
            x_hat = torch.addmm(b_dec, f, W_dec)
            e = (x_hat - x) * (2.0 / B)
            g_dec = f.T @ e
            dpre = torch.addmm(torch.full((), l1 / B), e, W_dec.T).mul_(active)
            g_enc = xin.T @ dpre
            g_benc = dpre.sum(0)
            fsum = float(f.sum())
        else:
            rows, cols = active.nonzero(as_tuple=True)
            vals = pre[rows, cols]
            x_hat = b_dec.expand(B, -1).clone().index_add_(0, rows, vals[:, None] * W_dec[cols])
            e = (x_hat - x) * (2.0 / B)
            e_rows = e[rows]
            g_dec = torch.zeros_like(W_dec).index_add_(0, cols, vals[:, None] * e_rows)
            dvals = (e_rows * W_dec[cols]).sum(1) + l1 / B
            g_enc = torch.zeros_like(W_dec).index_add_(0, cols, dvals[:, None] * xin[rows]).T
            g_benc = torch.zeros_like(b_enc).index_add_(0, cols, dvals)
            fsum = float(vals.sum())
        g_bdec = e.sum(0)
        if sae.cfg.apply_b_dec_to_input:
            g_bdec -= W_enc @ g_benc  # b_dec is subtracted from the encoder's input too
        for p, g in ((W_enc, g_enc), (b_enc, g_benc), (W_dec, g_dec), (b_dec, g_bdec)):
            p.grad = g.contiguous()
        err = ((x_hat - x) ** 2).sum(-1)
        mse = float(err.mean())
        stats = {"loss": mse + l1 * fsum / B, "mse": mse, "l0": nnz / B}
        return err, active.any(0), stats

    def state(self) -> dict[str, Any]:
        return {"sae": {k: v.detach().clone() for k, v in self.sae.state_dict().items()},
                "opt": self.opt.state_dict(), "since_fired": self.since_fired.clone(),
                "n_resampled": self.n_resampled, "gen": self.gen.get_state()}

    def load_state(self, st: dict[str, Any]) -> None:
        self.sae.load_state_dict(st["sae"])
        self.opt.load_state_dict(st["opt"])
        self.since_fired = st["since_fired"].clone()
        self.n_resampled = int(st["n_resampled"])
        self.gen.set_state(st["gen"])

    @torch.no_grad()
    def resample(self, x: torch.Tensor, err: torch.Tensor, gen: torch.Generator) -> int:
        dead = (self.since_fired >= self.cfg.dead_window).nonzero().flatten()
        if len(dead) == 0:
            return 0
        sae = self.sae
        picks = torch.multinomial(err + 1e-12, len(dead), replacement=True, generator=gen)
        resid = x[picks] - sae(x[picks]).x_hat
        direction = resid / resid.norm(dim=1, keepdim=True).clamp_min(1e-8)
        alive = torch.ones(sae.n_features, dtype=torch.bool)
        alive[dead] = False
        enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
        sae.W_dec[dead] = direction
        sae.W_enc[:, dead] = direction.T * 0.2 * enc_norm
        sae.b_enc[dead] = 0.0
        for p, idx in ((sae.W_dec, (dead,)), (sae.W_enc, (slice(None), dead)), (sae.b_enc, (dead,))):
            state = self.opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][idx] = 0.0
        self.since_fired[dead] = 0
        self.n_resampled += len(dead)
        return len(dead)


def _scaled_batches(store: ActivationStore, cfg: TrainConfig, n_tokens: int) -> Iterator[torch.Tensor]:
    """Seeded shuffled batches, cycling over the store for as many epochs as ``n_tokens`` needs."""
    done, epoch = 0, 0
    while done < n_tokens:
        for batch in store.iter_batches(
            cfg.batch_size,
            shuffle=True,
            seed=cfg.seed + epoch,
            buffer_tokens=cfg.buffer_tokens,
            drop_last=True,
        ):
            yield batch
            done += len(batch)
            if done >= n_tokens:
                return
        epoch += 1


def input_statistics(store: ActivationStore, cfg: TrainConfig) -> tuple[float, torch.Tensor]:
    """(scale c with E||c x|| = sqrt(d), b_dec init of c x) from the first ``scale_batches`` shuffled batches.

    The b_dec init is the geometric median (``cfg.b_dec_init``, the default) or the mean of the scaled batches.
    """
    xs = []
    for i, b in enumerate(store.iter_batches(cfg.batch_size, shuffle=True, seed=cfg.seed + 10_000)):
        xs.append(b)
        if i + 1 >= cfg.scale_batches:
            break
    x = torch.cat(xs)
    scale = math.sqrt(store.d_in) / float(x.norm(dim=1).mean())
    xs = x * scale
    return scale, (geometric_median(xs) if cfg.b_dec_init == "geometric_median" else xs.mean(0))
