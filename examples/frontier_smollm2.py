"""Frankenstein SAEs against the ladder at equal L0: the MSE-L0 frontier of ladders trained at several L1 values.

    featgraph frankenstein RUN_A/ladder --acts HELDOUT --train-acts TRAIN --retrain-tokens 200000 --out FRANK
    python examples/frontier_smollm2.py --run RUN_A --run RUN_B --frankenstein FRANK --out /tmp/frontier

Each ``--run`` is a training run of ``examples/train_smollm2_ladder.py`` (its ``ladder/`` folder is read; a
``seed-control/`` subfolder is not a width and is skipped) or a folder of SAE folders; every SAE records the L1 it was
trained with. Every SAE's decoder is refit exactly on the same training tokens as the Frankenstein run's (the first
``--fit-tokens`` of ``--train-acts``, the last 10% of them choosing the ridge) and evaluated on the same held-out
tokens, so its MSE is comparable with the Frankenstein stages' (:mod:`featgraph.report.frontier`). ``--acts``,
``--train-acts``, ``--fit-tokens`` and ``--n-tokens`` default to the Frankenstein run's and are refused when they
differ from them.

Writes into ``--out`` (atomically): ``frontier.parquet`` (one row per SAE: run, width, L1, L0, MSE, ridge),
``equal_l0.parquet`` and ``equal_l0.md`` (each Frankenstein stage against the bracketing ladder widths at its own L0;
"outside the frontier" where its L0 lies beyond the L0 range measured; with ``--n-boot`` > 0 a 95% BCa interval of
each difference from a bootstrap over held-out contexts, for which the Frankenstein stages are rebuilt from the folder
and refit: one more pass over the training tokens), ``frontier.png`` and ``config.json`` (with ``control_gap`` and
``stage_gap``: relative MSE differences to the Frankenstein run's own numbers for the same SAEs, ~0 by construction).
"""

from __future__ import annotations

import argparse
import sys
import time

import polars as pl

from featgraph.errors import FeatgraphError
from featgraph.report.frontier_run import FrontierConfig, run_frontier


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, help="training run folder or ladder folder (repeat)")
    p.add_argument("--frankenstein", required=True, help="a `featgraph frankenstein --out` folder")
    p.add_argument("--acts", default=None, help="held-out store (default: the Frankenstein run's --acts)")
    p.add_argument("--train-acts", default=None, help="training store (default: the Frankenstein run's)")
    p.add_argument("--fit-tokens", type=int, default=None,
                   help="training tokens of each decoder fit (default: the Frankenstein run's --retrain-tokens)")
    p.add_argument("--n-tokens", type=int, default=None, help="held-out tokens (default: the Frankenstein run's)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap replicates over held-out contexts for each difference (0: none, and the "
                        "Frankenstein stages are not rebuilt)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--out", required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        cfg = FrontierConfig(out=args.out, runs=tuple(args.run), frankenstein=args.frankenstein, acts=args.acts,
                             train_acts=args.train_acts, fit_tokens=args.fit_tokens, n_tokens=args.n_tokens,
                             n_boot=args.n_boot, seed=args.seed, progress=not args.quiet)
        res = run_frontier(cfg)
    except FeatgraphError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=160):
        print(res.points.select("run", "name", "width", "l1", "l0", "mse", "ridge"))
    print((res.out / "equal_l0.md").read_text(encoding="utf-8"))
    gaps = ", ".join(f"{k} {v:.1e}" for k, v in res.control_gap.items()) or "none (no SAE shared with it)"
    print(f"relative MSE gap to the Frankenstein run's own refit of the same SAEs: {gaps}")
    if res.stage_gap:
        print("relative MSE gap of the rebuilt stages to the Frankenstein run's: "
              + ", ".join(f"{k} {v:.1e}" for k, v in res.stage_gap.items()))
    print(f"wrote {res.out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
