"""The MSE-L0 frontier (featgraph.report.frontier): interpolation on a planted curve, the choice of ladder widths, and
examples/frontier_smollm2.py end to end on tiny SAEs and stores (a Frankenstein run, then the frontier beside it)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from featgraph.errors import ConfigError
from featgraph.report.frontier import OUTSIDE, Frontier, bracketing_widths, equal_l0_table, frontiers
from featgraph.synthetic import planted_ladder
from tests.builders import projection_sae, store_of

from ..conftest import run_main
from ..hostile import tree_digest

ROOT = Path(__file__).resolve().parents[2]


# -- interpolation on a planted curve ----------------------------------------------------------------------------
def planted_curve(l0: float) -> float:
    """A monotone MSE(L0) that is *not* linear in log L0, so only the nodes are exact."""
    return 10.0 / (1.0 + l0) ** 0.5


def test_frontier_is_exact_at_nodes_linear_in_log_l0_between_and_refuses_outside():
    nodes = [160.0, 20.0, 50.0]  # given out of order: sorted by L0 inside
    f = Frontier.from_points(1152, nodes, [planted_curve(v) for v in nodes], [0.25, 0.8, 0.4])
    assert f.l0.tolist() == [20.0, 50.0, 160.0] and f.l1.tolist() == [0.8, 0.4, 0.25]
    for v in nodes:
        assert f.at(v) == planted_curve(v)  # exactly the measured value
    # between nodes: the straight line in log L0 through the two neighbours, computed here from its definition
    for v in (25.0, 49.9, 51.0, 100.0):
        a, b = (20.0, 50.0) if v < 50 else (50.0, 160.0)
        t = (math.log(v) - math.log(a)) / (math.log(b) - math.log(a))
        expected = (1 - t) * planted_curve(a) + t * planted_curve(b)
        assert f.at(v) == pytest.approx(expected, rel=1e-13)
        assert f.at(v) != pytest.approx(planted_curve(v), rel=1e-4)  # the curve is not the chord: no cheating
    # the geometric midpoint of two nodes is the arithmetic mean of their MSEs
    assert f.at(math.sqrt(20.0 * 50.0)) == pytest.approx((planted_curve(20.0) + planted_curve(50.0)) / 2, rel=1e-13)
    for v in (19.999, 160.001, 1e6, 0.0, -1.0, float("nan")):
        assert f.at(v) is None and not (0 < v and f.covers(v) and math.isfinite(v))


def test_single_point_frontier_covers_only_its_own_l0_and_bad_points_are_refused():
    f = Frontier.from_points(576, [30.0], [5.0], [0.8])
    assert f.at(30.0) == 5.0 and f.at(30.0001) is None and f.at(29.9999) is None
    with pytest.raises(ConfigError, match="same L0"):
        Frontier.from_points(576, [30.0, 30.0], [5.0, 4.0])
    with pytest.raises(ConfigError, match="L0 must be finite and > 0"):
        Frontier.from_points(576, [0.0, 30.0], [5.0, 4.0])
    with pytest.raises(ConfigError, match="matching non-empty"):
        Frontier.from_points(576, [10.0, 30.0], [5.0])


def test_equal_l0_table_reads_each_stage_off_its_bracketing_widths():
    points = pl.DataFrame({"width": [64, 64, 128, 128], "l0": [10.0, 40.0, 12.0, 60.0],
                           "mse": [4.0, 2.0, 3.0, 1.0], "l1": [0.8, 0.25, 0.8, 0.25]})
    stages = pl.DataFrame({"name": ["s0", "s1", "s2"], "width": [64, 90, 100], "l0": [40.0, 20.0, 70.0],
                           "mse": [2.0, 2.5, 0.9]})
    t = equal_l0_table(stages, frontiers(points))
    assert t.select("stage", "width").rows() == [("s0", 64), ("s1", 64), ("s1", 128), ("s2", 64), ("s2", 128)]
    s0 = t.row(0, named=True)
    assert s0["status"] == "measured" and s0["frontier_mse"] == 2.0 and s0["diff"] == 0.0 and s0["nearest"]
    s1 = t.filter(pl.col("stage") == "s1")
    want64 = 4.0 + (math.log(20) - math.log(10)) / (math.log(40) - math.log(10)) * (2.0 - 4.0)
    want128 = 3.0 + (math.log(20) - math.log(12)) / (math.log(60) - math.log(12)) * (1.0 - 3.0)
    assert s1["frontier_mse"].to_list() == pytest.approx([want64, want128], rel=1e-13)
    assert s1["diff"].to_list() == pytest.approx([2.5 - want64, 2.5 - want128], rel=1e-12)
    assert s1["nearest"].to_list() == [True, False]  # 90 is nearer 64 than 128 in log ratio
    # s2's L0 (70) lies beyond both widths' measured ranges: no number, the range instead
    s2 = t.filter(pl.col("stage") == "s2")
    assert s2["frontier_mse"].is_null().all() and s2["diff"].is_null().all()
    assert s2["width"].to_list() == [64, 128] and all(s.startswith(OUTSIDE) for s in s2["status"])
    assert "[10.0, 40.0]" in s2["status"][0] and "[12.0, 60.0]" in s2["status"][1]


def test_bracketing_widths_picks_the_neighbours_and_flags_the_nearest_in_log_ratio():
    ws = [576, 1152, 2304, 4608]
    assert bracketing_widths(1152, ws) == [(1152, True)]
    assert bracketing_widths(1427, ws) == [(1152, True), (2304, False)]
    assert bracketing_widths(2000, ws) == [(1152, False), (2304, True)]
    assert bracketing_widths(int(math.sqrt(1152 * 2304)) + 1, ws) == [(1152, False), (2304, True)]
    assert bracketing_widths(1629, [1152, 2304, 1152]) == [(1152, True), (2304, False)]  # 1629 < sqrt(1152*2304)
    assert bracketing_widths(100, ws) == [(576, True)]  # outside the widths: the end one only
    assert bracketing_widths(9000, ws) == [(4608, True)]
    assert bracketing_widths(24, [16, 36]) == [(16, True), (36, True)]  # 24/16 == 36/24: a tie flags both
    with pytest.raises(ConfigError):
        bracketing_widths(10, [])


# -- end to end ----------------------------------------------------------------------------------------------------
def _load_example():
    spec = importlib.util.spec_from_file_location("frontier_smollm2", ROOT / "examples" / "frontier_smollm2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_folder(folder: Path, decs: list[np.ndarray], l1: float, bias: float) -> Path:
    """A training-run-like folder: ``ladder/`` with one SAE per width recording its L1, and a seed control."""
    for i, W in enumerate(decs):
        sae = projection_sae(W, seed=i, bias=bias)
        sae.cfg.hook_name = "planted.hook"
        sae.cfg.extra = {"train": {"l1_coefficient": l1}}
        sae.save(folder / "ladder" / f"w{W.shape[0]}")
    ctrl = projection_sae(decs[0], seed=9, bias=bias)  # not a width of the frontier: must be skipped
    ctrl.cfg.extra = {"train": {"l1_coefficient": l1}}
    ctrl.save(folder / "ladder" / "seed-control" / "w32-seed1")
    return folder


@pytest.fixture
def runs_and_stores(tmp_path):
    decs, _ = planted_ladder([32, 64, 128], 64, seed=5)
    rng = np.random.default_rng(5)
    unit = decs[-1] / np.linalg.norm(decs[-1], axis=1, keepdims=True)

    def acts(n):
        code = rng.exponential(1.0, (n, 128)) * (rng.random((n, 128)) < 4.0 / 128)
        return (code @ unit + 0.05 * rng.standard_normal((n, 64))).astype(np.float32)

    import torch

    held = store_of(torch.from_numpy(acts(1500)), tmp_path / "heldout")
    train = store_of(torch.from_numpy(acts(3000)), tmp_path / "train")
    a = _run_folder(tmp_path / "run-a", decs, 0.8, bias=0.5)  # the Frankenstein's ladder
    b = _run_folder(tmp_path / "run-b", decs[1:], 0.25, bias=0.1)  # lower threshold: higher L0 at widths 64, 128
    frank = tmp_path / "frank"
    code, _, err = run_main("frankenstein", a / "ladder", "--acts", held.folder, "--train-acts", train.folder,
                            "--retrain-tokens", 2000, "--out", frank, "-q")
    assert code == 0, err
    return a, b, frank, held.folder, train.folder


def test_example_end_to_end_matches_the_frankenstein_control_and_reads_stages_off_the_frontier(
        runs_and_stores, tmp_path, capsys):
    a, b, frank, held, train = runs_and_stores
    out = tmp_path / "frontier"
    before = tree_digest(a, b, frank, held, train)
    assert _load_example().main(["--run", str(a), "--run", str(b / "ladder"), "--frankenstein", str(frank),
                                 "--out", str(out), "-q"]) == 0
    assert tree_digest(a, b, frank, held, train) == before  # inputs untouched
    text = capsys.readouterr().out
    points = pl.read_parquet(out / "frontier.parquet")
    assert sorted(zip(points["width"], points["l1"], strict=True)) == [(32, 0.8), (64, 0.25), (64, 0.8),
                                                                        (128, 0.25), (128, 0.8)]
    assert (points["n_fit"] + points["n_val"] == 2000).all()  # the Frankenstein's fitting tokens, not more
    # same decoder treatment as the Frankenstein control rows: the same numbers for the same SAEs
    comp = pl.read_parquet(frank / "comparison.parquet")
    ctrl = comp.filter(pl.col("kind") == "ladder (decoder retrained)")
    for r in points.filter(pl.col("l1") == 0.8).iter_rows(named=True):
        m = ctrl.filter(pl.col("name") == f"{r['name']}-retrained")
        assert m["mse"][0] == pytest.approx(r["mse"], rel=1e-9) and m["l0"][0] == pytest.approx(r["l0"], rel=1e-9)
    cfg = json.loads((out / "config.json").read_text())
    assert set(cfg["control_gap"]) == {"w32", "w64", "w128"} and max(cfg["control_gap"].values()) < 1e-9
    assert cfg["fit_tokens"] == 2000 and cfg["n_tokens_eval"] == 1500
    # lower L1 (threshold) fires more features
    for w in (64, 128):
        sub = points.filter(pl.col("width") == w).sort("l1")
        assert sub["l0"][0] > sub["l0"][1]
    # every stage read off its bracketing widths, each value recomputed here from the points table
    stages = comp.filter(pl.col("kind") == "frankenstein (retrained)")
    t = pl.read_parquet(out / "equal_l0.parquet")
    assert t["stage"].unique().len() == stages.height == 3
    for r in t.iter_rows(named=True):
        s = stages.filter(pl.col("name") == r["stage"]).row(0, named=True)
        assert (r["stage_l0"], r["stage_mse"], r["stage_features"]) == (s["l0"], s["mse"], s["width"])
        pts = points.filter(pl.col("width") == r["width"]).sort("l0")
        x, y = np.log(pts["l0"].to_numpy()), pts["mse"].to_numpy()
        if x[0] <= math.log(r["stage_l0"]) <= x[-1]:
            assert r["frontier_mse"] == pytest.approx(float(np.interp(math.log(r["stage_l0"]), x, y)), rel=1e-9)
            assert r["diff"] == pytest.approx(r["stage_mse"] - r["frontier_mse"], rel=1e-12, abs=1e-15)
        else:
            assert r["frontier_mse"] is None and r["status"].startswith(OUTSIDE)
    # intervals: the stages were rebuilt from the folder with the same MSEs; each inside row has an interval around
    # its difference, and a rerun with the same seed gives the same bytes
    assert set(cfg["stage_gap"]) == set(stages["name"]) and max(cfg["stage_gap"].values()) < 1e-9
    inside = t.filter(pl.col("frontier_mse").is_not_null())
    assert inside.height >= 3 and t.filter(pl.col("frontier_mse").is_null())["diff_lo"].is_null().all()
    for r in inside.iter_rows(named=True):
        assert r["diff_lo"] <= r["diff"] + 1e-12 and r["diff"] <= r["diff_hi"] + 1e-12 and 0 <= r["p_frank_better"] <= 1
    moved = inside.filter(pl.col("stage") != "frank-1sae-retrained")
    assert (moved["diff_hi"] > moved["diff_lo"]).all()  # a real spread where stage and frontier differ
    out2 = tmp_path / "frontier2"
    assert _load_example().main(["--run", str(a), "--run", str(b), "--frankenstein", str(frank), "--out", str(out2),
                                 "-q"]) == 0
    assert (out2 / "equal_l0.parquet").read_bytes() == (out / "equal_l0.parquet").read_bytes()
    stage0 = t.filter(pl.col("stage") == "frank-1sae-retrained").row(0, named=True)  # stage 0 is w32 itself
    assert stage0["width"] == 32 and stage0["status"] == "measured" and abs(stage0["diff"]) < 1e-9 * stage0["stage_mse"]
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "equal_l0.md").read_text()
    assert md.count("\n| frank-") == t.height and "frank-1sae-retrained" in text and "wrote" in text
    assert "95% interval" in md and "rebuilt stages" in text


def test_without_bootstrap_no_stage_is_rebuilt_and_no_interval_written(runs_and_stores, tmp_path):
    a, b, frank, _, _ = runs_and_stores
    out = tmp_path / "frontier"
    assert _load_example().main(["--run", str(a), "--run", str(b), "--frankenstein", str(frank), "--out", str(out),
                                 "--n-boot", "0", "-q"]) == 0
    t = pl.read_parquet(out / "equal_l0.parquet")
    assert "diff_lo" not in t.columns and t.height == 4
    assert json.loads((out / "config.json").read_text())["stage_gap"] == {}
    assert "95% interval" not in (out / "equal_l0.md").read_text()


def test_example_refuses_tokens_other_than_the_frankenstein_runs(runs_and_stores, tmp_path, capsys):
    a, b, frank, held, train = runs_and_stores
    out = tmp_path / "frontier"
    ex = _load_example()
    before = tree_digest(a, b, frank, held, train)
    for extra, needle in ((["--fit-tokens", "1000"], "--fit-tokens 1000 differs"),
                          (["--acts", str(train)], "--acts"),
                          (["--out", str(a / "ladder" / "x")], "")):
        args = ["--run", str(a), "--run", str(b), "--frankenstein", str(frank), "-q"]
        args += extra if "--out" in extra else [*extra, "--out", str(out)]
        assert ex.main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and needle in err and "Traceback" not in err
        assert not out.exists()
    assert tree_digest(a, b, frank, held, train) == before
    # two SAEs of one width at one L1 across the runs: no single frontier through them
    assert ex.main(["--run", str(a), "--run", str(a / "ladder"), "--frankenstein", str(frank), "--out", str(out)]) == 1
    assert "two SAEs of width" in capsys.readouterr().err and not out.exists()


def _fake_frankenstein(folder: Path, tmp_path: Path, *, parquet: bytes | None = None) -> Path:
    """A frankenstein-like folder written by hand: enough for the checks that run before any SAE is measured."""
    folder.mkdir()
    if parquet is None:
        pl.DataFrame({"kind": ["frankenstein (retrained)"], "name": ["frank-1sae-retrained"], "width": [32],
                      "l0": [2.0], "mse": [1.0]}).write_parquet(folder / "comparison.parquet")
    else:
        (folder / "comparison.parquet").write_bytes(parquet)
    (folder / "config.json").write_text(json.dumps({"command": "frankenstein", "acts": str(tmp_path / "held"),
                                                    "train_acts": str(tmp_path / "train"), "retrain_tokens": 100,
                                                    "n_tokens": None, "saes": []}))
    return folder


@pytest.mark.parametrize("case", ["garbage parquet", "no l1 recorded", "missing comparison"])
def test_bad_inputs_are_refused_in_one_line_naming_the_file(case, tmp_path, capsys):
    decs, _ = planted_ladder([32], 16, seed=1)
    sae = projection_sae(decs[0], seed=0)  # records no L1
    sae.save(tmp_path / "run" / "ladder" / "w32")
    frank = _fake_frankenstein(tmp_path / "frank", tmp_path, parquet=b"PAR1 not really" if case == "garbage parquet"
                               else None)
    if case == "missing comparison":
        (frank / "comparison.parquet").unlink()
    before = tree_digest(tmp_path / "run", frank)
    out = tmp_path / "out"
    assert _load_example().main(["--run", str(tmp_path / "run"), "--frankenstein", str(frank), "--out", str(out),
                                 "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    needle = {"garbage parquet": "comparison.parquet: not a readable Parquet table",
              "no l1 recorded": "w32: no L1 coefficient recorded",
              "missing comparison": "comparison.parquet: missing"}[case]
    assert needle in err
    assert not out.exists() and tree_digest(tmp_path / "run", frank) == before


@pytest.mark.parametrize("command, ok", [("frankenstein", True), ("report", True), ("families", False)])
def test_a_reports_frankenstein_folder_is_read_and_other_commands_are_refused(command, ok, tmp_path):
    """`featgraph report` writes the same Frankenstein folder under its own command name: it is read as one."""
    from featgraph.errors import SaeFormatError
    from featgraph.report.frontier import read_comparison

    frank = _fake_frankenstein(tmp_path / "frank", tmp_path)
    cfg = json.loads((frank / "config.json").read_text())
    (frank / "config.json").write_text(json.dumps({**cfg, "command": command}))
    if ok:
        table, got = read_comparison(frank)
        assert got["command"] == command and table["name"].to_list() == ["frank-1sae-retrained"]
    else:
        with pytest.raises(SaeFormatError, match="config.json: not a frankenstein config"):
            read_comparison(frank)


def test_the_folders_a_frankenstein_run_read_match_a_ladder_folder_or_a_reports_sae_folders(tmp_path):
    """report records each SAE folder, frankenstein the ladder folder: both name the ladder folder for the gap check."""
    from featgraph.report.frontier_run import folders_read

    ladder = tmp_path / "ladder"
    as_report = folders_read({"saes": [str(ladder / "w32"), str(ladder / "w64")]})
    as_frankenstein = folders_read({"saes": [str(ladder)]})
    assert str(ladder.resolve()) in as_report and str(ladder.resolve()) in as_frankenstein
    assert str((ladder / "w32").resolve()) in as_report
    assert folders_read({}) == []
