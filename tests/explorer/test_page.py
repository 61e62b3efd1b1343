"""featgraph explore: the page's embedded data equals its inputs, the page is self-contained and deterministic, and
bad input is refused in one line with nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from featgraph.errors import ConfigError, SaeFormatError
from featgraph.explorer.config import ExploreConfig
from featgraph.explorer.data import page_data
from featgraph.explorer.page import render_page
from featgraph.explorer.run import run_explore

from ..conftest import run_main
from ..hostile import assert_refused
from .conftest import examples_folder

DATA_RE = re.compile(r'<script id="fg-data" type="application/json">(.*?)</script>', re.S)


def embedded(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    (blob,) = DATA_RE.findall(text)
    return json.loads(blob)


def explore(fam: Path, ex: Path, out: Path, *extra) -> dict:
    rc, stdout, stderr = run_main("explore", fam, "--examples", ex, "--out", out, "--quiet", *extra)
    assert rc == 0, stderr
    assert f"wrote {out}" in stdout
    return embedded(out)


def test_embedded_json_round_trips_to_the_inputs(explorer_inputs, tmp_path):
    fam, ex = explorer_inputs
    data = explore(fam, ex, tmp_path / "page.html")
    feats = pl.read_parquet(fam / "features.parquet")
    names = [s["name"] for s in data["saes"]]
    assert names == ["a48", "b96", "c192"] and [s["width"] for s in data["saes"]] == [48, 96, 192]
    for si, n in enumerate(names):
        f = feats.filter(pl.col("sae") == n).sort("feature")
        for col in ("parent", "family", "child_family", "tree"):
            assert data["features"][si][col] == f[col].to_list(), (n, col)
        assert data["features"][si]["max_cos"] == [None if v is None else round(v, 3) for v in f["max_cos"]]
    edges = pl.read_parquet(fam / "edges.parquet")
    for p, (a, b) in enumerate(zip(names[:-1], names[1:], strict=True)):
        e = edges.filter((pl.col("small") == a) & (pl.col("large") == b)).sort("large_feature", "small_feature")
        want = [v for r in e.iter_rows(named=True)
                for v in (r["small_feature"], r["large_feature"], round(r["cos"], 3))]
        assert data["edges"][p] == want
    fams = pl.read_parquet(fam / "families.parquet")
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in data["families"]] == [
        (names.index(r["small"]), r["family"], r["kind"], r["small_features"], r["large_features"])
        for r in fams.sort("small", "family").sort(pl.col("small").replace_strict({n: i for i, n in enumerate(names)}),
                                                   maintain_order=True).iter_rows(named=True)]
    # labels and top tokens from feature_stats, contexts from examples: token text exactly as written
    stats = pl.read_parquet(ex / "feature_stats.parquet")
    rows = pl.read_parquet(ex / "examples.parquet").filter(pl.col("rank") < 3)
    for r in stats.iter_rows(named=True):
        si = names.index(r["sae"])
        assert data["features"][si]["label"][r["feature"]] == r["label"]
        assert data["features"][si]["top"][r["feature"]] == r["top_tokens"][:5]
    n_checked = 0
    for r in rows.iter_rows(named=True):
        act, ctx, center, toks, digits = data["examples"][names.index(r["sae"])][str(r["feature"])][r["rank"]]
        lo = max(0, r["center"] - 6)
        assert [data["vocab"][i] for i in toks] == r["tokens"][lo:r["center"] + 7]
        assert ctx == r["context"] and center == r["center"] - lo and digits[center] == "9"
        assert act == pytest.approx(r["activation"], rel=1e-2) and len(digits) == len(toks)
        n_checked += 1
    assert n_checked == rows.height > 0
    # a feature that never fired has no contexts and an empty label
    assert "0" not in data["examples"][0] and data["features"][0]["label"][0] == ""


def test_contexts_and_window_bound_what_is_embedded(explorer_inputs, tmp_path):
    fam, ex = explorer_inputs
    data = explore(fam, ex, tmp_path / "page.html", "--contexts", "1", "--window", "2")
    lists = [v for per in data["examples"] for v in per.values()]
    assert lists and all(len(v) == 1 for v in lists)
    assert all(len(e[3]) <= 5 and e[4][e[2]] == "9" for v in lists for e in v)
    assert data["config"]["contexts"] == 1 and data["config"]["window"] == 2


def test_page_is_self_contained_escaped_and_deterministic(explorer_inputs, tmp_path):
    fam, ex = explorer_inputs
    explore(fam, ex, tmp_path / "a.html")
    explore(fam, ex, tmp_path / "b.html")
    a = (tmp_path / "a.html").read_bytes()
    assert a == (tmp_path / "b.html").read_bytes()
    text = a.decode("utf-8")
    # nothing is loaded from anywhere: no external scripts, styles, frames or images
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=|<link\b", text, re.I)
    # every script element closes where it should: the data's "</script>" token is escaped
    assert text.count("<script") == text.count("</script>") == 6
    assert "</script>" not in DATA_RE.findall(text)[0] and "\\u003c/script>" in text
    assert "cytoscape" in text and "dagre" in text


def test_render_page_escapes_the_title():
    page = render_page({"title": "<img src=x onerror=alert(1)>", "saes": []})
    assert "<img src=x" not in page and "&lt;img src=x" in page


def test_an_earlier_page_is_replaced_a_foreign_file_is_not(explorer_inputs, tmp_path):
    fam, ex = explorer_inputs
    out = tmp_path / "page.html"
    explore(fam, ex, out)
    explore(fam, ex, out, "--contexts", "1")  # an earlier explorer page: replaced
    assert embedded(out)["contexts"] == 1
    foreign = tmp_path / "notes.html"
    foreign.write_text("<html>my notes</html>")
    assert_refused(["explore", fam, "--examples", ex, "--out", foreign], inputs=[fam, ex, foreign],
                   needles=("notes.html", "not a featgraph explorer page"))
    assert foreign.read_text() == "<html>my notes</html>"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary was left"


def test_out_inside_an_input_or_a_folder_is_refused(explorer_inputs, tmp_path):
    fam, ex = explorer_inputs
    assert_refused(["explore", fam, "--examples", ex, "--out", fam / "page.html"], inputs=[fam, ex],
                   needles=("lies inside the input",))
    assert_refused(["explore", fam, "--examples", ex, "--out", ex], inputs=[fam, ex], code=2,
                   needles=("is a directory",))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match="is a folder; give the page's file name"):  # the library's own check
        run_explore(ExploreConfig(families=str(fam), examples=str(ex), out=str(tmp_path / "folder")))


def test_bad_inputs_are_refused_naming_the_file(explorer_inputs, tmp_path):
    fam, ex = explorer_inputs
    out = tmp_path / "page.html"
    missing = tmp_path / "nothing"
    assert_refused(["explore", fam, "--examples", missing, "--out", out], inputs=[fam, ex], out=out,
                   needles=("nothing", "not a folder"))
    other = examples_folder(tmp_path / "other", [("zzz", 4)])
    assert_refused(["explore", fam, "--examples", other, "--out", out], inputs=[fam, other], out=out,
                   needles=("zzz", "none of the families run's"))
    wide = examples_folder(tmp_path / "wide", [("a48", 50)])  # features 48, 49 do not exist in a48
    assert_refused(["explore", fam, "--examples", wide, "--out", out], inputs=[fam, wide], out=out,
                   needles=("examples.parquet", "feature 48 of a48", "0..47"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "examples.parquet").write_bytes(b"PAR1 not really")
    (broken / "feature_stats.parquet").write_bytes(b"")
    assert_refused(["explore", fam, "--examples", broken, "--out", out], inputs=[fam, broken], out=out,
                   needles=("examples.parquet", "not a readable Parquet file"))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    pl.DataFrame({"sae": ["a48"], "feature": [1]}).write_parquet(wrong / "examples.parquet")
    assert_refused(["explore", fam, "--examples", wrong, "--out", out], inputs=[fam, wrong], out=out,
                   needles=("examples.parquet", "missing or of the wrong type"))
    assert_refused(["explore", ex, "--examples", ex, "--out", out], inputs=[ex], out=out,
                   needles=("summary.json",))


def test_windows_that_disagree_with_their_tokens_are_refused(explorer_inputs, tmp_path):
    fam, ex = explorer_inputs
    bad = tmp_path / "bad"
    bad.mkdir()
    rows = pl.read_parquet(ex / "examples.parquet")
    rows.with_columns(pl.when(pl.col("rank") == 1).then(pl.lit(99, pl.Int16)).otherwise(pl.col("center"))
                      .alias("center")).write_parquet(bad / "examples.parquet")
    (bad / "feature_stats.parquet").write_bytes((ex / "feature_stats.parquet").read_bytes())
    with pytest.raises(SaeFormatError, match=r"examples.parquet: a48:1 rank 1: tokens \(11\), acts \(11\) and center"):
        page_data(fam, bad)


def test_bad_options_are_one_line_errors(explorer_inputs, tmp_path):
    fam, ex = explorer_inputs
    out = tmp_path / "page.html"
    assert_refused(["explore", fam, "--examples", ex, "--out", out, "--contexts", "0"], inputs=[fam, ex], out=out,
                   needles=("contexts must be an integer >= 1, got 0",))
    assert_refused(["explore", fam, "--examples", ex, "--out", out, "--window", "-1"], inputs=[fam, ex], out=out,
                   needles=("window must be an integer >= 0, got -1",))
    rc, stdout, _ = run_main("--help")
    assert rc == 0 and "explore" in stdout
