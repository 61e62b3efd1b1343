"""``featgraph explain`` as a user runs it: outputs, SAE order and names, and hostile inputs refused in one line
with nothing written and every input unchanged."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import polars as pl
import pytest

from featgraph.io.checks import MANIFEST_FILE
from tests.conftest import run_main, tiny_sae
from tests.hostile import assert_refused

from .builders import integer_case, token_store


@pytest.fixture
def case(tmp_path):
    """A store and a ladder folder: widths 10 and 5 plus a same-width control of the 10."""
    store, sae = integer_case(tmp_path / "acts", n_ctx=8)
    ladder = tmp_path / "ladder"
    sae.save(ladder / "b-10")
    tiny_sae(5, sae.d_in, seed=2).save(ladder / "c-5")
    tiny_sae(10, sae.d_in, seed=3).save(tmp_path / "control" / "a-10-seed1")
    return tmp_path, store


def test_cli_writes_the_tables_in_ladder_order(case):
    tmp, _ = case
    rc, out, err = run_main("explain", tmp / "ladder", tmp / "control" / "a-10-seed1", "--acts", tmp / "acts",
                            "--out", tmp / "out", "-k", "3", "--window", "4", "--tokenizer", "ids", "--quiet")
    assert rc == 0, err
    assert err == ""  # --quiet: no bars
    stats = pl.read_parquet(tmp / "out" / "feature_stats.parquet")
    examples = pl.read_parquet(tmp / "out" / "examples.parquet")
    # width order, ties by name: the control (a-10-seed1) before b-10, as featgraph families orders a ladder
    assert stats["sae"].unique(maintain_order=True).to_list() == ["c-5", "a-10-seed1", "b-10"]
    assert stats.height == 25 and examples["rank"].max() <= 2
    assert examples.select(pl.col("tokens").list.len() == pl.col("acts").list.len()).to_series().all()
    assert examples.select(pl.col("tokens").list.get(pl.col("center")).str.starts_with("<")).to_series().all()
    for line in ("c-5: ", "a-10-seed1: ", "b-10: ", f"wrote {tmp / 'out'}"):
        assert line in out
    manifest = json.loads((tmp / "out" / MANIFEST_FILE).read_text())
    assert manifest["command"] == "explain"
    cfg = json.loads((tmp / "out" / "config.json").read_text())
    assert (cfg["command"], cfg["k"], cfg["window"], cfg["n_tokens"], cfg["tokenizer_used"]) == (
        "explain", 3, 4, 8 * 6, "ids")
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    assert [s["name"] for s in summary["saes"]] == ["c-5", "a-10-seed1", "b-10"]
    assert summary["store"]["n_contexts"] == 8 and summary["window"] == {"before": 4, "after": 1}
    # a second run replaces the first result
    assert run_main("explain", tmp / "ladder", "--acts", tmp / "acts", "--out", tmp / "out", "--tokenizer", "ids",
                    "-q")[0] == 0
    assert pl.read_parquet(tmp / "out" / "feature_stats.parquet")["sae"].unique().sort().to_list() == ["b-10", "c-5"]


def test_refuses_a_store_of_another_d_in(case):
    tmp, _ = case
    tiny_sae(7, 4, seed=0).save(tmp / "narrow")
    assert_refused(["explain", tmp / "narrow", "--acts", tmp / "acts", "--out", tmp / "o", "--tokenizer", "ids"],
                   inputs=[tmp / "narrow", tmp / "acts"], out=tmp / "o",
                   needles=(str(tmp / "acts"), "d_in=6", "d_in=4", str(tmp / "narrow")))


def test_refuses_a_store_without_token_ids(case):
    tmp, _ = case
    shutil.copytree(tmp / "acts", tmp / "acts2")
    os.remove(tmp / "acts2" / "tokens.npy")
    assert_refused(["explain", tmp / "ladder", "--acts", tmp / "acts2", "--out", tmp / "o"],
                   inputs=[tmp / "ladder", tmp / "acts2"], out=tmp / "o", needles=(str(tmp / "acts2"), "tokens.npy"))


def test_refuses_rows_that_are_not_whole_contexts(tmp_path):
    x = np.zeros((7, 6), np.float32)
    token_store(tmp_path / "acts", x, np.ones((2, 4), np.int32), exclude_bos=True)  # 3 rows per context, 7 rows
    tiny_sae(5, 6).save(tmp_path / "sae")
    assert_refused(["explain", tmp_path / "sae", "--acts", tmp_path / "acts", "--out", tmp_path / "o"],
                   inputs=[tmp_path / "sae", tmp_path / "acts"], out=tmp_path / "o",
                   needles=(str(tmp_path / "acts"), "not whole contexts of 3 rows"))


@pytest.mark.parametrize("where", ["acts", "acts/sub", "ladder", "ladder/b-10"])
def test_refuses_out_at_an_input(case, where):
    tmp, _ = case
    assert_refused(["explain", tmp / "ladder", "--acts", tmp / "acts", "--out", tmp / where, "--tokenizer", "ids"],
                   inputs=[tmp / "ladder", tmp / "acts"], needles=("--out",))


def test_refuses_bad_options_and_a_missing_tokenizer(case, monkeypatch):
    tmp, _ = case
    base = ["explain", tmp / "ladder", "--acts", tmp / "acts", "--out", tmp / "o"]
    assert_refused([*base, "-k", "0"], inputs=[tmp / "acts"], out=tmp / "o", needles=("k must be",))
    assert_refused([*base, "--top-tokens", "0"], inputs=[tmp / "acts"], out=tmp / "o", needles=("top_tokens",))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the store's model "tiny" is no tokenizer anywhere: fail fast
    assert_refused(base, inputs=[tmp / "acts", tmp / "ladder"], out=tmp / "o",
                   needles=("tokenizer", "'tiny'", "--tokenizer ids"))


def test_refuses_negative_token_ids(tmp_path):
    tokens = np.ones((2, 4), np.int32)
    tokens[1, 2] = -5
    token_store(tmp_path / "acts", np.zeros((6, 6), np.float32), tokens, exclude_bos=True)
    tiny_sae(5, 6).save(tmp_path / "sae")
    assert_refused(["explain", tmp_path / "sae", "--acts", tmp_path / "acts", "--out", tmp_path / "o"],
                   inputs=[tmp_path / "sae", tmp_path / "acts"], out=tmp_path / "o",
                   needles=(str(tmp_path / "acts" / "tokens.npy"), "-5", "context 1, position 2"))


def test_token_ids_outside_the_tokenizer_are_refused():
    from featgraph.errors import ConfigError
    from featgraph.explain.tokens import tokenizer_decoder

    class Tok:  # the two methods explain uses of a Hugging Face tokenizer
        def __len__(self):
            return 10

        def batch_decode(self, seqs):
            return [f"t{s[0]}" for s in seqs]

    decode = tokenizer_decoder(Tok())
    assert decode([3, 1, 3]) == {1: "t1", 3: "t3"}
    with pytest.raises(ConfigError, match="token id 10 is outside the tokenizer's 10 ids"):
        decode([2, 10])
