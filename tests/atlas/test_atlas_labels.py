"""``featgraph atlas --acts STORE / --examples DIR``: feature labels on the graph's nodes (GraphML and node-link
JSON) equal to ``read_labels`` of the explain output, each store's explain folder under ``examples/<site>/``, reruns
reuse it, the tables are byte-identical to a run without labels, and bad stores are refused before the matching."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from featgraph.activations.store import ActivationStore
from featgraph.explain.labels import read_labels

from ..conftest import run_main, tiny_sae
from ..hostile import assert_refused
from .planted import write_manifest

SITE0, SITE1 = "blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre"


def _store(folder: Path, hook: str, d_in: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    n_ctx, ctx = 6, 12
    store = ActivationStore.create(folder, model="synthetic", hook_name=hook, d_in=d_in,
                                   tokens=rng.integers(0, 40, (n_ctx, ctx)).astype(np.int32), exclude_bos=False,
                                   dtype="float32")
    store.write(rng.standard_normal((n_ctx * ctx, d_in)).astype(np.float32))
    store.mark_complete()
    return folder


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas_labels")
    rng = np.random.default_rng(3)
    entries = []
    for i, (name, w, site) in enumerate([("a-w8", 8, SITE0), ("a-w16", 16, SITE0), ("b-w8", 8, SITE1)]):
        tiny_sae(W_dec=rng.standard_normal((w, 16)).astype(np.float32), seed=i).save(root / "saes" / name)
        entries.append({"path": f"saes/{name}", "name": name, "site": site, "width": w})
    manifest = write_manifest(root / "atlas.toml", entries, defaults={"model": "synthetic"})
    return root, manifest, _store(root / "acts0", SITE0, 16, 1), _store(root / "acts1", SITE1, 16, 2)


def _graph_labels(out: Path) -> tuple[dict[str, str], dict[str, str]]:
    g = nx.read_graphml(out / "graph.graphml")
    j = nx.node_link_graph(json.loads((out / "graph.json").read_text()), edges="edges")
    return ({n: d.get("label") for n, d in g.nodes(data=True)}, {n: d.get("label") for n, d in j.nodes(data=True)})


def test_labels_on_nodes_equal_read_labels_and_tables_do_not_change(coll, tmp_path):
    root, manifest, acts0, acts1 = coll
    plain = tmp_path / "plain"
    assert run_main("atlas", manifest, "--out", plain, "-q")[0] == 0
    # site 1's labels from a separately run explain folder; site 0's from the store given to the atlas
    ex1 = tmp_path / "ex1"
    assert run_main("explain", root / "saes" / "b-w8", "--acts", acts1, "--out", ex1, "--tokenizer", "ids",
                    "-q")[0] == 0
    out = tmp_path / "out"
    rc, stdout, err = run_main("atlas", manifest, "--out", out, "--acts", acts0, "--examples", ex1,
                               "--tokenizer", "ids", "-q")
    assert rc == 0, err
    assert "labels: 3 SAEs (1 stores, 0 reused)" in stdout
    want = {**read_labels(out / "examples" / SITE0), **read_labels(ex1)}
    assert sorted(want) == ["a-w16", "a-w8", "b-w8"] and any(v for per in want.values() for v in per.values())
    expected = {f"{s}:{f}": lab for s, per in want.items() for f, lab in per.items()}
    for got in _graph_labels(out):
        assert got == expected
    assert all(v is None for got in _graph_labels(plain) for v in got.values())  # no label key without them
    for p in sorted(plain.rglob("*.parquet")):
        assert p.read_bytes() == (out / p.relative_to(plain)).read_bytes(), p
    # the examples folder is what `featgraph explain` writes for those SAEs over that store
    sep = tmp_path / "sep"
    assert run_main("explain", root / "saes" / "a-w8", root / "saes" / "a-w16", "--acts", acts0, "--out", sep,
                    "--tokenizer", "ids", "-q")[0] == 0
    for name in ("feature_stats.parquet", "examples.parquet"):
        assert (sep / name).read_bytes() == (out / "examples" / SITE0 / name).read_bytes(), name
    # a rerun reuses the explain folder and writes the same graph
    before = {n: (out / n).read_bytes() for n in ("graph.graphml", "graph.json")}
    rc, stdout, err = run_main("atlas", manifest, "--out", out, "--acts", acts0, "--examples", ex1,
                               "--tokenizer", "ids", "-q")
    assert rc == 0, err
    assert "(1 stores, 1 reused)" in stdout
    assert before == {n: (out / n).read_bytes() for n in ("graph.graphml", "graph.json")}


def test_bad_stores_are_refused_before_the_matching(coll, tmp_path):
    root, manifest, acts0, _ = coll
    wide = _store(tmp_path / "acts24", SITE0, 24, 4)
    out = tmp_path / "out"
    assert_refused(["atlas", manifest, "--out", out, "--acts", wide, "--tokenizer", "ids", "-q"],
                   inputs=[root, wide], out=out, needles=("d_in=24", "a-w8"))
    elsewhere = _store(tmp_path / "acts9", "blocks.9.hook_resid_pre", 16, 5)
    assert_refused(["atlas", manifest, "--out", out, "--acts", elsewhere, "--tokenizer", "ids", "-q"],
                   inputs=[root, elsewhere], out=out, needles=("blocks.9.hook_resid_pre", "no SAE"))
    assert_refused(["atlas", manifest, "--out", out, "--acts", acts0, "--acts", acts0, "--tokenizer", "ids", "-q"],
                   inputs=[root], out=out, needles=("two --acts stores",))


def test_an_sae_labelled_twice_is_refused_before_the_matching(coll, tmp_path):
    root, manifest, acts0, _ = coll
    ex0 = tmp_path / "ex0"
    assert run_main("explain", root / "saes" / "a-w8", "--acts", acts0, "--out", ex0, "--tokenizer", "ids",
                    "-q")[0] == 0
    out = tmp_path / "out"
    assert_refused(["atlas", manifest, "--out", out, "--acts", acts0, "--examples", ex0, "--tokenizer", "ids", "-q"],
                   inputs=[root, acts0, ex0], out=out, needles=("a-w8", "--examples"))
    assert_refused(["atlas", manifest, "--out", out, "--examples", ex0, "--examples", ex0, "-q"],
                   inputs=[root, ex0], out=out, needles=("a-w8", "labelled by"))
