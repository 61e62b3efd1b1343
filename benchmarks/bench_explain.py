"""featgraph explain beside one plain encode pass of the same SAEs over the same tokens, in one run.

For each SAE of the bundled ladder (l3-576 ... l3-4608 and the seed control l3-1152-seed1) and each repeat, two
timed passes run back to back over the same store, in the same context-aligned batches:

* encode: read each batch from the store and ``sae.encode`` it, nothing else (the floor: what any per-feature
  analysis must at least do);
* explain: :func:`featgraph.explain.run.explain_sae` (the same reads and encode, plus the per-feature top-k merge with
  windows and the sparse (feature, token) accumulation) and building both tables (token strings, labels), i.e.
  everything ``featgraph explain`` does per SAE except loading the tokenizer once and writing Parquet.

The two alternate so that load from other jobs on the machine falls on both; medians over repeats. Then, once,
``featgraph explain`` end to end (process start, imports, tokenizer load, the passes, Parquet writing) is timed on
its own, and the explain pass's per-feature maximum is checked against the plain encode of the narrowest SAE.

Needs a store of about 100,000 tokens collected with the ladder's settings from the training split, e.g.::

    featgraph collect --out /work/runs/stores/explain100k --split train --tokens 100000 --context-size 128
    python benchmarks/bench_explain.py /work/runs/stores/explain100k
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from featgraph.explain.run import _Strings, explain_sae, open_store
from featgraph.explain.tables import examples_table, stats_table
from featgraph.explain.tokens import store_decoder
from featgraph.formats import load_sae

ROOT = Path(__file__).resolve().parents[1]
LADDER = ROOT / "ladders" / "smollm2-135m"
SAES = ["l3-576", "l3-1152", "l3-2304", "l3-4608", "seed-control/l3-1152-seed1"]


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


@torch.no_grad()
def encode_pass(sae, store, layout, batch_size: int, track_max: bool = False) -> torch.Tensor | None:
    rpc = layout.rows_per_context
    per = max(1, batch_size // rpc)
    top = torch.zeros(sae.n_features) if track_max else None
    for c0 in range(0, layout.n_contexts, per):
        n = min(per, layout.n_contexts - c0)
        acts = sae.encode(store.read(n * rpc, c0 * rpc))
        if top is not None:
            top = torch.maximum(top, acts.max(dim=0).values)
    return top


def explain_pass(sae, name, store, layout, strings, args) -> int:
    ex = explain_sae(sae, store, layout, k=args.k, window=args.window, top_tokens=args.top_tokens,
                     batch_size=args.batch_size)
    stats_table(name, ex.n_tokens, ex.stats, ex.max_act, strings)
    return examples_table(name, ex.top, layout.tokens, layout.first, strings).height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", help="activation store of ~100,000 tokens (see the module docstring)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--top-tokens", type=int, default=10)
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end featgraph explain run")
    args = ap.parse_args()

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# {now}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"# BLAS: {blas()}")
    store, layout = open_store(args.store)
    n_tokens = layout.n_contexts * layout.rows_per_context
    t0 = time.perf_counter()
    decode, tok_name = store_decoder(None, store.meta["model"], str(store.folder))
    t_tok = time.perf_counter() - t0
    saes = [(s.split("/")[-1], load_sae(LADDER / s)) for s in SAES]
    print(f"store {args.store}: {n_tokens} tokens ({layout.n_contexts} contexts of {layout.rows_per_context}); "
          f"k={args.k}, window={args.window}+{args.window // 4}, top tokens {args.top_tokens}, batches of "
          f"{args.batch_size} tokens; tokenizer {tok_name} loaded in {t_tok:.1f} s (once per run, not below)")
    times = {name: {"encode": [], "explain": []} for name, _ in saes}
    for r in range(args.repeats):
        strings = _Strings(decode)  # a fresh token-string cache per repeat, shared by the SAEs as in a run
        for name, sae in saes:
            t = time.perf_counter()
            encode_pass(sae, store, layout, args.batch_size)
            times[name]["encode"].append(time.perf_counter() - t)
            t = time.perf_counter()
            explain_pass(sae, name, store, layout, strings, args)
            times[name]["explain"].append(time.perf_counter() - t)
        print(f"# repeat {r + 1}/{args.repeats} done, load average {os.getloadavg()[0]:.2f}", flush=True)

    print(f"{'sae':<16}{'width':>7}{'encode s':>11}{'explain s':>11}{'ratio':>8}   (medians of {args.repeats})")
    tot_e = tot_x = 0.0
    for name, sae in saes:
        e, x = statistics.median(times[name]["encode"]), statistics.median(times[name]["explain"])
        tot_e, tot_x = tot_e + e, tot_x + x
        print(f"{name:<16}{sae.n_features:>7}{e:>11.2f}{x:>11.2f}{x / e:>8.2f}")
    per_repeat = [sum(times[n]["explain"][r] for n, _ in saes) / sum(times[n]["encode"][r] for n, _ in saes)
                  for r in range(args.repeats)]
    print(f"{'whole ladder':<23}{tot_e:>11.2f}{tot_x:>11.2f}{tot_x / tot_e:>8.2f}   "
          f"(per repeat: {', '.join(f'{v:.2f}' for v in per_repeat)}; target <= 2)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    name, sae = saes[0]
    want = encode_pass(sae, store, layout, args.batch_size, track_max=True).numpy()
    got = explain_sae(sae, store, layout, k=1, window=0, batch_size=args.batch_size).max_act
    print(f"check: explain's max activation per feature equals the plain encode's for {name}: "
          f"{bool(np.array_equal(got, np.maximum(want, 0)))}")

    if not args.no_e2e:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "featgraph.cli.main", "explain", *[str(LADDER / s) for s in SAES],
                   "--acts", args.store, "--out", f"{tmp}/out", "--quiet"]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            e2e = time.perf_counter() - t
            size = sum(p.stat().st_size for p in Path(tmp, "out").iterdir()) / 2**20
        print(f"end to end: featgraph explain on the 5 SAEs (process, imports, tokenizer, passes, Parquet): "
              f"{e2e:.1f} s = {e2e / tot_e:.2f}x the encode passes' median total; output {size:.1f} MB")


if __name__ == "__main__":
    main()
