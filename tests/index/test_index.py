"""SimilarityIndex: exact faiss search over unit rows, fingerprinted save/load, ladder index with manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from featgraph.errors import ConfigError, SaeFormatError, ShapeMismatchError, StaleIndexError
from featgraph.index import (
    MANIFEST_FILE,
    SimilarityIndex,
    build_ladder_index,
    folder_names,
    load_ladder_index,
    read_manifest,
)
from featgraph.ladder import Ladder, LadderEntry
from featgraph.synthetic import planted_ladder


def make_ladder(widths=(32, 64, 128), d=16, seed=1, names=None) -> Ladder:
    decoders, _ = planted_ladder(list(widths), d, seed=seed)
    names = names or [f"sae{w}" for w in widths]
    return Ladder(
        [LadderEntry(n, Path(f"/src/{n}"), "featgraph", W) for n, W in zip(names, decoders, strict=True)]
    )


def test_search_is_exact_cosine_over_normalised_rows():
    ladder = make_ladder()
    entry = ladder[1]
    entry.W_dec[5] = 0.0  # a dead row: cos 0 to everything
    ix = SimilarityIndex.build(entry, device="cpu")
    assert (ix.width, ix.d_in, ix.name) == (64, 16, "sae64")
    assert ix.fingerprint == entry.fingerprint()
    np.testing.assert_allclose(np.linalg.norm(ix.unit[ix.norms > 0], axis=1), 1.0, atol=1e-6)
    assert not ix.unit[5].any() and ix.norms[5] == 0
    rng = np.random.default_rng(0)
    q = rng.standard_normal((7, 16)) * 3.0  # queries need not be unit: search normalises them
    D, I = ix.search(q, 4)
    qu = q / np.linalg.norm(q, axis=1, keepdims=True)
    cos = qu @ (entry.W_dec / np.maximum(np.linalg.norm(entry.W_dec, axis=1, keepdims=True), 1e-30)).T
    want_I = np.argsort(-cos, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(I, want_I)
    np.testing.assert_allclose(D, np.take_along_axis(cos, want_I, 1), atol=1e-5)


def test_search_rejects_bad_queries_and_k():
    ix = SimilarityIndex.build(make_ladder()[0], device="cpu")
    with pytest.raises(ShapeMismatchError, match=r"\[2, 15\]"):
        ix.search(np.ones((2, 15)), 1)
    with pytest.raises(ConfigError, match="k must be in"):
        ix.search(np.ones((2, 16)), 0)


def test_save_load_round_trip_and_stale_fingerprint(tmp_path):
    entry = make_ladder()[2]
    ix = SimilarityIndex.build(entry, device="cpu")
    ix.save(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        ".featgraph-manifest.json", "index.faiss", "meta.json", "norms.npy"]
    back = SimilarityIndex.load(tmp_path / "a", expected_fingerprint=entry.fingerprint())
    np.testing.assert_array_equal(back.unit, ix.unit)
    np.testing.assert_array_equal(back.norms, ix.norms)
    assert (back.name, back.width, back.d_in, back.fingerprint) == (ix.name, 128, 16, ix.fingerprint)
    np.testing.assert_array_equal(back.search(entry.W_dec[:3], 2)[1], ix.search(entry.W_dec[:3], 2)[1])
    entry.W_dec[0, 0] += 1e-3  # the SAE changed after indexing
    with pytest.raises(StaleIndexError, match=r"a.*'sae128'.*rebuild"):
        SimilarityIndex.load(tmp_path / "a", expected_fingerprint=entry.fingerprint())


def test_load_reports_corrupt_or_inconsistent_files(tmp_path):
    ix = SimilarityIndex.build(make_ladder()[0], device="cpu")
    ix.save(tmp_path / "a")
    (tmp_path / "a" / "index.faiss").write_bytes(b"not an index")
    with pytest.raises(SaeFormatError, match="index.faiss"):
        SimilarityIndex.load(tmp_path / "a")
    ix.save(tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    meta["width"] = 33
    (tmp_path / "b" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SaeFormatError, match="33 x 16"):
        SimilarityIndex.load(tmp_path / "b")
    with pytest.raises(SaeFormatError, match="meta.json: file not found"):
        SimilarityIndex.load(tmp_path / "missing")


def test_ladder_index_round_trip_with_manifest(tmp_path):
    ladder = make_ladder(names=["small", "mid/x", "big"])
    built = build_ladder_index(ladder, tmp_path / "idx", device="cpu", progress=False)
    manifest = read_manifest(tmp_path / "idx")
    assert [m["name"] for m in manifest] == ["small", "mid/x", "big"]
    assert [m["folder"] for m in manifest] == ["small", "mid_x", "big"]
    assert [m["fingerprint"] for m in manifest] == [e.fingerprint() for e in ladder]
    assert all(m["source_format"] == "featgraph" and m["source_path"].startswith("/src/") for m in manifest)
    loaded = load_ladder_index(ladder, tmp_path / "idx")
    for a, b in zip(built, loaded, strict=True):
        np.testing.assert_array_equal(a.unit, b.unit)
        assert a.fingerprint == b.fingerprint
    # rebuilding gives byte-identical files (deterministic outputs)
    first = {
        p.relative_to(tmp_path / "idx"): p.read_bytes() for p in (tmp_path / "idx").rglob("*") if p.is_file()
    }
    build_ladder_index(ladder, tmp_path / "idx", device="cpu", progress=False)
    second = {
        p.relative_to(tmp_path / "idx"): p.read_bytes() for p in (tmp_path / "idx").rglob("*") if p.is_file()
    }
    assert first == second


def test_ladder_index_refuses_missing_and_stale_saes(tmp_path):
    ladder = make_ladder()
    build_ladder_index(Ladder(ladder.entries[:2]), tmp_path / "idx", device="cpu", progress=False)
    with pytest.raises(SaeFormatError, match=r"no SAE named 'sae128'.*\['sae32', 'sae64'\]"):
        load_ladder_index(ladder, tmp_path / "idx")
    ladder[0].W_dec[3] *= 2.0
    with pytest.raises(StaleIndexError, match=r"idx/sae32.*'sae32'"):
        load_ladder_index(Ladder(ladder.entries[:2]), tmp_path / "idx")
    with pytest.raises(SaeFormatError, match=MANIFEST_FILE):
        load_ladder_index(ladder, tmp_path / "nowhere")


def test_folder_names_are_safe_and_distinct():
    assert folder_names(["a", "a", "../x", "b c", ".."]) == ["a", "a-2", "_x", "b_c", "sae"]


def test_device_cuda_without_faiss_gpu_is_a_clear_error():
    import faiss

    if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
        pytest.skip("this faiss has a GPU")
    with pytest.raises(ConfigError, match="faiss-gpu"):
        SimilarityIndex.build(make_ladder()[0], device="cuda")
