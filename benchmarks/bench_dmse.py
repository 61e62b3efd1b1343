"""delta-MSE of adding each of 1536 candidate features: one pass (closed form) vs one hybrid at a time.

    python benchmarks/bench_dmse.py [--tokens 16384] [--subset 32] [--threads 2]

Baseline ("one-at-a-time"): for each candidate, build the hybrid SAE with featgraph.stitch.hybrid.add_features and
evaluate it with featgraph.training.evaluate.reconstruction_metrics (float32, as a user would), then subtract the small
SAE's MSE. It is timed on ``--subset`` candidates and extrapolated linearly to all 1536 (each candidate costs
the same: one hybrid build and one full evaluation); the output says so. Ours:
featgraph.stitch.delta_mse.delta_mse_add, all candidates in one pass, accumulated in float64. Both run in this
process on the same synthetic SAEs (small 768, large 1536 features, d = 768, the post's GPT-2 pair sizes) and
the same activations.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from featgraph.sae import Sae, SaeConfig
from featgraph.stitch.delta_mse import delta_mse_add
from featgraph.stitch.hybrid import add_features
from featgraph.synthetic import planted_ladder, random_sae_tensors
from featgraph.training.evaluate import reconstruction_metrics


def build(W: np.ndarray, seed: int) -> Sae:
    t = {k: torch.from_numpy(v) for k, v in random_sae_tensors(W, seed=seed).items()}
    t["b_enc"] = t["b_enc"] - 0.5  # sparser codes, as trained SAEs have
    return Sae.from_tensors(t, SaeConfig(d_in=W.shape[1], n_features=W.shape[0]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--subset", type=int, default=32, help="candidates timed one at a time (then extrapolated)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--d", type=int, default=768)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    decs, _ = planted_ladder([768, 1536], args.d, seed=0)
    small, large = build(decs[0], 1), build(decs[1], 2)
    rng = np.random.default_rng(0)
    unit = decs[1] / np.linalg.norm(decs[1], axis=1, keepdims=True)
    code = rng.exponential(1.0, (args.tokens, 1536)) * (rng.random((args.tokens, 1536)) < 30 / 1536)
    x = torch.from_numpy((code @ unit + 0.05 * rng.standard_normal((args.tokens, args.d))).astype(np.float32))
    n_cand = large.n_features

    t0 = time.perf_counter()
    ours = delta_mse_add(small, large, x, progress=False)
    t_ours = time.perf_counter() - t0

    subset = np.linspace(0, n_cand - 1, args.subset).round().astype(int)
    t0 = time.perf_counter()
    base = reconstruction_metrics(small, x)["mse"]
    ref = np.array([reconstruction_metrics(add_features(small, large, [j]), x)["mse"] - base for j in subset])
    t_sub = time.perf_counter() - t0
    t_base = t_sub / len(subset) * n_cand

    err = np.abs(ours.dmse[subset] - ref)
    print(
        f"delta-MSE of adding each of {n_cand} candidates "
        f"(small {small.n_features} -> large {n_cand} features, "
        f"d = {args.d}, {args.tokens} tokens)"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CPU"
    )
    print(f"{'method':44s} {'seconds':>10s}")
    print(
        f"{'one-at-a-time (build + evaluate each hybrid)':44s} {t_base:10.1f}   "
        f"(timed on {len(subset)} candidates: {t_sub:.2f} s, extrapolated x{n_cand / len(subset):.0f})"
    )
    print(f"{'one pass, closed form (featgraph.delta_mse)':44s} {t_ours:10.2f}")
    print(f"speed-up: {t_base / t_ours:.0f}x")
    print(
        f"agreement on the timed subset: max |diff| = {err.max():.3g} "
        f"(= {err.max() / base:.2g} of the small SAE's MSE {base:.4g}; baseline evaluates in float32), "
        f"median |dMSE| = {np.median(np.abs(ref)):.3g}"
    )


if __name__ == "__main__":
    main()
