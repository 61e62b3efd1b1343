"""Families of one adjacent pair at the size of GPT-2's largest (49152 -> 98304 features, 147k nodes):
scipy.sparse.csgraph (featgraph.graph.families_from_edges) beside networkx (pair_graph + families_from_graph).

    python benchmarks/bench_components.py [--small 49152] [--large 98304] [--repeat 3]

Edges come from a planted ladder's ground truth (each non-novel large feature joined to its planted parent) plus
extra random edges between already-matched features, so merges and n:m families occur; no similarity search runs.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np

from featgraph.graph import families_from_edges, families_from_graph, pair_graph
from featgraph.synthetic import planted_ladder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=49152)
    ap.add_argument("--large", type=int, default=98304)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    _, truths = planted_ladder([args.small, args.large], 8, seed=0)
    parent = truths[0].parent_of
    rng = np.random.default_rng(0)
    el = np.flatnonzero(parent >= 0)
    es = parent[el]
    extra = rng.choice(el.size, size=el.size // 20, replace=False)  # 5% extra edges -> merges / n:m
    es = np.r_[es, es[rng.permutation(extra)]]
    el = np.r_[el, el[extra]]
    keep = np.unique(np.c_[el, es], axis=0)  # sorted by (large, small), no duplicates
    el, es = keep[:, 0], keep[:, 1]
    max_cos = np.zeros(args.large)
    argmax = np.zeros(args.large, dtype=np.int64)
    match = SimpleNamespace(max_cos=max_cos, argmax=argmax, edge_small=es, edge_large=el,
                            edge_cos=np.full(es.size, 0.9))

    def median_time(f):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = f()
            times.append(time.perf_counter() - t)
        return float(np.median(times)), out

    t_scipy, fs = median_time(lambda: families_from_edges(es, el))
    t_build, g = median_time(lambda: pair_graph("small", "large", match, n_small=args.small))
    t_nx, fn = median_time(lambda: families_from_graph(g))
    assert [f.key() for f in fs] == [f.key() for f in fn]
    print(f"pair {args.small} -> {args.large}: {args.small + args.large} nodes, {es.size} edges, {len(fs)} families")
    header = f"seconds (median of {args.repeat})"
    print(f"{'method':<42}{header:>22}")
    print(f"{'scipy csgraph (families_from_edges)':<42}{t_scipy:>22.4f}")
    print(f"{'networkx components (families_from_graph)':<42}{t_nx:>22.4f}")
    print(f"{'networkx incl. building the pair graph':<42}{t_build + t_nx:>22.4f}")
    print(f"speed-up of scipy: {t_nx / t_scipy:.0f}x (components only), "
          f"{(t_build + t_nx) / t_scipy:.0f}x (with the graph build)")


if __name__ == "__main__":
    main()
