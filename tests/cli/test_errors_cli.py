"""Malformed input through the real entry point (``featgraph.cli.main.main``).

Each case gives one line on stderr naming the file and the problem, exit code 1, no traceback, and no output
folder left behind.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pytest
from safetensors.numpy import load_file, save_file

from featgraph.synthetic import planted_ladder
from tests.conftest import run_main, write_ladder


@pytest.fixture
def ladder(tmp_path):
    decoders, _ = planted_ladder([16, 40], 8, seed=4)
    return write_ladder(tmp_path, decoders)


def assert_one_line_error(tmp_path, args, *needles):
    out = tmp_path / "out"
    code, stdout, stderr = run_main("families", *args, "--out", out, "-q")
    assert code == 1, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr + stdout
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    assert not out.exists()  # no partial output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # nor a temporary folder
    return lines[0]


def set_decoder(folder, W):
    path = folder / "sae.safetensors"
    tensors = load_file(str(path))
    tensors["W_dec"] = W.astype(np.float32)
    save_file(tensors, str(path))


def test_missing_path(tmp_path, ladder):
    assert_one_line_error(tmp_path, [ladder / "sae16", tmp_path / "nope"], tmp_path / "nope", "no such file")


def test_corrupt_weights_file(tmp_path, ladder):
    (ladder / "sae40" / "sae.safetensors").write_bytes(b"\x00garbage, not safetensors")
    assert_one_line_error(
        tmp_path, [ladder], ladder / "sae40" / "sae.safetensors", "not a readable safetensors"
    )


def test_missing_weights_file(tmp_path, ladder):
    (ladder / "sae40" / "sae.safetensors").unlink()
    (ladder / "sae40" / "params.npy").write_bytes(b"")  # something is there, but no SAE
    assert_one_line_error(
        tmp_path,
        [ladder / "sae16", ladder / "sae40"],
        ladder / "sae40",
        "neither an SAE nor a folder containing SAE subfolders; not an SAE in any format",
    )


def test_corrupt_config(tmp_path, ladder):
    (ladder / "sae40" / "cfg.json").write_text("{not json")
    assert_one_line_error(tmp_path, [ladder], ladder / "sae40" / "cfg.json", "not valid JSON")


def test_unknown_format(tmp_path, ladder):
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "weights.bin").write_bytes(b"1234")
    assert_one_line_error(
        tmp_path, [ladder / "sae16", odd], odd, "neither an SAE nor a folder containing SAE"
    )
    assert_one_line_error(tmp_path, [odd / "weights.bin"], odd / "weights.bin", "not an SAE in any format")


def test_folder_without_saes(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    assert_one_line_error(tmp_path, [empty], empty, "neither an SAE nor a folder containing SAE")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_decoder(tmp_path, ladder, bad):
    W = load_file(str(ladder / "sae40" / "sae.safetensors"))["W_dec"]
    W[[5, 9], 2] = bad
    set_decoder(ladder / "sae40", W)
    assert_one_line_error(tmp_path, [ladder], ladder / "sae40", "NaN/inf", "[5, 9]")


def test_d_in_mismatch(tmp_path, ladder):
    other = write_ladder(tmp_path / "o", [planted_ladder([24], 6, seed=0)[0][0]], names=["narrow"])
    assert_one_line_error(
        tmp_path,
        [ladder / "sae16", other / "narrow"],
        "d_in",
        other / "narrow",
        "d_in=6",
        ladder / "sae16",
        "d_in=8",
    )


@pytest.mark.parametrize("tau", ["0", "1", "1.5", "-0.2", "nan"])
def test_tau_outside_0_1(tmp_path, ladder, tau):
    assert_one_line_error(
        tmp_path, [ladder, "--tau", tau], "tau must be a number in (0, 1)", f"got {float(tau)}"
    )


def test_duplicate_names(tmp_path, ladder):
    assert_one_line_error(
        tmp_path,
        [ladder, "--name", "a", "--name", "a"],
        "duplicate SAE names ['a']",
        ladder / "sae16",
        ladder / "sae40",
    )
    # the same folder name under two parents clashes too
    twin = write_ladder(tmp_path / "t", [planted_ladder([16], 8, seed=9)[0][0]], names=["sae16"])
    assert_one_line_error(tmp_path, [ladder / "sae16", twin / "sae16"], "duplicate SAE names ['sae16']")


def test_wrong_number_of_names(tmp_path, ladder):
    assert_one_line_error(tmp_path, [ladder, "--name", "a"], "got 1 names for 2 SAEs")


def test_single_sae(tmp_path, ladder):
    assert_one_line_error(tmp_path, [ladder / "sae16"], "at least 2 SAEs", ladder / "sae16")


def test_out_is_a_foreign_folder(tmp_path, ladder):
    code, _, stderr = run_main("families", ladder, "--out", ladder, "-q")
    assert code == 1 and "is the input" in stderr  # featgraph.io.output: --out may never be an input
    assert sorted(p.name for p in ladder.iterdir()) == ["sae16", "sae40"]  # untouched


def test_unknown_method(tmp_path, ladder):
    assert_one_line_error(tmp_path, [ladder, "--method", "magic"], "method must be one of", "'magic'")


def test_all_zero_rows_are_reported_not_fatal(tmp_path, ladder, caplog):
    W = load_file(str(ladder / "sae40" / "sae.safetensors"))["W_dec"]
    W[[1, 7, 30]] = 0.0
    set_decoder(ladder / "sae40", W)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code, stdout, stderr = run_main("families", ladder, "--out", out, "-q")
    assert code == 0, stderr
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert (
        str(ladder / "sae40") in warnings[0] and "3 all-zero decoder rows (first: [1, 7, 30])" in warnings[0]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"][0]["zero_norm"] == 3
    assert summary["saes"][1]["zero_norm_rows"] == 3 and summary["saes"][1]["zero_norm_first"] == [1, 7, 30]
    f = pl.read_parquet(out / "features.parquet").filter(pl.col("zero_norm"))
    assert f["feature"].to_list() == [1, 7, 30]
    assert f[["max_cos", "parent", "novel", "family"]].null_count().row(0) == (3, 3, 3, 3)
    assert (
        pl.read_parquet(out / "edges.parquet")
        .filter((pl.col("large") == "sae40") & pl.col("large_feature").is_in([1, 7, 30]))
        .height
        == 0
    )


def test_console_script_in_a_subprocess(tmp_path, ladder):
    """The installed entry point, as a user runs it: the warning and the error are single stderr lines."""
    import subprocess
    import sys

    W = load_file(str(ladder / "sae40" / "sae.safetensors"))["W_dec"]
    W[4] = 0.0
    set_decoder(ladder / "sae40", W)
    cmd = [sys.executable, "-m", "featgraph.cli.main", "families", str(ladder), "-q"]
    ok = subprocess.run([*cmd, "--out", str(tmp_path / "ok")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("WARNING"), ok.stderr
    assert str(ladder / "sae40") in lines[0] and "1 all-zero decoder rows (first: [4])" in lines[0]
    bad = subprocess.run(
        [*cmd, "--out", str(tmp_path / "bad"), "--tau", "1.5"], capture_output=True, text=True, timeout=120
    )
    assert (bad.returncode, bad.stderr) == (1, "error: tau must be a number in (0, 1), got 1.5\n")
    assert not (tmp_path / "bad").exists()


def test_stale_or_missing_index(tmp_path, ladder):
    code, _, err = run_main("index", ladder, "--out", tmp_path / "idx", "-q")
    assert code == 0, err
    W = load_file(str(ladder / "sae40" / "sae.safetensors"))["W_dec"]
    W[0, 0] += 1.0  # the weights change after indexing
    set_decoder(ladder / "sae40", W)
    line = assert_one_line_error(
        tmp_path, [ladder, "--index", tmp_path / "idx"], tmp_path / "idx", "'sae40'", "current weights"
    )
    assert "rebuild it with `featgraph index`" in line
    assert_one_line_error(
        tmp_path, [ladder, "--index", tmp_path / "nothing"], tmp_path / "nothing" / "manifest.json"
    )
