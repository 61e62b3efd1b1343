"""The weekday-style panel: the largest split families, each parent's and child's top tokens in its box."""

from __future__ import annotations

import polars as pl

from featgraph.explorer.data import page_data
from featgraph.explorer.panel import largest_splits, split_panel, split_panel_png


def test_largest_splits_are_the_split_families_with_most_children(explorer_inputs):
    fam, ex = explorer_inputs
    data = page_data(fam, ex)
    names = [s["name"] for s in data["saes"]]
    fams = pl.read_parquet(fam / "families.parquet").filter(pl.col("kind") == "split")
    want = sorted((-r["n_large"], r["n_small"], names.index(r["small"]), r["family"])
                   for r in fams.iter_rows(named=True))[:5]
    got = largest_splits(data)
    assert [(-len(r[4]), len(r[3]), r[0], r[1]) for r in got] == want and len(got) == 5


def test_panel_boxes_show_each_features_top_tokens(explorer_inputs):
    fam, ex = explorer_inputs
    data = page_data(fam, ex)
    fig = split_panel(data)
    texts = [t.get_text() for t in fig.axes[0].texts]
    for p, fid, _k, parents, children, _lo, _hi in largest_splits(data):
        assert any(t.startswith(f"family {data['saes'][p]['name']}:{fid}: {len(parents)} -> {len(children)}")
                   for t in texts)
        for si, feats in ((p, parents), (p + 1, children)):
            for f in feats:
                box = next(t for t in texts if f"{data['saes'][si]['name']}:{f}" in t.split("\n")[0])
                tops = data["features"][si]["top"][f]
                assert all(tok.strip() in box for tok in tops) if tops else "(never active)" in box
    assert split_panel_png(data)[:4] == b"\x89PNG"


def test_panel_without_splits_says_so():
    data = {"saes": [{"name": "a", "width": 1}], "features": [], "families": []}
    assert [t.get_text() for t in split_panel(data).axes[0].texts] == ["no split families"]
