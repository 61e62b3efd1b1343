"""``featgraph stitch`` on the bundled 1x -> 2x pair: the 0.1 pipeline (one pass per analysis, store read whole)
against the streaming one (one pass, batches), in one run.

    git archive 2160269 | tar -x -C /tmp/fg01          # the last 0.1 commit, beside this checkout
    featgraph collect --text /usr/share/doc --split train --tokens 200000 --out /tmp/acts200k
    python benchmarks/bench_stitch.py --old /tmp/fg01 --store /tmp/acts200k --tokens 100000

Each pipeline runs as its own child process (``featgraph stitch`` through its CLI, ``--n-tokens N``): wall time is
the median of ``--runs`` runs, peak memory the child's ``ru_maxrss`` (from ``os.wait4``). The old one runs from the
checkout given by ``--old`` (its ``featgraph`` and its ``cli`` as ``featgraph.cli``). The floor is one plain encode
pass of both SAEs (``Sae.encode``, float32, the same batches of 4096 tokens) over the same tokens, in this process.
Then the new pipeline again on other token counts, to show that its peak memory does not grow with the store. The
numbers of both outputs are compared (largest relative difference over delta-MSE, swaps and the path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
# runs featgraph's CLI from a source tree ROOT whose cli/ folder is the featgraph.cli package
RUNNER = """
import importlib.util, sys
root = sys.argv[1]
sys.path.insert(0, root)
import featgraph
assert featgraph.__file__.startswith(root), featgraph.__file__
spec = importlib.util.spec_from_file_location("featgraph.cli", root + "/cli/__init__.py",
                                              submodule_search_locations=[root + "/cli"])
mod = importlib.util.module_from_spec(spec)
sys.modules["featgraph.cli"] = mod
spec.loader.exec_module(mod)
featgraph.cli = mod
from featgraph.cli.main import main
main(sys.argv[2:])
"""


def run_child(root: Path, args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one CLI run in a fresh process."""
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", RUNNER, str(root), *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{root}: featgraph {' '.join(args)} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024


def encode_floor(small: Path, large: Path, store: Path, n_tokens: int) -> float:
    import torch

    from featgraph.activations.store import ActivationStore
    from featgraph.formats import load_sae
    from featgraph.stitch.batches import StoreRows

    saes = [load_sae(small), load_sae(large)]
    rows = StoreRows(ActivationStore(store), n_tokens)
    t = time.perf_counter()
    with torch.no_grad():
        for x in rows.iter_batches(4096):
            for s in saes:
                s.encode(x)
    return time.perf_counter() - t


def blas() -> str:
    import torch
    from threadpoolctl import threadpool_info

    torch.ones(64, 64) @ torch.ones(64, 64)  # load the BLAS torch uses
    libs = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture', '?')}, {i.get('num_threads')} "
            f"threads)" for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(libs) + f"; torch {torch.__version__}, {torch.get_num_threads()} threads, " \
        f"{torch.backends.cpu.get_cpu_capability()}"


def max_rel(new: np.ndarray, old: np.ndarray, scale: float) -> float:
    return float(np.max(np.abs(new - old) / np.maximum(np.abs(old), scale)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", type=Path, default=Path("/tmp/fg01"), help="a checkout of the last 0.1 commit")
    p.add_argument("--store", type=Path, default=Path("/tmp/acts200k"))
    p.add_argument("--ladder", type=Path, default=REPO / "ladders" / "smollm2-135m")
    p.add_argument("--tokens", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3, help="runs of the new pipeline (median)")
    p.add_argument("--old-runs", type=int, default=None, help="runs of the old one (default: --runs)")
    p.add_argument("--memory-tokens", default="50000,200000", help="other token counts for the new pipeline")
    a = p.parse_args()
    small, large = a.ladder / "l3-576", a.ladder / "l3-1152"
    work = Path(tempfile.mkdtemp(prefix="bench_stitch_"))
    print(f"pair {small.name} -> {large.name}, store {a.store}, {a.tokens} tokens; {os.cpu_count()} cores "
          "(shared with a background training job at nice 19)")
    print(f"BLAS: {blas()}")
    res = {}
    for label, root in (("old (0.1, 2160269)", a.old), ("new (streaming)", REPO)):
        times, rss = [], []
        for r in range(a.runs if root == REPO or a.old_runs is None else a.old_runs):
            out = work / f"{label.split()[0]}{r}"
            w, m = run_child(root, ["stitch", str(small), str(large), "--acts", str(a.store), "--n-tokens",
                                    str(a.tokens), "--out", str(out), "-q"])
            times.append(w)
            rss.append(m)
            print(f"  {label:20s} run {r + 1}: {w:7.1f} s, peak RSS {m:7.0f} MB", flush=True)
        res[label] = (statistics.median(times), max(rss), out)
    floor = encode_floor(small, large, a.store, a.tokens)
    (t_old, m_old, o_old), (t_new, m_new, o_new) = res.values()
    print(f"\n{'pipeline':28s} {'median s':>9s} {'peak MB':>8s}")
    print(f"{'old (0.1, 2160269)':28s} {t_old:9.1f} {m_old:8.0f}")
    print(f"{'new (streaming)':28s} {t_new:9.1f} {m_new:8.0f}")
    print(f"{'floor: encode both SAEs':28s} {floor:9.1f}")
    print(f"speed-up {t_old / t_new:.2f}x; new = {t_new / floor:.1f}x the encode floor; memory {m_old / m_new:.2f}x")

    f_old, f_new = pl.read_parquet(o_old / "dmse.parquet"), pl.read_parquet(o_new / "dmse.parquet")
    scale = float(pl.read_parquet(o_new / "interpolation.parquet")["mse"][0]) * 1e-6
    diffs = {
        "dmse": max_rel(f_new["dmse"].to_numpy(), f_old["dmse"].to_numpy(), scale),
        "swap dmse": max_rel(pl.read_parquet(o_new / "swaps.parquet")["dmse"].to_numpy(),
                             pl.read_parquet(o_old / "families.parquet")["dmse"].to_numpy(), scale),
        "path mse": max_rel(pl.read_parquet(o_new / "interpolation.parquet")["mse"].to_numpy(),
                            pl.read_parquet(o_old / "interpolation.parquet")["mse"].to_numpy(), scale),
        "cumulative": max_rel(*(np.nan_to_num(pl.read_parquet(o / "cumulative_mse.parquet").to_numpy())
                                for o in (o_new, o_old)), scale),
    }
    print("largest relative difference new vs old: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))

    print("\nnew pipeline, peak memory against the number of tokens read:")
    for n in sorted({a.tokens, *(int(t) for t in a.memory_tokens.split(","))}):
        w, m = run_child(REPO, ["stitch", str(small), str(large), "--acts", str(a.store), "--n-tokens", str(n),
                                "--out", str(work / f"mem{n}"), "-q"])
        print(f"  {n:7d} tokens: {w:6.1f} s, peak RSS {m:6.0f} MB", flush=True)


if __name__ == "__main__":
    main()
