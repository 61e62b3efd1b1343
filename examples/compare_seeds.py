"""Compare two SAEs trained from different seeds (or at different widths): shared share, PW-MCC, lost and novel
features, split-aware families and, with activations, how well decoder cos predicts co-activation.

    python examples/compare_seeds.py                              # the bundled seed-control pair, decoders only
    python examples/compare_seeds.py --acts acts/heldout          # + activation similarity (featgraph collect)
    python examples/compare_seeds.py A B [--acts STORE]           # any two SAEs with the same d_in

The same as ``featgraph compare A B --out DIR [--acts STORE]``, from Python (``featgraph.compare(cfg)``), then a
look at what it wrote: the best and worst matched pairs, and the lost features that split into several.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import polars as pl

import featgraph

LADDER = Path(__file__).resolve().parents[1] / "ladders" / "smollm2-135m"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("saes", nargs="*", default=[str(LADDER / "l3-1152"), str(LADDER / "seed-control/l3-1152-seed1")])
    ap.add_argument("--acts", help="an activation store (featgraph collect) for the activation similarities")
    ap.add_argument("--out", help="output folder (default: a temporary one)")
    args = ap.parse_args()
    if len(args.saes) != 2:
        ap.error("give two SAEs (or none for the bundled seed-control pair)")
    out = args.out or str(Path(tempfile.mkdtemp(prefix="featgraph-compare-")) / "compare")

    cfg = featgraph.CompareConfig(a=args.saes[0], b=args.saes[1], out=out, tau=0.7, acts=args.acts, progress=False)
    result = featgraph.compare(cfg)  # = featgraph.run_compare(cfg): the library entry point of `featgraph compare`
    r = result.summary["results"]
    a, b = result.analysis.names
    asg = r["assignment"]
    print(f"{a} vs {b}: PW-MCC {asg['pw_mcc']:.4f}, shared share {100 * asg['shared_share']:.1f}% at tau 0.7 "
          f"({asg['shared_pairs']} of {asg['pairs']} matched pairs), certified gap <= {asg['gap_bound']:.1e}")
    print(f"lost from {a}: {r['a_to_b']['lost']} ({100 * r['a_to_b']['lost_share']:.1f}%), novel in {b}: "
          f"{r['b_to_a']['novel']} ({100 * r['b_to_a']['novel_share']:.1f}%); families {r['families_by_kind']}")
    if "activations" in r:
        act = r["activations"]
        print(f"decoder cos vs masked activation cos, Spearman: {act['spearman_assigned_pairs']['masked_cos']:.3f} "
              f"over the matched pairs, {act['spearman_decoder_cos_vs']['masked_cos']:.3f} over all "
              f"{act['coactive_pairs']} co-active pairs; decoder edges: precision {act['precision']:.3f}, recall "
              f"{act['recall']:.3f}")

    # the tables are polars DataFrames (and Parquet files in `out`)
    pairs = result.tables["pairs"].sort(["cos", "a_feature"], descending=[True, False])
    print("best matched pairs:", pairs.head(3).select("a_feature", "b_feature", "cos").rows())
    print("worst matched pairs:", pairs.tail(3).select("a_feature", "b_feature", "cos").rows())
    splits = result.tables["families"].filter(pl.col("kind") == "split").sort("n_b", descending=True)
    if splits.height:
        top = splits.row(0, named=True)
        print(f"largest split: {a}:{top['a_features'][0]} -> {b}:{top['b_features']}")
    print(f"wrote {', '.join(result.files)} to {out}")


if __name__ == "__main__":
    main()
