"""Labels: the documented rule, deterministic runs, and read_labels (the API families, compare and the explorer
call) with its refusals."""

from __future__ import annotations

import polars as pl
import pytest

from featgraph.errors import SaeFormatError
from featgraph.explain.config import ExplainConfig
from featgraph.explain.labels import make_label, read_labels, readable_token
from featgraph.explain.run import run_explain
from featgraph.explain.tokens import id_strings

from .builders import integer_case


def test_label_rule():
    assert make_label([" Monday", " Tuesday", "Monday", " Friday", " Sunday"]) == "Monday|Tuesday|Friday"
    assert make_label([]) == ""
    assert make_label(["\n", " ", "\t\t", "a|b"]) == "\\n|␣|\\t\\t"
    assert readable_token("a|b") == "a\\|b"
    assert readable_token("\x00") == "\\x00"
    assert readable_token(" " + "x" * 40) == "x" * 15 + "…"
    assert make_label([" x", "x", "x ", "y"], n=2) == "x|y"  # repeats after stripping count once


def _run(tmp_path, out: str):
    if not (tmp_path / "sae").exists():
        integer_case(tmp_path / "acts", n_ctx=10)[1].save(tmp_path / "sae")
    return run_explain(ExplainConfig(saes=(str(tmp_path / "sae"),), acts=str(tmp_path / "acts"),
                                     out=str(tmp_path / out), k=3, batch_size=5, progress=False), decode=id_strings)


def test_runs_are_byte_identical_and_labels_come_from_top_tokens(tmp_path):
    a, b = _run(tmp_path, "a"), _run(tmp_path, "b")
    for name in ("feature_stats.parquet", "examples.parquet", "summary.json"):
        assert (a.out / name).read_bytes() == (b.out / name).read_bytes(), name
    for row in a.stats.iter_rows(named=True):
        assert row["label"] == make_label(row["top_tokens_by_act"])
        assert (row["label"] == "") == (row["n_active"] == 0)
    labels = read_labels(a.out)
    assert labels == {"sae": dict(enumerate(a.stats["label"].to_list()))}
    assert read_labels(a.out / "feature_stats.parquet") == labels


def test_read_labels_of_a_hand_written_table(tmp_path):
    """Other helpers' tests write a tiny table with sae, feature (polars' default Int64) and label only."""
    pl.DataFrame({"sae": ["s", "s", "t"], "feature": [0, 5, 1], "label": ["a|b", None, ""]}).write_parquet(
        tmp_path / "feature_stats.parquet")
    assert read_labels(tmp_path) == {"s": {0: "a|b", 5: ""}, "t": {1: ""}}


_S = {"sae": pl.String, "feature": pl.Int64, "label": pl.String}


@pytest.mark.parametrize("frame, needle", [
    (None, "file not found"),
    (pl.DataFrame({"sae": ["s"], "feature": [0]}), "label"),
    (pl.DataFrame({"sae": ["s"], "feature": [0.5], "label": ["x"]}), "wrong type"),
    (pl.DataFrame({"sae": ["s", "s"], "feature": [1, 1], "label": ["x", "y"]}, schema=_S), "more than once"),
    (pl.DataFrame({"sae": [None], "feature": [1], "label": ["x"]}, schema=_S), "null"),
    (b"not parquet", "feature_stats"),
])
def test_read_labels_refuses_naming_the_file(tmp_path, frame, needle):
    path = tmp_path / "feature_stats.parquet"
    if isinstance(frame, bytes):
        path.write_bytes(frame)
    elif frame is not None:
        frame.write_parquet(path)
    with pytest.raises(SaeFormatError) as e:
        read_labels(tmp_path)
    assert str(path) in str(e.value) and needle in str(e.value) and "\n" not in str(e.value)
