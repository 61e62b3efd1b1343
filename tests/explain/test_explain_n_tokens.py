"""``featgraph explain --n-tokens N`` (and ``report --explain --n-tokens N``, which passes its limit on): explain
reads the whole contexts that hold the store's first N rows, and its tables equal explain over a store truncated
to those contexts."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from featgraph.activations.store import ActivationStore
from tests.conftest import run_main
from tests.hostile import assert_refused

from ..explorer.test_report_explorer import ladder_store_examples  # noqa: F401  (the module's fixture, reused)
from .builders import integer_case, token_store

TABLES = ("feature_stats.parquet", "examples.parquet")


def _truncated(store: ActivationStore, folder, n_ctx: int) -> ActivationStore:
    """The first ``n_ctx`` contexts of ``store`` (rows and token ids) as a store of their own."""
    rpc = store.meta["context_size"] - int(store.meta["exclude_bos"])
    return token_store(folder, store.read(n_ctx * rpc).numpy(), store.tokens()[:n_ctx],
                       exclude_bos=bool(store.meta["exclude_bos"]))


def _explain(sae_dir, acts, out, *extra) -> None:
    rc, _, err = run_main("explain", sae_dir, "--acts", acts, "--out", out, "-k", "3", "--window", "3",
                          "--tokenizer", "ids", "-q", *extra)
    assert rc == 0, err


def test_n_tokens_equals_explain_over_the_truncated_store(tmp_path):
    store, sae = integer_case(tmp_path / "acts", n_ctx=8, ctx=7)  # 6 rows per context (BOS left out)
    sae.save(tmp_path / "sae")
    _truncated(store, tmp_path / "acts4", 4)
    _explain(tmp_path / "sae", tmp_path / "acts", tmp_path / "limited", "--n-tokens", "20")  # 20 rows -> 4 contexts
    _explain(tmp_path / "sae", tmp_path / "acts4", tmp_path / "truncated")
    _explain(tmp_path / "sae", tmp_path / "acts", tmp_path / "whole")
    for name in TABLES:
        limited = pl.read_parquet(tmp_path / "limited" / name)
        assert limited.equals(pl.read_parquet(tmp_path / "truncated" / name)), name
        assert not limited.equals(pl.read_parquet(tmp_path / "whole" / name)), name  # the limit changed something
    examples = pl.read_parquet(tmp_path / "limited" / "examples.parquet")
    assert examples.height and examples["context"].max() <= 3
    summary = json.loads((tmp_path / "limited" / "summary.json").read_text())
    assert (summary["store"]["n_contexts"], summary["store"]["n_tokens"], summary["store"]["n_tokens_in_store"]) == (
        4, 24, 48)
    cfg = json.loads((tmp_path / "limited" / "config.json").read_text())
    assert (cfg["n_tokens"], cfg["n_tokens_limit"]) == (24, 20)  # the rows read, a limit that reproduces the run


def test_n_tokens_beyond_the_store_reads_it_all_and_zero_is_refused(tmp_path):
    store, sae = integer_case(tmp_path / "acts", n_ctx=5, ctx=7)
    sae.save(tmp_path / "sae")
    _explain(tmp_path / "sae", tmp_path / "acts", tmp_path / "big", "--n-tokens", "10000")
    _explain(tmp_path / "sae", tmp_path / "acts", tmp_path / "whole")
    for name in TABLES:
        assert pl.read_parquet(tmp_path / "big" / name).equals(pl.read_parquet(tmp_path / "whole" / name)), name
    assert_refused(["explain", tmp_path / "sae", "--acts", tmp_path / "acts", "--out", tmp_path / "o",
                    "--tokenizer", "ids", "--n-tokens", "0"], inputs=[tmp_path / "sae", tmp_path / "acts"],
                   out=tmp_path / "o", needles=("n_tokens", "0"))


def test_report_explain_passes_its_n_tokens_on(ladder_store_examples, tmp_path):  # noqa: F811
    root, acts, _ = ladder_store_examples  # 20 contexts of 100 rows
    out = tmp_path / "report"
    rc, _, err = run_main("report", root, "--out", out, "--acts", acts, "--explain", "--tokenizer", "ids",
                          "--n-tokens", "1050", "--no-frankenstein", "-q")
    assert rc == 0, err
    sep = tmp_path / "sep"
    assert run_main("explain", root, "--acts", acts, "--out", sep, "--tokenizer", "ids", "--n-tokens", "1050",
                    "-q")[0] == 0
    for name in TABLES:
        assert pl.read_parquet(out / "examples" / name).equals(pl.read_parquet(sep / name)), name
    summary = json.loads((out / "examples" / "summary.json").read_text())
    assert summary["store"]["n_contexts"] == 11  # ceil(1050 / 100): the contexts the stitching rows lie in
    assert np.asarray(pl.read_parquet(out / "examples" / "examples.parquet")["context"]).max() <= 10
