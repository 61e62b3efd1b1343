"""Activation similarity of every pair of features: featgraph's sparse pass beside the dense product, in one run.

Two SAE-like TopK SAEs of 4608 features at d=768 (B's decoder planted from A's: copies, splits and novel
features, ``featgraph.synthetic.planted_ladder``; encoders are the decoders' scaled transposes plus noise), and
synthetic model activations: each token a sum of 24 random A decoder directions with random positive weights plus
noise, so that related features co-fire. Each batch is encoded once by both SAEs (timed on its own line: both
methods need it); then on the same dense activations:

* sparse (featgraph.compare.act_similarity.ActSimAccumulator): CSR of the active entries, per-feature sums,
  ``f_A^T f_B``
  and the co-occurrence counts as sparse-sparse products, merged in float64;
* dense (the product it replaces): ``f_A^T f_B`` and ``(f_A>0)^T (f_B>0)`` as float32 GEMMs (the fastest dense
  route here; counts are exact integers in float32 up to 2^24 tokens), accumulated over batches in float64, plus
  the same per-feature sums.

It prints both totals and the median per-batch ratio, which BLAS ran, and checks the answers: ours against the
dense float32 route on every pair (float32 GEMM rounding), and against a float64 dense computation on the first
``--check-batches`` batches (float64 summation rounding only).

    python benchmarks/bench_act_similarity.py --quick     # 20,000 tokens
    python benchmarks/bench_act_similarity.py             # 100,000 tokens, two 4608-feature SAEs
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import numpy as np
import torch

from featgraph.compare.act_similarity import ActSimAccumulator
from featgraph.sae import Sae, SaeConfig
from featgraph.synthetic import planted_ladder, random_sae_tensors


def make_saes(F: int, d: int, k: int, seed: int) -> tuple[Sae, Sae, np.ndarray]:
    (dec_a, dec_b), _ = planted_ladder([F, F], d, seed=seed)
    saes = []
    for i, W in enumerate((dec_a, dec_b)):
        t = {n: torch.from_numpy(v) for n, v in random_sae_tensors(W, seed=seed + i).items()}
        saes.append(Sae.from_tensors(t, SaeConfig(d_in=d, n_features=F, architecture="topk", k=k)))
    return saes[0], saes[1], dec_a


class Dense:
    """The dense route: the same statistics from dense products (float32 GEMMs, float64 accumulation)."""

    def __init__(self, F_a: int, F_b: int, dtype: torch.dtype):
        self.dtype = dtype
        self.P = torch.zeros(F_a, F_b, dtype=torch.float64)
        self.C = torch.zeros(F_a, F_b, dtype=torch.float64)
        self.stats = [torch.zeros(F_a, dtype=torch.float64) for _ in range(3)] + [
            torch.zeros(F_b, dtype=torch.float64) for _ in range(3)
        ]

    def update(self, fa: torch.Tensor, fb: torch.Tensor) -> None:
        a, b = fa.to(self.dtype), fb.to(self.dtype)
        self.P += (a.T @ b).double()
        ba, bb = (fa != 0).to(self.dtype), (fb != 0).to(self.dtype)
        self.C += (ba.T @ bb).double()
        for X, Xb, (c, s, q) in ((fa, ba, self.stats[:3]), (fb, bb, self.stats[3:])):
            c += Xb.sum(0).double()
            s += X.double().sum(0)
            q += X.double().square().sum(0)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=4608)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--k", type=int, default=32, help="TopK k of both SAEs (their L0)")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--check-batches", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20,000 tokens")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_tokens = 20_000 if args.quick else args.tokens
    torch.manual_seed(args.seed)
    sae_a, sae_b, dec_a = make_saes(args.features, args.d, args.k, args.seed)
    dirs = torch.from_numpy(dec_a / np.linalg.norm(dec_a, axis=1, keepdims=True))
    rng = torch.Generator().manual_seed(args.seed)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}, load average {os.getloadavg()[0]:.2f}")
    print(f"# BLAS: {blas()}")
    print(f"activation similarity of two TopK SAEs ({args.features} features, k={args.k}, d={args.d}) over "
          f"{n_tokens} synthetic tokens in batches of {args.batch}")
    ours = ActSimAccumulator(args.features, args.features)
    dense = Dense(args.features, args.features, torch.float32)
    ours64 = ActSimAccumulator(args.features, args.features)
    dense64 = Dense(args.features, args.features, torch.float64)
    t_enc, t_ours, t_dense = [], [], []
    l0 = []
    with torch.inference_mode():
        for bi, s in enumerate(range(0, n_tokens, args.batch)):
            n = min(args.batch, n_tokens - s)
            pick = torch.randint(0, args.features, (n, 24), generator=rng)
            w = torch.rand(n, 24, generator=rng) * 3
            x = (w[:, :, None] * dirs[pick]).sum(1) + 0.1 * torch.randn(n, args.d, generator=rng)
            t0 = time.perf_counter()
            fa, fb = sae_a.encode(x), sae_b.encode(x)
            t1 = time.perf_counter()
            ours.update(fa, fb)
            t2 = time.perf_counter()
            dense.update(fa, fb)
            t3 = time.perf_counter()
            t_enc.append(t1 - t0)
            t_ours.append(t2 - t1)
            t_dense.append(t3 - t2)
            l0.append(float((fa != 0).sum(1).float().mean()))
            if bi < args.check_batches:
                ours64.update(fa, fb)
                dense64.update(fa, fb)
    t0 = time.perf_counter()
    res = ours.result()
    t_final = time.perf_counter() - t0
    ratios = [d / o for d, o in zip(t_dense, t_ours, strict=True)]
    total_ours = sum(t_ours) + t_final
    print(f"mean L0 {statistics.mean(l0):.1f} per SAE; {res.n_pairs} co-active pairs "
          f"({res.n_pairs / args.features**2:.2%} of {args.features}^2)")
    print(f"{'step':<62}{'total s':>9}{'median/batch s':>16}")
    print(f"{'encode both SAEs (shared by both methods, not in the ratio)':<62}{sum(t_enc):>9.2f}"
          f"{statistics.median(t_enc):>16.3f}")
    print(f"{'dense: f_A^T f_B + counts (fp32 GEMMs) + sums':<62}{sum(t_dense):>9.2f}"
          f"{statistics.median(t_dense):>16.3f}")
    print(f"{'sparse (featgraph): CSR + sparse products + merge':<62}{total_ours:>9.2f}"
          f"{statistics.median(t_ours):>16.3f}   (final merge {t_final:.2f} s)")
    print(f"speed-up: {sum(t_dense) / total_ours:.1f}x in total, median per batch {statistics.median(ratios):.1f}x")
    # answers
    P = res.co_sum.toarray()
    C = res.co_count.toarray()
    dP = dense.P.numpy()
    dC = dense.C.numpy()
    scale = float(np.abs(dP).max())
    print(f"answer vs dense fp32 route, every pair: counts identical: {np.array_equal(C, dC.astype(np.int64))}; "
          f"max |P - P_dense| = {np.abs(P - dP).max():.2e} (max |P| {scale:.3g}, fp32 GEMM rounding)")
    r64 = ours64.result()
    P64, d64 = r64.co_sum.toarray(), dense64.P.numpy()
    stats_ok = all(
        np.allclose(a, b.numpy(), rtol=1e-12, atol=0)
        for a, b in zip((r64.count_a, r64.sum_a, r64.sumsq_a, r64.count_b, r64.sum_b, r64.sumsq_b), dense64.stats,
                        strict=True)
    )
    rel = np.abs(P64 - d64).max() / max(1e-300, float(np.abs(d64).max()))
    same_counts = np.array_equal(r64.co_count.toarray(), dense64.C.numpy().astype(np.int64))
    print(f"answer vs dense float64 on the first {min(args.check_batches, len(t_ours))} batches: counts identical: "
          f"{same_counts}; max |P - P64| / max |P64| = {rel:.1e}; per-feature sums equal to 1e-12: {stats_ok}")
    if not (same_counts and stats_ok and rel < 1e-12 and np.array_equal(C, dC.astype(np.int64))):
        raise SystemExit("ANSWER MISMATCH")
    print("answer check: identical counts, sums equal to float64 summation rounding")


if __name__ == "__main__":
    main()
