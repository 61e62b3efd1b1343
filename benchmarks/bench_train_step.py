"""Time per training step of the ladder's recipe per width, and the projected time of the ladder's run.

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/bench_train_step.py

What is timed: ``featgraph.training.trainer._Trainer.step``, the one step ``train_ladder`` runs for every SAE of a
ladder (ReLU + L1, hand-written gradients, fused Adam, unit-norm decoder rows), on one torch thread, d_in 576,
batch 256, lr 1e-3 and L1 0.8 (examples/train_smollm2_ladder.py). Batch loading, resampling rounds, checkpoints
and the health pass are not in it.

Inputs: synthetic activations with the trainer's input scale (E||x|| = sqrt(d)): each token a sum of ~30 random
unit directions out of 8,192 with exponential magnitudes, plus noise. Step cost depends on how many
(token, feature) pairs are active, so two phases are timed per width:

- early: the first steps from the recipe's initialisation (encoder = decoder transpose, L1 still 0): about half of
  the features fire on every token, as in the real run's L1 warm-up;
- late: L0 set into the tens (the trained ladder's range) by setting ``b_enc`` to the per-feature quantile of the
  pre-activations that leaves ``--l0`` features active per token, then a few untimed steps. Timed at the recipe's
  L1 but a tiny learning rate (``--late-lr``, as at the end of the recipe's linear decay), because on these
  synthetic inputs a full-size step lets L0 drift back into the hundreds within a few hundred steps (measured:
  ~160 after 250 steps at lr 1e-3) while the real run reaches the tens only after thousands of steps; neither
  the learning rate nor the L1 value changes what a step computes, only how many pairs are active. The L0
  measured during the timed steps is printed.

Baseline side by side (late phase, interleaved blocks of 10 steps on the same SAE): the trainer's dense gradient
path (``DENSE_BELOW = -1`` forces it) against its default, which gathers the active pairs when fewer than
``DENSE_BELOW`` (1%) of them are active. Below 1% density only: at L0 ~32 that is widths above 3,200, so the two
columns should be equal up to noise for 576-2304. Both paths' gradients are compared on one batch first.

Projection: ``--steps`` (38,611: 4 epochs of 2.47 M stdlib-corpus tokens at batch 256) x the late median, per width,
and for the whole ladder run (every width + the 1152 seed control train in the same pass, one after another).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import statistics
import time

import torch

import featgraph.training.trainer as trainer
from featgraph.training.trainer import TrainConfig, _Trainer

DEFAULT_DENSE_BELOW = trainer.DENSE_BELOW


def blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(
        f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture', '-')}, "
        f"{lib.get('num_threads')} threads, {os.path.basename(lib.get('filepath', ''))})"
        for lib in threadpool_info()
    )


def synthetic_acts(n: int, d: int, *, n_dirs: int = 8192, active: int = 30, seed: int = 0) -> torch.Tensor:
    """``[n, d]`` sparse-dictionary activations scaled so that E||x|| = sqrt(d) (what the trainer feeds its SAEs)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_dirs, d, generator=g)
    dirs /= dirs.norm(dim=1, keepdim=True)
    idx = torch.randint(0, n_dirs, (n, active), generator=g)
    mag = torch.empty(n, active).exponential_(1.0, generator=g)
    x = torch.einsum("na,nad->nd", mag, dirs[idx]) + 0.05 * torch.randn(n, d, generator=g)
    return x * (math.sqrt(d) / float(x.norm(dim=1).mean()))


def timed_steps(t: _Trainer, batches: list[torch.Tensor], start: int, n: int, l1: float, lr: float) -> tuple:
    """(per-step seconds, mean L0) of ``n`` steps."""
    times, l0 = [], []
    for s in range(start, start + n):
        t0 = time.perf_counter()
        t.step(batches[s % len(batches)], l1, lr)
        times.append(time.perf_counter() - t0)
        l0.append(t.last["l0"])
    return times, l0


def set_sparsity(t: _Trainer, x: torch.Tensor, l0: float) -> None:
    """Start ``b_enc`` at minus the per-feature quantile of the pre-activations that leaves ``l0`` active per token."""
    with torch.no_grad():
        pre = (x - t.sae.b_dec) @ t.sae.W_enc
        q = 1.0 - l0 / t.sae.n_features
        t.sae.b_enc.copy_(-torch.quantile(pre, q, dim=0))


def grads_agree(t: _Trainer, x: torch.Tensor, l1: float) -> float:
    """max |dense - gathered| over the four gradients on one batch, relative to the largest gradient entry; both
    paths forced (``DENSE_BELOW`` 1.0: always gather, -1.0: always dense), whatever the batch's density."""
    got = []
    for below in (1.0, -1.0):
        trainer.DENSE_BELOW = below
        t._relu_grads(x, l1)
        got.append([p.grad.clone() for p in (t.sae.W_enc, t.sae.b_enc, t.sae.W_dec, t.sae.b_dec)])
    trainer.DENSE_BELOW = DEFAULT_DENSE_BELOW
    t.opt.zero_grad(set_to_none=True)
    scale = max(float(g.abs().max()) for g in got[1])
    return max(float((a - b).abs().max()) for a, b in zip(*got, strict=True)) / scale


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="576,1152,2304,4608")
    p.add_argument("--d", type=int, default=576)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--l1", type=float, default=0.8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--l0", type=float, default=32.0, help="target L0 of the late phase")
    p.add_argument("--late-lr", type=float, default=1e-6, help="learning rate of the late phase (holds its L0)")
    p.add_argument("--early-steps", type=int, default=40)
    p.add_argument("--late-steps", type=int, default=120, help="timed steps per path in the late phase")
    p.add_argument("--settle-steps", type=int, default=5, help="untimed steps after setting the sparsity")
    p.add_argument("--steps", type=int, default=38_611, help="steps of the ladder run to project")
    p.add_argument("--control", type=int, default=1152, help="width of the seed control trained in the same pass")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",")]
    batches = list(synthetic_acts(32 * args.batch_size, args.d).split(args.batch_size))
    cfg = TrainConfig(architecture="relu", l1_coefficient=args.l1, lr=args.lr, batch_size=args.batch_size)

    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load average {os.getloadavg()[0]:.2f} at start")
    torch_blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    print(f"# BLAS: torch BLAS_INFO={torch_blas.group(1) if torch_blas else '?'} (MKL available: "
          f"{torch.backends.mkl.is_available()}); threadpoolctl (numpy/scipy): {blas()}")
    print(f"training step of the ladder's recipe (ReLU + L1 {args.l1}, Adam lr {args.lr}, unit decoder rows), "
          f"d_in {args.d}, batch {args.batch_size}, synthetic activations (E||x|| = sqrt(d))")
    print(f"early: first {args.early_steps} steps from init, L1 0; late: L0 set to {args.l0:g}, lr {args.late_lr:g}, "
          f"{args.settle_steps} untimed steps, then {args.late_steps} steps per path in interleaved blocks of 10")
    print()
    head = (f"{'width':>6} {'early ms':>9} {'L0':>6} | {'late ms':>8} {'dense ms':>9} {'dense/late':>10} "
            f"{'L0':>6} {'density':>8} {'grad diff':>9} | {'projected h':>11} {'(dense h)':>9}")
    print(head)
    late_ms = {}
    for w in widths:
        t = _Trainer(w, args.d, cfg, b_dec=batches[0].mean(0), seed=w)
        early, early_l0 = timed_steps(t, batches, 0, args.early_steps, 0.0, args.lr)
        set_sparsity(t, torch.cat(batches[:4]), args.l0)
        timed_steps(t, batches, args.early_steps, args.settle_steps, args.l1, args.late_lr)
        diff = grads_agree(t, batches[0], args.l1)
        ours, dense, l0s = [], [], []
        s = args.early_steps + args.settle_steps
        for block in range(2 * math.ceil(args.late_steps / 10)):
            use_dense = block % 2 == 1
            trainer.DENSE_BELOW = -1.0 if use_dense else DEFAULT_DENSE_BELOW
            times, l0 = timed_steps(t, batches, s, 10, args.l1, args.late_lr)
            (dense if use_dense else ours).extend(times)
            l0s.extend(l0)
            s += 10
        trainer.DENSE_BELOW = DEFAULT_DENSE_BELOW
        e_ms, o_ms, d_ms = (1e3 * statistics.median(v) for v in (early, ours, dense))
        late_ms[w] = (o_ms, d_ms)
        l0 = statistics.mean(l0s)
        print(f"{w:6d} {e_ms:9.1f} {statistics.mean(early_l0):6.0f} | {o_ms:8.1f} {d_ms:9.1f} {d_ms / o_ms:10.2f} "
              f"{l0:6.1f} {l0 / w:8.2%} {diff:9.1e} | {args.steps * o_ms / 3.6e6:11.2f} "
              f"{args.steps * d_ms / 3.6e6:9.2f}", flush=True)
    run = [*widths, *([args.control] if args.control in late_ms else [])]
    total, total_dense = (sum(late_ms[w][i] for w in run) for i in (0, 1))
    print()
    print(f"ladder run ({'+'.join(map(str, run))}, one after another in each step): {total:.1f} ms/step late "
          f"-> {args.steps} steps = {args.steps * total / 3.6e6:.2f} h (dense path: {total_dense:.1f} ms/step, "
          f"{args.steps * total_dense / 3.6e6:.2f} h); early steps cost more, batch loading and resampling "
          f"are not counted")
    print(f"# load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
