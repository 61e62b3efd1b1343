"""``featgraph index`` through the console entry point (tests.conftest.invoke), on real SAE folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from featgraph.cli.main import main

from featgraph.index import load_ladder_index
from featgraph.ladder import load_ladder
from featgraph.synthetic import planted_ladder
from tests.conftest import invoke, write_ladder


def test_index_writes_one_folder_per_sae_manifest_and_config(tmp_path):
    decoders, _ = planted_ladder([32, 64, 128], 16, seed=1)
    root = write_ladder(tmp_path, decoders)
    out = tmp_path / "idx"
    result = invoke("index", root, "--out", out, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        ".featgraph-manifest.json",
        "config.json",
        "manifest.json",
        "sae128",
        "sae32",
        "sae64",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["device"] == "cpu" and config["names"] == ["sae32", "sae64", "sae128"]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "width", "d_in", "zero", "rows", "fingerprint"]
    assert [ln.split()[:3] for ln in lines[1:4]] == [
        ["sae32", "32", "16"],
        ["sae64", "64", "16"],
        ["sae128", "128", "16"],
    ]
    assert lines[-1].startswith("wrote 3 indices")
    assert result.stderr == ""  # --quiet: no progress bar
    ladder = load_ladder([root])
    loaded = load_ladder_index(ladder, out)
    for ix, W in zip(loaded, decoders, strict=True):
        np.testing.assert_allclose(ix.unit, W / np.linalg.norm(W, axis=1, keepdims=True), atol=1e-6)


def test_index_with_names_and_auto_device(tmp_path):
    decoders, _ = planted_ladder([16, 32], 8, seed=2)
    root = write_ladder(tmp_path, decoders)
    out = tmp_path / "idx"
    result = invoke("index", root / "sae16", root / "sae32", "--name", "a", "--name", "b", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["device"] in ("cpu", "cuda")
    names = sorted(p.name for p in out.iterdir())
    assert names == [".featgraph-manifest.json", "a", "b", "config.json", "manifest.json"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/nope"], "nope: no such file or folder"),
        (["{root}", "--name", "only-one"], "got 1 names for 2 SAEs"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys, args, message):
    decoders, _ = planted_ladder([16, 32], 8, seed=2)
    root = write_ladder(tmp_path, decoders)
    argv = ["index", *[a.format(tmp=tmp_path, root=root) for a in args], "--out", str(tmp_path / "idx"), "-q"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "idx").exists()  # nothing half-written
