"""GraphML of a GPT-2-sized ladder graph (widths 768..98304, 196k features, planted edges): featgraph's streaming
writer beside networkx.write_graphml: seconds and the growth of peak RSS while writing, each in a fresh process.

    python benchmarks/bench_graphml.py
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import networkx as nx
import numpy as np

from featgraph.graph import families_from_edges, ladder_graph
from featgraph.graphml import write_graphml
from featgraph.synthetic import planted_ladder
from featgraph.tables import edges_table, features_table


def gpt2_sized_graph() -> nx.DiGraph:
    widths = [768 * 2**i for i in range(8)]
    rng = np.random.default_rng(0)
    _, truths = planted_ladder(widths, 4, seed=0, copy_frac=0.45, split_frac=0.4)
    matches = []
    for t in truths:
        p = t.parent_of
        el = np.flatnonzero(p >= 0)
        max_cos = np.where(p >= 0, rng.uniform(0.71, 1, p.size), rng.uniform(0.2, 0.7, p.size))
        argmax = np.where(p >= 0, p, 0)
        matches.append(SimpleNamespace(max_cos=max_cos, argmax=argmax, edge_small=p[el], edge_large=el,
                                       edge_cos=max_cos[el]))
    names = [f"gpt2-{w}" for w in widths]
    norms = [rng.uniform(0.5, 2, w) for w in widths]
    fams = [families_from_edges(m.edge_small, m.edge_large) for m in matches]
    feats = features_table(names, norms, matches, fams, tau=0.7)
    return ladder_graph(feats, edges_table(names, matches, fams), tau=0.7)


def _child(which: str, path: str, q) -> None:
    import resource

    g = gpt2_sized_graph()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    (write_graphml if which == "ours" else nx.write_graphml)(g, path)
    dt = time.perf_counter() - t
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    q.put((dt, grown / 1024, Path(path).stat().st_size / 1e6, g.number_of_nodes(), g.number_of_edges()))


def main() -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        for which in ("ours", "networkx"):
            q = ctx.Queue()
            proc = ctx.Process(target=_child, args=(which, str(Path(d) / f"{which}.graphml"), q))
            proc.start()
            rows[which] = q.get()
            proc.join()
        a = nx.read_graphml(Path(d) / "ours.graphml")
        b = nx.read_graphml(Path(d) / "networkx.graphml")
        same = dict(a.nodes(data=True)) == dict(b.nodes(data=True)) and set(a.edges) == set(b.edges)
    n, e = rows["ours"][3:]
    print(f"ladder graph: {n} nodes, {e} edges; both files read back to the same graph: {same}")
    print(f"{'writer':<32}{'seconds':>10}{'peak RSS growth MB':>20}{'file MB':>10}")
    for name, key in (("featgraph.graphml.write_graphml", "ours"), ("networkx.write_graphml", "networkx")):
        t, m, size = rows[key][:3]
        print(f"{name:<32}{t:>10.2f}{m:>20.0f}{size:>10.1f}")


if __name__ == "__main__":
    main()
