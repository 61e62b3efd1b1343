"""`featgraph families` as a whole process beside its matching alone, on the 8-width synthetic ladder 768 ... 98304
at d = 768 (issue 13's end-to-end goal: the whole process within 1.3x of the matching time), with peak memory.

    python benchmarks/bench_families_e2e.py [--repeats 3] [--widths 8] [--method auto]

The ladder (featgraph.synthetic.planted_ladder, saved as featgraph-format SAE folders, fp32) is written once into a
temporary folder. Then, interleaved, ``--repeats`` times each and each in a fresh process:
- ``families``: the console script ``featgraph families LADDER --out OUT --quiet`` (interpreter start, imports,
  loading, matching, tables, GraphML, summary: everything a user waits for), wall time from the parent and the
  child's peak RSS from ``os.wait4``;
- ``matching``: a child that loads the same decoders and normalises them (untimed), then times
  ``featgraph.matching.match_ladder`` alone, with the same method and tau.
Medians are printed with every run, and the ratio families / matching per run (the two processes of a run
follow each other, so they see about the same load on a shared machine) and its median.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAU = 0.7


def blas() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    import numpy  # noqa: F401  (loads numpy's BLAS so that threadpoolctl sees it)
    import torch  # noqa: F401

    return "; ".join(f"{lib.get('internal_api')} {lib.get('version')} ({lib.get('architecture', '-')}, "
                     f"{lib.get('num_threads')} threads, {os.path.basename(lib.get('filepath', ''))})"
                     for lib in threadpool_info())


def cpu_model() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def write_synthetic_ladder(root: Path, widths: list[int], d: int) -> float:
    """The planted ladder as featgraph SAE folders under ``root``; seconds taken."""
    import torch

    from featgraph.sae import Sae, SaeConfig
    from featgraph.synthetic import planted_ladder, random_sae_tensors

    t0 = time.perf_counter()
    decoders, _ = planted_ladder(widths, d, seed=0)
    for i, W in enumerate(decoders):
        tensors = {k: torch.from_numpy(v) for k, v in random_sae_tensors(W, seed=i).items()}
        Sae.from_tensors(tensors, SaeConfig(d_in=d, n_features=W.shape[0])).save(root / f"sae-{W.shape[0]:06d}")
    return time.perf_counter() - t0


def run_child(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; (wall seconds, peak RSS MB of that process, stdout). Fails loudly on a non-zero exit."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (peak RSS), not all children's
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def matching_child(ladder: str, method: str) -> None:
    """In a fresh process: load and normalise the decoders (untimed), time match_ladder alone; print JSON."""
    from featgraph.ladder import load_ladder
    from featgraph.matching import match_ladder, normalize_rows, resolve_method_device

    lad = load_ladder([ladder])
    units = [normalize_rows(e.W_dec)[0] for e in lad]
    t0 = time.perf_counter()
    matches = match_ladder(units, TAU, method=method, device="cpu", progress=False)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "edges": int(sum(len(m.edge_cos) for m in matches)),
                      "resolved": resolve_method_device(method, "cpu")[0]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, default=8, help="ladder 768 * 2**i for i < WIDTHS")
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="auto")
    ap.add_argument("--keep", type=Path, default=None, help="reuse/keep the synthetic ladder in this folder")
    ap.add_argument("--atlas", action="store_true",
                    help="also time `featgraph atlas` on the same ladder (one site of a folder-tree collection)")
    ap.add_argument("--child-matching", nargs=2, metavar=("LADDER", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_matching:
        matching_child(*args.child_matching)
        return

    widths = [768 * 2**i for i in range(args.widths)]
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"# featgraph bench_families_e2e, {now:%Y-%m-%d %H:%M} UTC, {cpu_model()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"# BLAS: {blas()}")
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (1 min; a 2-core machine shared with other jobs)")
    tmp = Path(tempfile.mkdtemp(prefix="featgraph-e2e-"))
    try:
        ladder = args.keep or tmp / "ladder"
        if not ladder.exists():
            secs = write_synthetic_ladder(ladder, widths, args.d)
            print(f"# planted ladder {widths} at d={args.d} written in {secs:.0f} s "
                  f"({sum(f.stat().st_size for f in ladder.rglob('*')) / 1e6:.0f} MB on disk)")
        featgraph = shutil.which("featgraph") or sys.exit("the featgraph console script is not on PATH")
        fam_cmd = [featgraph, "families", str(ladder), "--out", str(tmp / "out"), "--tau", str(TAU),
                   "--method", args.method, "--quiet"]
        match_cmd = [sys.executable, __file__, "--child-matching", str(ladder), args.method]
        rows: dict[str, list[tuple[float, float]]] = {"families": [], "matching": []}
        if args.atlas:
            # atlas reads a folder tree ROOT/<site>/<sae>/: a root holding only a link to the ladder as its one site
            (tmp / "atlas-root").mkdir()
            (tmp / "atlas-root" / "site0").symlink_to(ladder.resolve(), target_is_directory=True)
            atlas_cmd = [featgraph, "atlas", str(tmp / "atlas-root"), "--out", str(tmp / "atlas-out"), "--tau",
                         str(TAU), "--method", args.method, "--quiet"]
            rows["atlas"] = []
        info = {}
        for r in range(args.repeats):
            wall, rss, _ = run_child(fam_cmd)
            rows["families"].append((wall, rss))
            _, rss_m, out = run_child(match_cmd)
            info = json.loads(out.strip().splitlines()[-1])
            rows["matching"].append((info["seconds"], rss_m))
            extra = ""
            if args.atlas:
                # a fresh --out each run: atlas reuses an earlier run's finished pairs, which would time nothing
                shutil.rmtree(tmp / "atlas-out", ignore_errors=True)
                wall_a, rss_a, _ = run_child(atlas_cmd)
                rows["atlas"].append((wall_a, rss_a))
                extra = f", atlas {wall_a:.1f} s (peak {rss_a:.0f} MB)"
            print(f"# run {r + 1}: families {wall:.1f} s (peak {rss:.0f} MB), matching {info['seconds']:.1f} s"
                  f"{extra}, load {os.getloadavg()[0]:.2f}", flush=True)
        graphml = (tmp / "out" / "graph.graphml").stat().st_size / 1e6
        fam = statistics.median(w for w, _ in rows["families"])
        match = statistics.median(w for w, _ in rows["matching"])
        print(f"ladder {widths[0]} ... {widths[-1]} ({len(widths)} widths, {sum(widths)} features) at d={args.d}, "
              f"tau {TAU}, method {args.method} (resolved: {info['resolved']}), {info['edges']} edges, "
              f"graph.graphml {graphml:.0f} MB")
        print(f"{'':<34}{'median s':>10}{'runs s':>24}{'peak RSS MB':>14}")
        labels = [("families", "featgraph families (whole process)"), ("matching", "match_ladder alone")]
        if args.atlas:
            labels.insert(1, ("atlas", "featgraph atlas (whole process)"))
        for name, label in labels:
            runs = " ".join(f"{w:.1f}" for w, _ in rows[name])
            print(f"{label:<34}{statistics.median(w for w, _ in rows[name]):>10.1f}{runs:>24}"
                  f"{max(m for _, m in rows[name]):>14.0f}")
        paired = [f / m for (f, _), (m, _) in zip(rows["families"], rows["matching"], strict=True)]
        print(f"ratio families / matching: per run (each pair run back to back) "
              f"{' '.join(f'{r:.2f}' for r in paired)}, median {statistics.median(paired):.2f}; "
              f"of the medians {fam / match:.2f} (goal <= 1.30)")
        if args.atlas:
            paired = [a / m for (a, _), (m, _) in zip(rows["atlas"], rows["matching"], strict=True)]
            print(f"ratio atlas / matching: per run {' '.join(f'{r:.2f}' for r in paired)}, "
                  f"median {statistics.median(paired):.2f} (goal <= 1.30)")
            wall_r, _, _ = run_child(atlas_cmd)  # the same command again: every pair reused from the last run
            print(f"featgraph atlas rerun on its own --out (all pairs reused): {wall_r:.1f} s")
        print(f"# load average at end: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
