"""Families of a ladder of SAEs in a few lines: novel features, swap families, splitting trees, GraphML.

    python examples/families_quickstart.py                    # a small planted ladder, in a temporary folder
    python examples/families_quickstart.py ladders/synthetic  # or any SAE folders / a folder of SAE folders

The same as ``featgraph families SAE... --out DIR --plots``, from Python, then a look at what it wrote.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

from featgraph.families import run_families
from featgraph.graph import splitting_tree, tree_depth
from featgraph.graphml import read_graphml
from featgraph.ladder import Ladder, LadderEntry
from featgraph.synthetic import planted_ladder


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="featgraph-families-")) / "families"
    if len(sys.argv) > 1:
        source = sys.argv[1:]  # SAE paths, loaded by featgraph.ladder.load_ladder
    else:
        # a ladder built in memory: widths 256 -> 512 -> 1024 with planted copies, splits and novel features
        decoders, _ = planted_ladder([256, 512, 1024], 64, seed=0)
        source = Ladder(
            [LadderEntry(f"toy-{len(W)}", Path(f"toy-{len(W)}"), "in-memory", W) for W in decoders]
        )
    result = run_families(source, out, tau=0.7, plots=True, progress=False)

    # per pair: how many larger-SAE features are novel, and what kinds of families the rest form
    for p in result.summary["pairs"]:
        print(
            f"{p['small']} -> {p['large']}: {p['novel']}/{p['features']} novel, {p['edges']} edges, "
            f"families {p['families_by_kind']}"
        )

    # the tables are polars DataFrames (also on disk as Parquet): e.g. the biggest split of the first pair
    first = result.families.filter(pl.col("large") == result.names[1])
    biggest = first.sort(["n_large", "family"], descending=[True, False]).row(0, named=True)
    print(
        f"largest family of the first pair: {biggest['kind']} {biggest['small_features']} -> "
        f"{biggest['large_features']}"
    )

    # splitting trees: a feature of the smallest SAE and its descendants across all larger widths; show the
    # largest one
    graph = read_graphml(out / "graph.graphml")  # what Gephi / Cytoscape open too
    roots = [n for n, d in graph.nodes(data=True) if d["sae"] == result.names[0]]
    root = max(roots, key=lambda n: len(splitting_tree(graph, n)))
    tree = splitting_tree(graph, root)
    n_widths = tree_depth(tree, root) + 1
    print(f"splitting tree of {root}: {tree.number_of_nodes()} features over {n_widths} widths")
    for node in sorted(tree, key=lambda n: (tree.nodes[n]["width"], tree.nodes[n]["feature"])):
        d = tree.nodes[node]
        print(f"  {node:<16} max_cos={'-' if d['max_cos'] is None else format(d['max_cos'], '.3f')}")

    print(f"outputs in {out}: {', '.join(result.files)}")


if __name__ == "__main__":
    main()
