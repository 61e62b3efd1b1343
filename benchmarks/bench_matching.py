"""Cross-width matching: featgraph's exact paths beside the fp32 GEMM floor and faiss-cpu, in one run.

For each size it prints the fp32 GEMM floor (the plain block matmuls of that pair and nothing else, measured
here before and after the methods, the lower time counting, with the faster of numpy's and torch's BLAS),
featgraph's fp32 path (blocked, exact) and bf16 path (bf16 candidates + float64 re-check, exact), faiss-cpu
``IndexFlatIP`` search(k=1) + range_search, the ratios, and the peak resident memory each method added. Before
printing any time it checks that every method found the same edge set (and the exact paths the same argmax
and max cos).

    python benchmarks/bench_matching.py --quick     # about a minute
    python benchmarks/bench_matching.py             # 49152 x 98304 at d=768, the 8-width ladder to 98304
    python benchmarks/bench_matching.py --interleaved-rows 24576   # 6 blocks of that pair, alternating
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import threading
import time

import numpy as np
import torch

from featgraph.errors import FeatgraphError
from featgraph.matching import PairMatch, match_ladder, match_pair, normalize_rows
from featgraph.synthetic import planted_ladder

TAU = 0.7
BLOCK_BYTES = 1 << 30


class PeakRss:
    """Peak resident memory added while the block runs (sampled every 5 ms from /proc/self/statm)."""

    def __enter__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def added_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def timed(fn):
    with PeakRss() as mem:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    return out, dt, mem.added_mb


def gemm_floor(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, str]:
    """Seconds for the plain fp32 block GEMMs of these pairs (same block rows as featgraph's fp32 path, one
    reused output buffer, nothing else), with whichever of numpy / torch is faster on this machine."""
    probe_small, probe_large = max(pairs, key=lambda p: p[0].shape[0] * p[1].shape[0])
    rates = {}
    for name in ("numpy", "torch"):
        rows = min(probe_large.shape[0], 2048)
        out = np.empty((rows, probe_small.shape[0]), np.float32)
        _plain_gemm(name, probe_large[:rows], probe_small, out)
        t0 = time.perf_counter()
        for _ in range(2):
            _plain_gemm(name, probe_large[:rows], probe_small, out)
        rates[name] = (time.perf_counter() - t0) / 2
    backend = min(rates, key=rates.get)
    total = 0.0
    for small, large in pairs:
        n_s = small.shape[0]
        rows = max(1, min(large.shape[0], int(0.75 * BLOCK_BYTES) // (n_s * 4)))
        out = np.empty((rows, n_s), np.float32)
        out.fill(0)  # touch the pages once, as featgraph's reused buffer does
        t0 = time.perf_counter()
        for r0 in range(0, large.shape[0], rows):
            blk = large[r0 : r0 + rows]
            _plain_gemm(backend, blk, small, out[: blk.shape[0]])
        total += time.perf_counter() - t0
    return total, backend


def _plain_gemm(backend: str, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    if backend == "numpy":
        np.matmul(a, b.T, out=out)
    else:
        torch.mm(torch.from_numpy(a), torch.from_numpy(b).T, out=torch.from_numpy(out))


def same_edges(ref: PairMatch, other: PairMatch) -> bool:
    return np.array_equal(ref.edge_large, other.edge_large) and np.array_equal(
        ref.edge_small, other.edge_small
    )


def check(ref: list[PairMatch], got: list[PairMatch], name: str, *, exact: bool) -> None:
    for i, (r, g) in enumerate(zip(ref, got, strict=True)):
        if not same_edges(r, g):
            raise SystemExit(
                f"{name}: pair {i} found {g.n_edges} edges, the fp32 path {r.n_edges}: not the same set"
            )
        if exact and not r.same_as(g):
            raise SystemExit(f"{name}: pair {i}: argmax or max cos differs from the fp32 path")


def measure_floors(pairs: list[tuple[np.ndarray, np.ndarray]], floor_cache: dict) -> None:
    """One more floor measurement of each pair (at most two per pair over the whole run; the lower counts)."""
    for a, b in pairs:
        times, _ = floor_cache.setdefault((a.shape, b.shape), ([], ""))
        if len(times) < 2:
            t, backend = gemm_floor([(a, b)])
            floor_cache[(a.shape, b.shape)] = ([*times, t], backend)


def run_case(label: str, units: list[np.ndarray], floor_cache: dict, skip_faiss: bool) -> list[str]:
    pairs = list(zip(units[:-1], units[1:], strict=True))
    flops = sum(2.0 * a.shape[0] * b.shape[0] * a.shape[1] for a, b in pairs)
    measure_floors(pairs, floor_cache)  # before and after the methods: the machine's load drifts
    res = {}
    for method in ("fp32", "bf16"):
        res[method] = timed(
            lambda m=method: match_ladder(
                units, TAU, method=m, device="cpu", block_bytes=BLOCK_BYTES, progress=False
            )
        )
    check(res["fp32"][0], res["bf16"][0], "bf16", exact=True)
    if not skip_faiss:
        res["faiss"] = timed(
            lambda: [match_pair(a, b, TAU, method="faiss", progress=False) for a, b in pairs]
        )
        check(res["fp32"][0], res["faiss"][0], "faiss", exact=False)
    measure_floors(pairs, floor_cache)
    floor = sum(min(floor_cache[(a.shape, b.shape)][0]) for a, b in pairs)
    backend = "/".join(sorted({floor_cache[(a.shape, b.shape)][1] for a, b in pairs}))
    fp32_t, bf16_t = res["fp32"][1], res["bf16"][1]
    faiss_t = res["faiss"][1] if "faiss" in res else float("nan")
    edges = sum(m.n_edges for m in res["fp32"][0])
    mem = "/".join(f"{res[k][2]:.0f}" for k in ("fp32", "bf16", "faiss") if k in res)
    return [
        label,
        f"{flops / 1e12:.2f}",
        f"{floor:.1f} ({backend})",
        f"{floor and flops / floor / 1e9:.0f}",
        f"{fp32_t:.1f}",
        f"{fp32_t / floor:.2f}",
        f"{bf16_t:.1f}",
        f"{bf16_t / floor:.2f}",
        f"{faiss_t:.1f}",
        f"{faiss_t / fp32_t:.2f}",
        f"{faiss_t / bf16_t:.2f}",
        str(edges),
        mem,
    ]


HEADER = [
    "case",
    "TFLOP",
    "fp32 floor s",
    "floor GF/s",
    "fp32 s",
    "fp32/floor",
    "bf16 s",
    "bf16/floor",
    "faiss s",
    "faiss/fp32",
    "faiss/bf16",
    "edges",
    "peak MB fp32/bf16/faiss",
]


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    import faiss

    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return (
        f"{model}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()}), AMX-BF16: {amx}; "
        f"numpy {np.__version__}, torch {torch.__version__}, faiss {faiss.__version__}"
    )


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def interleaved(small: np.ndarray, large: np.ndarray, repeats: int, skip_faiss: bool) -> None:
    """Floor, fp32, bf16 (and faiss) in turn, ``repeats`` rounds, best wall and best process-CPU time of each.

    On a machine shared with other jobs, a method measured minutes after its floor can land in a busier
    minute; alternating them and keeping each one's best time compares like with like, and CPU time (all
    threads of this process) is less sensitive to waiting for a core than wall time.
    """
    backend = gemm_floor([(small, large[:2048])])[1]
    rows = max(1, min(large.shape[0], int(0.75 * BLOCK_BYTES) // (small.shape[0] * 4)))
    out = np.empty((rows, small.shape[0]), np.float32)
    out.fill(0)

    def floor():
        for r0 in range(0, large.shape[0], rows):
            blk = large[r0 : r0 + rows]
            _plain_gemm(backend, blk, small, out[: blk.shape[0]])

    methods = {
        "floor": floor,
        "fp32": lambda: match_pair(small, large, TAU, method="fp32", device="cpu", progress=False),
        "bf16": lambda: match_pair(small, large, TAU, method="bf16", device="cpu", progress=False),
    }
    if not skip_faiss:
        methods["faiss"] = lambda: match_pair(small, large, TAU, method="faiss", progress=False)
    wall: dict[str, list[float]] = {k: [] for k in methods}
    cpu: dict[str, list[float]] = {k: [] for k in methods}
    results = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            c0, t0 = cpu_seconds(), time.perf_counter()
            results[name] = fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(cpu_seconds() - c0)
    for name in ("bf16", "faiss"):
        if name in results:
            check([results["fp32"]], [results[name]], name, exact=name == "bf16")
    flops = 2.0 * small.shape[0] * large.shape[0] * small.shape[1]
    print(
        f"# {small.shape[0]} x {large.shape[0]} at d={small.shape[1]} ({flops / 1e12:.2f} TFLOP, blocks of "
        f"{rows} rows, floor via {backend}), {repeats} interleaved rounds, best of each:"
    )
    table = [["method", "wall s", "wall/floor", "cpu s", "cpu/floor", "all wall s", "all cpu s"]]
    for name in methods:
        bw, bc = min(wall[name]), min(cpu[name])
        table.append(
            [
                name,
                f"{bw:.1f}",
                f"{bw / min(wall['floor']):.3f}",
                f"{bc:.1f}",
                f"{bc / min(cpu['floor']):.3f}",
                " ".join(f"{x:.1f}" for x in wall[name]),
                " ".join(f"{x:.1f}" for x in cpu[name]),
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    print(
        f"# edges: {results['fp32'].n_edges}; every method found the same edge set, fp32 and bf16 the same "
        "argmax and max cos (1e-6)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--skip-faiss", action="store_true", help="leave out the faiss baseline")
    ap.add_argument(
        "--interleaved-rows",
        type=int,
        metavar="N",
        help="instead: the first N rows of the top pair's larger SAE against its smaller SAE, floor and "
        "methods alternating for --repeats rounds, wall and CPU time",
    )
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    top = 24576 if args.quick else 98304
    widths = []
    w = 768
    while w <= top:
        widths.append(w)
        w *= 2
    print(
        f"# featgraph bench_matching ({'quick' if args.quick else 'full'}"
        f"{', interleaved' if args.interleaved_rows else ''}), "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )
    print(f"# {machine()}")
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (1 min; 2-core machine shared with other jobs)")
    t0 = time.perf_counter()
    decoders, _ = planted_ladder(widths, args.d, seed=0, near_tau=TAU, n_near_tau=64)
    units = [normalize_rows(W)[0] for W in decoders]
    del decoders
    print(f"# planted ladder {widths} at d={args.d}: {time.perf_counter() - t0:.1f} s to generate; tau={TAU}")
    if args.interleaved_rows:
        interleaved(units[-2], units[-1][: args.interleaved_rows], args.repeats, args.skip_faiss)
        print(f"# load average at end: {os.getloadavg()[0]:.2f}; total {time.perf_counter() - t0:.0f} s")
        return
    cases = [(f"{units[-2].shape[0]} x {units[-1].shape[0]}", units[-2:])]
    if not args.quick:
        cases.insert(0, (f"{units[-4].shape[0]} x {units[-3].shape[0]}", units[-4:-2]))
    cases.append((f"ladder {widths[0]}..{widths[-1]} ({len(widths)} widths)", units))
    rows = [HEADER]
    floor_cache: dict = {}
    for label, us in cases:
        try:
            rows.append(run_case(label, us, floor_cache, args.skip_faiss))
        except FeatgraphError as e:
            raise SystemExit(f"{label}: {e}") from e
        print(f"# done: {label} ({time.perf_counter() - t0:.0f} s so far)", flush=True)
    widths_col = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths_col, strict=True)))
    print(f"# load average at end: {os.getloadavg()[0]:.2f}; total {time.perf_counter() - t0:.0f} s")
    print("# every method found the same edge set; fp32 and bf16 also the same argmax and max cos (1e-6)")


if __name__ == "__main__":
    main()
