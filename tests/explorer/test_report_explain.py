"""``featgraph report --explain``: the report runs explain over its own store into ``examples/`` and then does what
``--examples`` does; the result equals a report given a separately run ``featgraph explain`` folder."""

from __future__ import annotations

import numpy as np
import polars as pl

from featgraph.activations.store import ActivationStore
from featgraph.explain.labels import read_labels

from ..conftest import run_main
from ..hostile import assert_refused
from .test_page import embedded
from .test_report_explorer import ladder_store_examples  # noqa: F401  (the module's fixture, reused)


def test_report_explain_equals_report_given_a_separate_explain(ladder_store_examples, tmp_path):  # noqa: F811
    root, acts, _ = ladder_store_examples
    out = tmp_path / "report"
    rc, _, err = run_main("report", root, "--out", out, "--acts", acts, "--explain", "--tokenizer", "ids",
                          "--no-frankenstein", "-q")
    assert rc == 0, err
    sep = tmp_path / "sep"
    assert run_main("explain", root, "--acts", acts, "--out", sep, "--tokenizer", "ids", "-q")[0] == 0
    for name in ("feature_stats.parquet", "examples.parquet"):
        assert pl.read_parquet(out / "examples" / name).equals(pl.read_parquet(sep / name)), name
    labels = read_labels(out / "examples")
    assert labels == read_labels(sep) and any(lab for per in labels.values() for lab in per.values())
    given = tmp_path / "given"
    rc, _, err = run_main("report", root, "--out", given, "--acts", acts, "--examples", sep, "--no-frankenstein",
                          "-q")
    assert rc == 0, err
    a, b = embedded(out / "explorer.html"), embedded(given / "explorer.html")
    for key in ("saes", "features", "edges", "families", "vocab", "examples"):
        assert a[key] == b[key], key
    assert (out / "split_families.png").read_bytes() == (given / "split_families.png").read_bytes()
    for name in ("features.parquet", "edges.parquet", "families.parquet"):
        assert (out / "families" / name).read_bytes() == (given / "families" / name).read_bytes(), name


def test_report_explain_refuses_a_store_of_another_d_in_before_any_pass(ladder_store_examples, tmp_path):  # noqa: F811
    root, _, _ = ladder_store_examples
    rng = np.random.default_rng(1)
    other = ActivationStore.create(tmp_path / "acts32", model="synthetic", hook_name="blocks.0.hook_resid_pre",
                                   d_in=32, tokens=rng.integers(0, 50, (4, 10)).astype(np.int32), exclude_bos=False,
                                   dtype="float32")
    other.write(rng.standard_normal((40, 32)).astype(np.float32))
    other.mark_complete()
    out = tmp_path / "report"
    assert_refused(["report", root, "--out", out, "--acts", tmp_path / "acts32", "--explain", "--tokenizer", "ids",
                    "--no-frankenstein", "-q"], inputs=[root, tmp_path / "acts32"], out=out,
                   needles=("d_in=32", "acts32"))


def test_report_explain_and_examples_together_are_refused(ladder_store_examples, tmp_path):  # noqa: F811
    root, acts, ex = ladder_store_examples
    out = tmp_path / "report"
    assert_refused(["report", root, "--out", out, "--acts", acts, "--explain", "--examples", ex, "-q"],
                   inputs=[root, acts, ex], out=out, needles=("--explain", "--examples"))
