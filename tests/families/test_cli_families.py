"""``featgraph families`` through the console entry point (tests.conftest.invoke) on real SAE folders."""

from __future__ import annotations

import json

import polars as pl
from click.testing import CliRunner

from featgraph.graphml import read_graphml
from featgraph.synthetic import planted_ladder
from tests.conftest import invoke, write_ladder
from tests.oracles import brute_pair, union_find_families


def test_families_on_a_folder_of_saes_writes_everything_and_prints_the_counts(tmp_path):
    decoders, _ = planted_ladder([32, 64, 128], 16, seed=1)
    root = write_ladder(tmp_path, decoders)
    out = tmp_path / "out"
    result = invoke("families", root, "--out", out, "--plots", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        ".featgraph-manifest.json",
        "config.json",
        "edges.parquet",
        "families.parquet",
        "features.parquet",
        "graph.graphml",
        "max_cos_hist.png",
        "summary.json",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["saes"]] == ["sae32", "sae64", "sae128"]
    assert [s["format"] for s in summary["saes"]] == ["featgraph"] * 3
    lines = result.stdout.splitlines()
    assert lines[0].startswith("tau = 0.7")
    assert lines[1].split() == [
        "pair",
        "features",
        "novel",
        "novel%",
        "edges",
        "families",
        "copy",
        "split",
        "merge",
        "n:m",
    ]
    for line, p, (a, b) in zip(
        lines[2:4], summary["pairs"], zip(decoders[:-1], decoders[1:], strict=True), strict=True
    ):
        want = brute_pair(a, b, 0.7)
        fams = union_find_families(want.edge_small, want.edge_large)
        k = p["families_by_kind"]
        assert line.split() == [
            p["small"],
            "->",
            p["large"],
            str(len(b)),
            str(int((want.max_cos <= 0.7).sum())),
            f"{100 * p['novel_share']:.1f}",
            str(want.edge_cos.size),
            str(len(fams)),
            str(k["copy"]),
            str(k["split"]),
            str(k["merge"]),
            str(k["n:m"]),
        ]
    t, big = summary["trees"], summary["trees"]["largest"]
    assert lines[4] == (
        f"splitting trees: {t['count']}, spanning all 3 widths: {t['by_widths_spanned'].get('3', 0)}; "
        f"largest: tree {big['tree']}, {big['features']} features, from {big['first_feature']}"
    )
    assert lines[-1].startswith("wrote features.parquet")
    assert "match" not in result.stderr  # --quiet: no progress bars
    g = read_graphml(out / "graph.graphml")
    assert g.number_of_nodes() == 32 + 64 + 128


def test_explicit_paths_names_and_tau(tmp_path):
    decoders, _ = planted_ladder([20, 50], 12, seed=2)
    root = write_ladder(tmp_path, decoders)
    out = tmp_path / "out"
    # paths in reverse width order: names go with the paths as given; the ladder is then sorted by width
    result = invoke(
        "families",
        root / "sae50",
        root / "sae20",
        "--name",
        "big",
        "--name",
        "small",
        "--out",
        out,
        "--tau",
        "0.5",
        "--method",
        "brute64",
        "--device",
        "cpu",
        "-q",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["names"] == ["small", "big"]
    assert summary["config"]["tau"] == 0.5 and summary["config"]["method"] == "brute64"
    assert summary["config"]["device"] == "cpu"
    edges = pl.read_parquet(out / "edges.parquet")
    assert edges.height == brute_pair(decoders[0], decoders[1], 0.5).edge_cos.size
    assert set(edges["small"]) == {"small"} and set(edges["large"]) == {"big"}
    assert "small -> big" in result.stdout


def test_readme_quick_start_finds_the_planted_novel_features(tmp_path, monkeypatch):
    """The README's commands in a fresh folder: make the synthetic ladder, then families --plots (twice)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "make_synthetic_ladder", Path(__file__).resolve().parents[2] / "examples" / "make_synthetic_ladder.py"
    )
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(make.main, ["--out", "ladders/synthetic"], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    for _ in range(2):  # the second run replaces the first run's output
        result = invoke("families", "ladders/synthetic", "--out", "out/families", "--plots")
        assert result.exit_code == 0, result.output
    planted = json.loads(Path("ladders/synthetic/planted.json").read_text())
    summary = json.loads(Path("out/families/summary.json").read_text())
    assert len(summary["pairs"]) == len(planted) == 3
    for p in summary["pairs"]:
        truth = planted[f"{p['small']}->{p['large']}"]
        assert (p["novel"], p["reconstruction"]) == (truth["novel"], truth["reconstruction"])
    assert Path("out/families/max_cos_hist.png").stat().st_size > 10_000


def test_help_lists_the_options():
    result = invoke("families", "--help")
    assert result.exit_code == 0
    for opt in ("--out", "--tau", "--index", "--plots", "--name", "--method", "--device", "--quiet"):
        assert opt in result.output


def test_index_gives_the_same_outputs_as_matching_from_the_weights(tmp_path):
    decoders, _ = planted_ladder([24, 60, 150], 16, seed=6, near_tau=0.7, n_near_tau=4)
    root = write_ladder(tmp_path, decoders)
    # a zero row goes through the index too (set after saving: random_sae_tensors needs nonzero rows)
    from safetensors.numpy import load_file, save_file

    weights = root / "sae60" / "sae.safetensors"
    tensors = load_file(str(weights))
    tensors["W_dec"][7] = 0.0
    save_file(tensors, str(weights))
    assert invoke("index", root, "--out", tmp_path / "idx", "-q").exit_code == 0
    with_index = invoke("families", root, "--index", tmp_path / "idx", "--out", tmp_path / "a", "-q")
    without = invoke("families", root, "--out", tmp_path / "b", "-q")
    assert with_index.exit_code == without.exit_code == 0, with_index.output + without.output
    assert with_index.stdout.splitlines()[:-1] == without.stdout.splitlines()[:-1]
    for name in ("features.parquet", "edges.parquet", "families.parquet", "graph.graphml"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    a, b = (json.loads((tmp_path / x / "summary.json").read_text()) for x in "ab")
    assert a["pairs"][0]["zero_norm"] == 1
    assert a["config"].pop("index") == str(tmp_path / "idx") and b["config"].pop("index") is None
    assert a == b
