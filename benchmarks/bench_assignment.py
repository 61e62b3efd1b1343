"""Exact one-to-one assignment: featgraph's certified sparse solve beside scipy's dense linear_sum_assignment.

The pair is SAE-like (two seeds of one SAE): B holds a permuted, noised copy of a share of A's features (cos to
their A feature uniform in [0.5, 0.99]) and fresh random directions for the rest; A is random unit rows. Both have
the same width (the seed-comparison case) unless --n-b says otherwise.

For each size it prints the dense baseline (the float64 cos matrix, then ``linear_sum_assignment(maximize=True)``:
both the solve alone and matrix + solve), featgraph's :func:`featgraph.compare.assignment.assign`, the medians of
``--repeats`` runs, the ratio, the answer check (the same optimal total to 1e-9, the certified gap bound) and the
BLAS that ran (threadpoolctl, when installed).

    python benchmarks/bench_assignment.py --quick          # 4096 features, seconds
    python benchmarks/bench_assignment.py                  # 16384 x 16384 at d=768 (the dense solve takes minutes)
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

from featgraph.compare.assignment import assign
from featgraph.matching import resolve_method_device


def sae_like_pair(n_a: int, n_b: int, d: int, shared: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 unit rows: A random; ``shared * min(n_a, n_b)`` rows of B are noised copies of A's, permuted."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n_a, d))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    n_sh = int(shared * min(n_a, n_b))
    B = rng.standard_normal((n_b, d))
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    src = rng.permutation(n_a)[:n_sh]
    c = rng.uniform(0.5, 0.99, n_sh)[:, None]
    noise = B[:n_sh] - np.sum(B[:n_sh] * A[src], axis=1, keepdims=True) * A[src]  # orthogonal to the source
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    B[:n_sh] = c * A[src] + np.sqrt(1 - c * c) * noise
    B = B[rng.permutation(n_b)]
    return A.astype(np.float32), B.astype(np.float32)


def dense(A: np.ndarray, B: np.ndarray) -> tuple[float, float, float, float]:
    """(seconds for the float64 cos matrix, seconds for the solve, CPU seconds of the solve, optimal total)."""
    from scipy.optimize import linear_sum_assignment

    t0 = time.perf_counter()
    S = A.astype(np.float64) @ B.astype(np.float64).T
    t1 = time.perf_counter()
    c0 = time.process_time()
    r, c = linear_sum_assignment(S, maximize=True)
    c1 = time.process_time()
    t2 = time.perf_counter()
    total = float(S[r, c].sum())
    del S
    return t1 - t0, t2 - t1, c1 - c0, total


def gemm_floor(A: np.ndarray, B: np.ndarray, method: str) -> tuple[float, float]:
    """(wall, CPU) seconds of the candidate pass's GEMM alone over the whole matrix: blocks into one reused
    buffer, nothing read back: the floor of any exact method that looks at every pair once."""
    from featgraph.compare.solver import _Solver

    s = _Solver(A, B, 1, 1, method, "cpu", 1 << 28, 1e-9)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in s._blocks(None, fp32=False, padded=True):
        pass
    return time.perf_counter() - t0, time.process_time() - c0


def kernel_rates(n: int, d: int, rows: int = 2048) -> None:
    """The GEMM kernels a candidate pass could use, on one [rows, d] x [d, n] block: best of 5, wall and CPU
    seconds, and the full n x n pass they imply (int8: ``torch._int_mm``, int32 output, oneDNN's VNNI path)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(rows, d, generator=g), torch.randn(n, d, generator=g)
    ab, bb = a.bfloat16(), b.bfloat16()
    ai = torch.randint(-127, 127, (rows, d), dtype=torch.int8, generator=g)
    bi = torch.randint(-127, 127, (n, d), dtype=torch.int8, generator=g)
    o32, o16 = torch.empty(rows, n), torch.empty(rows, n, dtype=torch.bfloat16)
    flops = 2.0 * rows * n * d
    print(f"GEMM kernels on one [{rows}, {d}] x [{d}, {n}] block (best of 5; 'full pass' = x {n / rows:.0f}):")
    for name, f in (
        ("fp32 (numpy / OpenBLAS)", lambda: np.matmul(a.numpy(), b.numpy().T, out=o32.numpy())),
        ("fp32 (torch)", lambda: torch.mm(a, b.T, out=o32)),
        ("bf16 -> bf16 (torch / oneDNN, the candidate pass)", lambda: torch.mm(ab, bb.T, out=o16)),
        ("int8 -> int32 (torch._int_mm)", lambda: torch._int_mm(ai, bi.T)),
    ):
        best = None
        for _ in range(5):
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            w, c = time.perf_counter() - t0, time.process_time() - c0
            best = (w, c) if best is None or w < best[0] else best
        w, c = best
        print(f"  {name:<50} {flops / w / 1e9:>5.0f} GFLOP/s wall, {flops / c / 1e9:>4.0f} per CPU s; full pass "
              f"{w * n / rows:.2f} s wall, {c * n / rows:.2f} CPU s")


def real_pair(path_a: str, path_b: str) -> None:
    """Two SAE folders (featgraph format): our assignment of their unit decoder rows beside scipy's dense solve."""
    from featgraph.compare.assignment import assign_dense
    from featgraph.matching import normalize_rows
    from featgraph.sae import Sae

    a, b = (normalize_rows(Sae.load(p).W_dec.detach().float().numpy())[0] for p in (path_a, path_b))
    assign(a[:64], b[:64])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    res = assign(a, b)
    t1, c1 = time.perf_counter(), time.process_time()
    ref = assign_dense(a, b)
    t2, c2 = time.perf_counter(), time.process_time()
    print(f"{path_a} {list(a.shape)} vs {path_b} {list(b.shape)}: ours {t1 - t0:.2f} s ({c1 - c0:.2f} CPU s), scipy "
          f"float64 matrix + solve {t2 - t1:.2f} s ({c2 - c1:.2f} CPU s); totals {res.total:.9f} vs {ref.total:.9f} "
          f"(difference {res.total - ref.total:.1e}), {res.rounds} sparse solve(s), PW-MCC {res.pw_mcc:.4f}, shared "
          f"share at 0.7 {res.shared_share(0.7):.4f}")


def blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = []
    for lib in threadpool_info():
        parts.append(
            f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture', '-')}, "
            f"{lib.get('num_threads')} threads, {os.path.basename(lib.get('filepath', ''))})"
        )
    return "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16384, help="features of A (and of B unless --n-b)")
    ap.add_argument("--n-b", type=int, default=None)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--shared", type=float, default=0.7)
    ap.add_argument("--k", type=int, default=32, help="sparse-graph edges per row and column (assign's default)")
    ap.add_argument("--k-check", type=int, default=64, help="check-list length (assign's default)")
    ap.add_argument("--method", default="auto", help="candidate GEMM: auto, fp32 or bf16")
    ap.add_argument("--repeats", type=int, default=3, help="runs of featgraph's solve (the dense one runs once)")
    ap.add_argument("--dense-repeats", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="4096 features")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kernels", action="store_true", help="also time the GEMM kernels a candidate pass could use")
    ap.add_argument("--real", nargs=2, action="append", metavar=("SAE_A", "SAE_B"),
                    help="time two real SAE folders instead of the synthetic pair (repeatable)")
    args = ap.parse_args()
    n_a = 4096 if args.quick else args.n
    n_b = args.n_b or n_a
    A, B = sae_like_pair(n_a, n_b, args.d, args.shared, args.seed)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}, load average {os.getloadavg()[0]:.2f}")
    print(f"# BLAS: {blas()}")
    if args.kernels:
        kernel_rates(n_b, args.d)
    if args.real:
        for path_a, path_b in args.real:
            real_pair(path_a, path_b)
        return
    print(f"exact assignment of A [{n_a}, {args.d}] to B [{n_b}, {args.d}]: {args.shared:.0%} of the smaller side "
          f"shared (noised permuted copies, cos 0.5-0.99), the rest random unit rows; k = {args.k}, "
          f"k_check = {args.k_check}, candidate GEMM {args.method} (resolved: "
          f"{resolve_method_device(args.method, 'cpu')[0] if args.method == 'auto' else args.method})")
    # warm-up: imports (torch, scipy.sparse) and first-call costs stay out of the timed runs
    w_a, w_b = sae_like_pair(300, 300, 32, args.shared, 1)
    assign(w_a, w_b, method=args.method)
    ours, ours_cpu, res = [], [], None
    gemm_t, solve_t, solve_cpu, totals = [], [], [], []
    # interleaved (ours, dense, ours, ...) so that a change of the machine's load hits both sides
    for rep in range(max(args.repeats, args.dense_repeats)):
        if rep < args.repeats:
            t0, c0 = time.perf_counter(), time.process_time()
            res = assign(A, B, k=args.k, k_check=args.k_check, method=args.method)
            ours.append(time.perf_counter() - t0)
            ours_cpu.append(time.process_time() - c0)
        if rep < args.dense_repeats:
            g, s, sc, tot = dense(A, B)
            gemm_t.append(g)
            solve_t.append(s)
            solve_cpu.append(sc)
            totals.append(tot)
    method = resolve_method_device(args.method, "cpu")[0] if args.method == "auto" else args.method
    floor_w, floor_c = gemm_floor(A, B, method)
    med = statistics.median
    base_solve, base_all, ours_m = med(solve_t), med(solve_t) + med(gemm_t), med(ours)
    print(f"{'method':<66}{'median s':>9}{'CPU s':>8}   runs (wall s)")
    print(f"{'scipy linear_sum_assignment (dense, solve only)':<66}{base_solve:>9.2f}{med(solve_cpu):>8.2f}   "
          + ", ".join(f"{t:.2f}" for t in solve_t))
    print(f"{'scipy dense: float64 cos matrix + solve':<66}{base_all:>9.2f}")
    print(f"{'featgraph.compare.assignment.assign (candidates + LAPJVsp + cert.)':<66}{ours_m:>9.2f}"
          f"{med(ours_cpu):>8.2f}   " + ", ".join(f"{t:.2f}" for t in ours))
    flops = 2.0 * n_a * n_b * args.d
    print(f"{'  its floor: the ' + method + ' GEMM pass alone (every pair once)':<66}{floor_w:>9.2f}{floor_c:>8.2f}"
          f"   {flops / floor_w / 1e9:.0f} GFLOP/s")
    print(f"speed-up: {base_solve / ours_m:.1f}x against the dense solve alone, "
          f"{base_all / ours_m:.1f}x against matrix + solve (wall); {med(solve_cpu) / med(ours_cpu):.1f}x in CPU "
          f"seconds against the solve alone; the GEMM floor allows at most {base_solve / floor_w:.1f}x here")
    diff = res.total - totals[0]
    print(f"answer: total {res.total:.9f} (ours) vs {totals[0]:.9f} (scipy), difference {diff:.2e}; certified gap "
          f"bound {res.gap_bound:.2e}; {res.rounds} sparse solve(s), {res.n_candidates} candidate edges "
          f"({res.n_added} added by the certificate); PW-MCC {res.pw_mcc:.4f}, shared share at 0.7 "
          f"{res.shared_share(0.7):.4f}")
    if abs(diff) > 1e-9 * max(1.0, abs(totals[0])):
        raise SystemExit("ANSWER MISMATCH: the totals differ")
    print("answer check: same optimal total (|difference| <= 1e-9 relative)")


if __name__ == "__main__":
    main()
