"""featgraph compare refuses bad input in one line, exit 1, inputs untouched, nothing left at --out."""

from __future__ import annotations

import os
import shutil

import numpy as np
import polars as pl
import torch

from tests.builders import store_of
from tests.conftest import run_main, tiny_sae
from tests.hostile import assert_refused


def _saes(tmp_path):
    rng = np.random.default_rng(0)
    a, b = tmp_path / "a", tmp_path / "b"
    tiny_sae(W_dec=rng.standard_normal((20, 12)).astype(np.float32), seed=0).save(a)
    tiny_sae(W_dec=rng.standard_normal((30, 12)).astype(np.float32), seed=1).save(b)
    return a, b


def test_refused_inputs(tmp_path):
    a, b = _saes(tmp_path)
    other = tmp_path / "wide"
    tiny_sae(W_dec=np.ones((8, 10), np.float32), seed=2).save(other)
    ladder = tmp_path / "ladder"
    shutil.copytree(a, ladder / "x")
    shutil.copytree(b, ladder / "y")
    copy = tmp_path / "copy"
    shutil.copytree(a, copy)
    (tmp_path / "link").symlink_to(a)
    twin = tmp_path / "p" / "sae", tmp_path / "q" / "sae"
    shutil.copytree(a, twin[0])
    shutil.copytree(b, twin[1])
    store_of(torch.zeros(10, 7), tmp_path / "store7")
    empty_ex = tmp_path / "explain_empty"
    empty_ex.mkdir()
    ex = tmp_path / "explain_other"
    ex.mkdir()
    pl.DataFrame({"sae": ["zz"], "feature": pl.Series([0], dtype=pl.Int32), "label": ["x"]}).write_parquet(
        ex / "feature_stats.parquet")
    out = tmp_path / "out"
    ins = [a, b, ladder, copy, tmp_path / "store7", ex]
    for args, needles in [
        ([a, other], ("d_in", str(a), str(other), "12", "10")),
        ([a, b, "--tau", "1.5"], ("tau", "1.5")),
        ([a, b, "--tau", "0"], ("tau",)),
        ([a, tmp_path / "missing"], ("missing",)),
        ([ladder, b], (str(ladder), "2 SAE")),
        ([a, a], ("same SAE",)),
        ([a, tmp_path / "link"], ("same SAE",)),
        ([a, copy], ("identical decoders",)),
        ([twin[0], twin[1]], ("'sae'", "--name-a")),
        ([a, b, "--tokens", "5"], ("n_tokens", "--acts")),
        ([a, b, "--acts", tmp_path / "store7"], ("store7", "d_in=7", "d_in=12")),
        ([a, b, "--acts", b], ("meta.json",)),
        ([a, b, "--examples", empty_ex], ("feature_stats.parquet",)),
        ([a, b, "--examples", ex], ("'a'", "'b'", "zz")),
        ([a, b, "--act-threshold", "1"], ("act_threshold",)),
    ]:
        assert_refused(["compare", *args, "--out", out, "-q"], inputs=ins, out=out, needles=needles)


def test_out_never_touches_an_input(tmp_path):
    a, b = _saes(tmp_path)
    store_of(torch.randn(50, 12), tmp_path / "store")
    ins = [a, b, tmp_path / "store"]
    for out in (a / "res", b, tmp_path, tmp_path / "store" / "res"):
        assert_refused(["compare", a, b, "--acts", tmp_path / "store", "--out", out, "-q"], inputs=ins, out=out,
                       needles=("--out",))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert_refused(["compare", a, b, "--out", foreign, "-q"], inputs=ins, out=foreign, needles=("notes.txt",))
    rc, _, err = run_main("compare", a, b, "--out", tmp_path / "ok", "-q")  # an earlier compare is replaced
    assert rc == 0, err
    rc, _, err = run_main("compare", b, a, "--out", tmp_path / "ok", "-q")
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path / "ok"))[0] == ".featgraph-manifest.json"
