"""featgraph neighbors: exact top-k against a float64 brute force with deterministic ties, vector files, hostile
inputs."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import save_file

import featgraph
from featgraph.compare.neighbors import load_index, top_k_neighbors
from tests.conftest import run_main, tiny_sae
from tests.hostile import assert_refused

D = 16


@pytest.fixture
def index_dir(tmp_path):
    """Three SAEs (widths 40, 24, 40 at d=16) with exact duplicate rows across and within SAEs (ties) and a zero
    row, indexed by `featgraph index`."""
    rng = np.random.default_rng(0)
    W = [rng.standard_normal((n, D)).astype(np.float32) for n in (40, 24, 40)]
    W[1][3] = W[0][7]  # same direction: cos ties across SAEs
    W[2][9] = 2 * W[0][7]
    W[2][11] = W[0][7]
    W[0][20] = W[0][7] * 0.5
    W[1][5] = 0.0  # no direction: never a result
    for i, w in enumerate(W):
        tiny_sae(W_dec=w, seed=i).save(tmp_path / "saes" / f"s{i}")
    rc, _, err = run_main("index", *(tmp_path / "saes" / f"s{i}" for i in range(3)), "--out", tmp_path / "ix", "-q")
    assert rc == 0, err
    return tmp_path / "ix"


def brute(index_dir, q: np.ndarray, k: int, exclude=None) -> list[tuple[str, int, float]]:
    """Every feature's float64 cos from the index's float32 unit rows, sorted by (-cos, SAE order, feature)."""
    from featgraph.matching import normalize_rows

    qu = normalize_rows(np.asarray(q, np.float64)[None])[0][0].astype(np.float64)
    rows = []
    for pos, ix in enumerate(load_index(index_dir)):
        cos = ix.unit.astype(np.float64) @ qu
        for f in range(ix.width):
            if ix.norms[f] != 0 and (pos, f) != exclude:
                rows.append((-cos[f], pos, f, ix.name))
    rows.sort()
    return [(name, f, -c) for c, _, f, name in rows[:k]]


def as_rows(t: pl.DataFrame) -> list[tuple[str, int, float]]:
    return list(zip(t["sae"], t["feature"], t["cos"], strict=True))


def check(got, want):
    assert [(s, f) for s, f, _ in got] == [(s, f) for s, f, _ in want]
    np.testing.assert_allclose([c for *_, c in got], [c for *_, c in want], rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 5, 17, 60, 103, 500])
def test_feature_query_equals_brute_force_with_deterministic_ties(index_dir, k):
    ixs = load_index(index_dir)
    assert [ix.name for ix in ixs] == ["s1", "s0", "s2"]  # the index's order: by width, then name
    q = ixs[1].unit[7]
    got = top_k_neighbors(ixs, q, k, exclude=(1, 7))
    want = brute(index_dir, q, k, exclude=(1, 7))
    check(as_rows(got), want)
    assert got["rank"].to_list() == list(range(1, len(want) + 1))
    if k >= 4:  # the four duplicates tie at cos 1 (to rounding): SAE order in the index, then feature id
        assert [(s, f) for s, f, _ in as_rows(got)[:4]] == [("s1", 3), ("s0", 20), ("s2", 9), ("s2", 11)]
    assert len(got) == min(k, 40 + 24 + 40 - 1 - 1)  # no cap: k above the candidates returns them all


@pytest.mark.parametrize("seed", range(4))
def test_random_vectors_equal_brute_force(index_dir, seed):
    q = np.random.default_rng(seed).standard_normal(D)
    for k in (1, 8, 30):
        check(as_rows(top_k_neighbors(load_index(index_dir), q, k)), brute(index_dir, q, k))


def test_cli_feature_and_vector_files_agree(index_dir, tmp_path):
    ix = load_index(index_dir)[0]
    assert ix.name == "s1"
    v = ix.unit[2].astype(np.float32) * 3.0
    np.save(tmp_path / "v.npy", v)
    save_file({"direction": torch.from_numpy(v[None])}, str(tmp_path / "v.safetensors"))
    torch.save(torch.from_numpy(v), tmp_path / "v.pt")
    rc, text, err = run_main("neighbors", index_dir, "--feature", "s1:2", "-k", "5", "--out", tmp_path / "o", "-q")
    assert rc == 0, err
    t = pl.read_parquet(tmp_path / "o" / "neighbors.parquet")
    assert ("s1", 2) not in [(s, f) for s, f, _ in as_rows(t)] and t.height == 5
    assert "rank" in text and text.count("\n") >= 5
    for f in ("v.npy", "v.safetensors", "v.pt"):
        rc, _, err = run_main("neighbors", index_dir, "--vector", tmp_path / f, "-k", "6", "-q")
        assert rc == 0, err
        r = featgraph.neighbors(index_dir, vector=tmp_path / f, k=6)
        assert as_rows(r.table)[0][:2] == ("s1", 2)  # the feature itself, not excluded for a vector
        got = as_rows(r.table)[1:]
        assert [g[:2] for g in got] == [w[:2] for w in as_rows(t)]  # cos: to the float32 rounding of the copy
        np.testing.assert_allclose([g[2] for g in got], t["cos"].to_list(), rtol=0, atol=1e-6)
    assert as_rows(featgraph.neighbors(str(index_dir), vector=v, k=6).table) == as_rows(r.table)


def test_hostile_inputs_are_one_line_errors(index_dir, tmp_path):
    np.save(tmp_path / "short.npy", np.ones(D + 1, np.float32))
    np.save(tmp_path / "nan.npy", np.full(D, np.nan, np.float32))
    np.save(tmp_path / "ints.npy", np.ones(D, np.int64))
    (tmp_path / "v.txt").write_text("1 2 3")
    save_file({"a": torch.ones(D), "b": torch.ones(D)}, str(tmp_path / "two.safetensors"))
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    os.mkfifo(tmp_path / "fifo.npy")
    ins = [index_dir, tmp_path / "short.npy"]
    for args, needles in [
        (["--feature", "nope:1"], ("nope", "s0")),
        (["--feature", "s1:24"], ("s1:24", "[0, 24)")),
        (["--feature", "s1:x"], ("s1:x",)),
        (["--feature", "s1"], ("SAE:ID",)),
        (["--feature", "s1:5"], ("all zeros",)),
        (["--feature", "s1:1", "-k", "0"], ("k must be",)),
        (["--feature", "s1:1", "--vector", tmp_path / "short.npy"], ("exactly one",)),
        ([], ("exactly one",)),
        (["--vector", tmp_path / "short.npy"], ("d_in=17", "d_in=16")),
        (["--vector", tmp_path / "nan.npy"], ("NaN",)),
        (["--vector", tmp_path / "ints.npy"], ("int64",)),
        (["--vector", tmp_path / "v.txt"], (".txt",)),
        (["--vector", tmp_path / "two.safetensors"], ("exactly one tensor",)),
        (["--vector", tmp_path / "bad.pt"], ("bad.pt",)),
        (["--vector", tmp_path / "fifo.npy"], ("fifo.npy", "not a regular file")),
        (["--vector", tmp_path / "absent.npy"], ("absent.npy", "not found")),
        (["--feature", "s0:1", "--out", index_dir / "s0"], ("--out",)),
    ]:
        assert_refused(["neighbors", index_dir, *args, "-q"], inputs=ins, needles=needles)
    assert_refused(["neighbors", tmp_path, "--feature", "s0:1"], inputs=ins, needles=("manifest.json",))
