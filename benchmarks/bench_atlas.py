"""The atlas's engines on one machine: the local engine beside Ray (a local cluster), with the GEMM floor, in one run.

A synthetic collection of ``--sites`` sites x 4 widths (largest ``--top``, default 24,576 at d = 768; seeded planted
ladders from ``featgraph.synthetic``, unit rows made in memory) gives the atlas's plan: families pairs (adjacent
widths within each site) and flow pairs (equal widths at adjacent sites). Its tasks are the atlas's own
(``featgraph.atlas.work.make_tasks`` / ``pair_task``, the exact matcher), run through ``LocalEngine`` and through
``RayEngine`` (a fresh engine per run, so every run puts the arrays again) in alternating rounds; the script checks
that both engines return identical arrays before printing any time. Beside them: the sum of the pairs' GEMM floors
(the plan's FLOPs / the fp32 and bf16 GEMM rates measured here with torch, all cores), and the figures a cluster
scales on: tasks, bytes each task sends and gets back, arrays put once.

    python benchmarks/bench_atlas.py             # 3 sites x [3072, 6144, 12288, 24576] at d = 768
    python benchmarks/bench_atlas.py --quick     # 3 sites x [768, 1536, 3072, 6144]: seconds
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import pickle
import statistics
import subprocess
import time

import numpy as np
import torch

from featgraph.atlas.engines import LocalEngine, Task
from featgraph.atlas.plan import Pair
from featgraph.atlas.work import make_tasks, pair_task
from featgraph.matching import normalize_rows, resolve_method_device
from featgraph.synthetic import planted_ladder

TAU = 0.7


def blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture', '-')}, "
                     f"{lib.get('num_threads')} threads, {os.path.basename(lib.get('filepath', ''))})"
                     for lib in threadpool_info())


def cpu_model() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return "unknown CPU"


def collection(n_sites: int, widths: list[int], d: int) -> tuple[dict[str, np.ndarray], list[Pair]]:
    """Unit rows per SAE (named ``L<site>-<width>``, standing in for fingerprints) and the plan's pairs."""
    arrays = {}
    for s in range(n_sites):
        decoders, _ = planted_ladder(widths, d, seed=100 + s, near_tau=TAU, n_near_tau=16)
        for W in decoders:
            arrays[f"L{s}-{W.shape[0]}"] = normalize_rows(W)[0]
    pairs = [Pair("families", f"L{s}-{a}", f"L{s}-{b}") for s in range(n_sites)
             for a, b in zip(widths[:-1], widths[1:], strict=True)]
    pairs += [Pair("flow", f"L{s}-{w}", f"L{s + 1}-{w}") for s in range(n_sites - 1) for w in widths]
    return arrays, pairs


def task_flops(task: Task, arrays: dict[str, np.ndarray]) -> float:
    a = arrays[task.inputs[0]]
    r0, r1 = task.params["rows"]
    return 2.0 * a.shape[0] * (r1 - r0) * a.shape[1]


def gemm_rate(dtype: torch.dtype, n_small: int, d: int) -> tuple[float, float]:
    """FLOPs per wall second and per CPU second (all threads of this process) of a plain block GEMM
    (2048 rows x d) @ (d x n_small) in ``dtype`` with torch's threads, best of 3 each. Under load the wall rate
    swings with the share of cores this process gets; the CPU rate much less."""
    a = torch.randn(2048, d).to(dtype)
    b = torch.randn(n_small, d).to(dtype)
    out = torch.empty(2048, n_small, dtype=dtype)
    torch.mm(a, b.T, out=out)
    wall = cpu = float("inf")
    for _ in range(3):
        c0, t0 = time.process_time(), time.perf_counter()
        torch.mm(a, b.T, out=out)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    flop = 2.0 * 2048 * n_small * d
    return flop / wall, flop / cpu


def same(local: dict, other: dict) -> None:
    if local.keys() != other.keys():
        raise SystemExit(f"the engines returned different task keys: {sorted(local.keys() ^ other.keys())[:3]}")
    for key, res in local.items():
        for name, arr in res.items():
            if not np.array_equal(arr, other[key][name]):
                raise SystemExit(f"task {key}: {name} differs between the local engine and Ray")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and every live descendant (Ray's daemons and workers are children of
    the driver that started them): CPU time counts work done, waiting for a core on a shared machine does not."""
    parent, cpu = {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    return sum(cpu.get(p, 0.0) for p in tree)


def run_ray(tasks: list[Task], arrays: dict) -> tuple[dict, float, float, int, int]:
    from featgraph.atlas.engines import RayEngine

    c0, t0 = tree_cpu_seconds(os.getpid()), time.perf_counter()
    with RayEngine() as engine:  # joins the Ray started in main(): a fresh engine puts the arrays again
        out = dict(engine.map(pair_task, tasks, arrays))
        puts, put_bytes = engine.puts, engine.put_bytes
    return out, time.perf_counter() - t0, tree_cpu_seconds(os.getpid()) - c0, puts, put_bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="widths 768 ... 6144: seconds")
    ap.add_argument("--sites", type=int, default=3)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=3, help="alternating local / Ray rounds (medians reported)")
    ap.add_argument("--method", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--memory-budget", type=int, default=4 << 30, help="bytes per task (the atlas's default)")
    args = ap.parse_args()
    top = 6144 if args.quick else 24576
    widths = [top // 8, top // 4, top // 2, top]
    method, device = resolve_method_device(args.method, "cpu")
    ncpu = os.cpu_count() or 1
    print(f"# featgraph bench_atlas ({'quick' if args.quick else 'full'}), "
          f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# {cpu_model()}, {ncpu} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"numpy {np.__version__}")
    print(f"# BLAS: {blas()}")
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min; shared machine)")
    t0 = time.perf_counter()
    arrays, pairs = collection(args.sites, widths, args.d)
    shapes = {k: v.shape for k, v in arrays.items()}
    tasks = [t for p in pairs for t in make_tasks(p, p.a, p.b, shapes, tau=TAU, method=method, device="auto",
                                                  budget_bytes=args.memory_budget)]
    flops = sum(task_flops(t, arrays) for t in tasks)
    print(f"# collection: {args.sites} sites x widths {widths} at d={args.d} ({len(arrays)} SAEs, "
          f"{sum(a.nbytes for a in arrays.values()) / 2**20:.0f} MiB of unit rows), {time.perf_counter() - t0:.1f} s "
          f"to generate; plan: {len(pairs)} pairs ({sum(p.kind == 'families' for p in pairs)} families, "
          f"{sum(p.kind == 'flow' for p in pairs)} flow) in {len(tasks)} tasks, {flops / 1e12:.2f} TFLOP; "
          f"tau={TAU}, method {method} on {device}")

    import ray

    t1 = time.perf_counter()
    ray.init(num_cpus=ncpu, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    ray_start = time.perf_counter() - t1
    rates: dict[str, list[tuple[float, float]]] = {"fp32": [], "bf16": []}
    local_t, ray_t, local_c, ray_c = [], [], [], []
    local = first = None
    puts = put_bytes = 0
    for r in range(args.repeats + 1):  # round 0: Ray's workers start cold (process start, imports); reported apart
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            rates[name].append(gemm_rate(dtype, widths[-1], args.d))
        c2, t2 = tree_cpu_seconds(os.getpid()), time.perf_counter()
        res = dict(LocalEngine().map(pair_task, tasks, arrays))
        lt, lc = time.perf_counter() - t2, tree_cpu_seconds(os.getpid()) - c2  # incl. Ray's idle daemons
        local = local or res
        got, dt, dc, puts, put_bytes = run_ray(tasks, arrays)
        same(local, got)
        if r:
            local_t.append(lt)
            ray_t.append(dt)
            local_c.append(lc)
            ray_c.append(dc)
        else:
            first = dt
        print(f"# round {r}: local {lt:.1f} s ({lc:.1f} CPU s), ray {dt:.1f} s ({dc:.1f} CPU s) "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
    ray.shutdown()

    (w32, c32), (w16, c16) = ((max(r[0] for r in rates[k]), max(r[1] for r in rates[k])) for k in ("fp32", "bf16"))
    loc, ray_med = statistics.median(local_t), statistics.median(ray_t)
    lcpu, rcpu = statistics.median(local_c), statistics.median(ray_c)
    rows = [["", "wall s (median)", "wall runs s", "CPU s (median)", "x fp32 CPU floor", "x bf16 CPU floor",
             "wall vs local", "CPU vs local"],
            ["fp32 GEMM floor", f"{flops / w32:.1f}", f"({w32 / 1e9:.0f} GFLOP/s)", f"{flops / c32:.1f}", "1.00", "",
             "", f"({c32 / 1e9:.0f} GFLOP per CPU s)"],
            ["bf16 GEMM floor", f"{flops / w16:.1f}", f"({w16 / 1e9:.0f} GFLOP/s)", f"{flops / c16:.1f}", "", "1.00",
             "", f"({c16 / 1e9:.0f} GFLOP per CPU s)"]]
    for name, wall, runs, cpu in (("local", loc, local_t, lcpu), ("ray (warm workers)", ray_med, ray_t, rcpu)):
        rows.append([name, f"{wall:.1f}", " ".join(f"{x:.1f}" for x in runs), f"{cpu:.1f}",
                     f"{cpu / (flops / c32):.2f}", f"{cpu / (flops / c16):.2f}", f"{wall / loc:.2f}",
                     f"{cpu / lcpu:.2f}"])
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.rjust(x) for c, x in zip(row, w, strict=True)))
    print(f"# CPU s: this process and all its descendants (Ray's daemons and workers; during the local run they "
          f"idle); the CPU floor is the plan's FLOPs at the GEMM's FLOPs per CPU second. On {ncpu} cores a run "
          f"that waited for no core has wall ~ CPU / {ncpu}")
    paired = statistics.median(r / lo for r, lo in zip(ray_t, local_t, strict=True))
    print(f"# Ray overhead over the local engine: {100 * (ray_med / loc - 1):+.1f}% (medians of {len(ray_t)} rounds; "
          f"median of the per-round ratios, each round's two runs back to back: {100 * (paired - 1):+.1f}%; "
          f"target <= 15%); once per session on top: ray.init {ray_start:.1f} s, first run with cold workers "
          f"{first:.1f} s")
    msg = [len(pickle.dumps((pair_task, t))) for t in tasks]
    work = [task_flops(t, arrays) for t in tasks]
    back = [sum(np.asarray(v).nbytes for v in local[t.key].values()) for t in tasks]
    read = [sum(arrays[n].nbytes for n in t.inputs) for t in tasks]
    print(f"# scaling: {len(tasks)} tasks; each task's message {min(msg)}-{max(msg)} bytes (function by reference, "
          f"Task, 2 ObjectRefs); results back {min(back) / 2**10:.0f}-{max(back) / 2**10:.0f} KiB per task "
          f"({sum(back) / 2**20:.1f} MiB in all); arrays put once: {puts} ({put_bytes / 2**20:.0f} MiB)")
    print(f"# each task reads {min(read) / 2**20:.0f}-{max(read) / 2**20:.0f} MiB of shared arrays, fetched once per "
          f"node (zero-copy for every task on that node), and does {min(work) / 1e9:.0f}-{max(work) / 1e9:.0f} GFLOP: "
          f"at least {min(f / r for f, r in zip(work, read, strict=True)):.0f} FLOP per byte a node "
          f"fetches, so on N nodes the wall time is ~ max(plan FLOPs / (N x node rate), largest task) while the "
          f"data moved is <= N x {put_bytes / 2**20:.0f} MiB; a pair too large for one worker is split into row "
          f"blocks by --memory-budget, adding tasks, not bytes per node")
    print(f"# load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; total "
          f"{time.perf_counter() - t0:.0f} s; both engines returned identical arrays for every task in every round")


if __name__ == "__main__":
    main()
