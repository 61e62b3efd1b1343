"""Hostile input files, values and arguments through the real console entry point (``featgraph.cli.main.main``).

Every case goes through :func:`tests.hostile.assert_refused`: exit 1 (2 for click usage errors), at most 3 stderr
lines and no traceback, every input and ``--out`` byte-identical, nothing left beside ``--out``. Cases cover
``index``, ``families``, ``stitch``, ``frankenstein``, ``report``, ``eval`` and ``collect``; ``eval`` and ``collect``
cases run with the model loader replaced by one that fails the test, proving they are refused before any model
loads. The size bombs also run in a subprocess whose peak RSS is asserted.

Everything is built in ``tmp_path`` from seeded arrays; nothing committed is modified.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from featgraph.activations.store import ActivationStore
from featgraph.synthetic import planted_ladder
from tests.conftest import run_main, tiny_sae
from tests.hostile import assert_refused, tree_digest

D_IN = 8
HOOK = "blocks.0.hook_resid_pre"


# -- builders ------------------------------------------------------------------------------------------------------
@pytest.fixture
def ladder(tmp_path) -> Path:
    """tmp/ladder/{w16,w32,w64}: featgraph-format SAEs at d_in 8 with a hook name (stitch needs encoders)."""
    decoders, _ = planted_ladder([16, 32, 64], D_IN, seed=3)
    root = tmp_path / "ladder"
    for i, W in enumerate(decoders):
        sae = tiny_sae(W_dec=W, seed=i)
        sae.cfg.hook_name = HOOK
        sae.save(root / f"w{W.shape[0]}")
    return root


def make_store(folder: Path, *, d_in: int = D_IN, rows: tuple[int, ...] = (100, 100)) -> Path:
    rng = np.random.default_rng(1)
    store = ActivationStore.create(folder, model="synthetic", hook_name=HOOK, d_in=d_in,
                                   tokens=np.zeros((4, 51), np.int32), exclude_bos=False, dtype="float32")
    for n in rows:
        store.write(rng.standard_normal((n, d_in)).astype(np.float32))
    store.mark_complete()
    return folder


@pytest.fixture
def store(tmp_path) -> Path:
    return make_store(tmp_path / "acts")


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: eval/collect cases must be refused before the 20-30 s model load."""
    import featgraph.activations
    import featgraph.activations.model

    def boom(*a, **k):
        pytest.fail("the model was loaded before the bad input was refused")

    monkeypatch.setattr(featgraph.activations, "load_model", boom)
    monkeypatch.setattr(featgraph.activations.model, "load_model", boom)


def meta_of(store: Path) -> dict:
    return json.loads((store / "meta.json").read_text())


def set_meta(store: Path, meta) -> None:
    (store / "meta.json").write_text(json.dumps(meta))


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def families(ladder_paths, out, *extra, needles=(), code=1, inputs=None):
    args = ["families", *ladder_paths, "--out", out, "-q", *extra]
    return assert_refused(args, inputs=inputs if inputs is not None else list(ladder_paths), out=out,
                          code=code, needles=needles)


# -- cfg.json: the checked JSON reader -----------------------------------------------------------------------------
JSON_CASES = {
    "nested_200000": ("[" * 200_000 + "]" * 200_000, ("nested 200000 levels",)),
    "int_5000_digits": ('{"d_in": ' + "7" * 5000 + "}", ("5000 digits",)),
    "nan_literal": ('{"d_in": NaN}', ("NaN",)),
    "infinity_literal": ('{"d_in": -Infinity}', ("-Infinity",)),
    "float_overflow": ('{"d_in": 1e999}', ("1e999",)),
    "duplicate_key": ('{"d_in": 8, "d_in": 9}', ("duplicate key 'd_in'",)),
    "top_level_list": ("[1, 2]", ("expected a JSON object, got list",)),
    "empty": ("", ("empty file",)),
    "truncated": ('{"d_in": 8, "n_feat', ("not valid JSON",)),
    # an unterminated string of escaped quotes: a depth scan that looks for each closing quote is quadratic here
    "unterminated_escapes": ('{"a": "' + '\\"' * 400_000, ("Unterminated string",)),
}


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_cfg_json(tmp_path, ladder, case):
    text, needles = JSON_CASES[case]
    cfg = ladder / "w32" / "cfg.json"
    cfg.write_text(text)
    families([ladder], tmp_path / "out", needles=(cfg, *needles))


def test_cfg_json_not_utf8(tmp_path, ladder):
    cfg = ladder / "w32" / "cfg.json"
    cfg.write_bytes(b'{"d_in": "\xff\xfe"}')
    families([ladder], tmp_path / "out", needles=(cfg, "not UTF-8", "0xff"))


def test_cfg_json_too_big_is_refused_unread(tmp_path, ladder):
    cfg = ladder / "w32" / "cfg.json"
    with open(cfg, "wb") as f:  # sparse: 65 MiB of size, no disk, refused from its size alone
        f.truncate(65 * 2**20)
    families([ladder], tmp_path / "out", needles=(cfg, "68157440 bytes"))


def test_cfg_d_in_as_string(tmp_path, ladder):
    cfg = ladder / "w32" / "cfg.json"
    obj = json.loads(cfg.read_text())
    obj["d_in"] = "8"
    cfg.write_text(json.dumps(obj))
    families([ladder], tmp_path / "out", needles=(cfg, "d_in"))


def test_cfg_json_is_a_fifo(tmp_path, ladder):
    """A FIFO where cfg.json should be would block a plain read forever (root reads anything; a FIFO it
    cannot read without a writer): the folder is not an SAE."""
    cfg = ladder / "w32" / "cfg.json"
    cfg.unlink()
    os.mkfifo(cfg)
    # the inputs watched are the regular files: hashing the FIFO would block the test itself
    families([ladder / "w16", ladder / "w32"], tmp_path / "out", needles=(ladder / "w32", "not an SAE"),
             inputs=[ladder / "w16", ladder / "w32" / "sae.safetensors"])


def test_out_manifest_nested(tmp_path, ladder):
    """The manifest featgraph looks for in an existing --out is a user's file too: read with the same guards."""
    from featgraph.io.output import MANIFEST_FILE

    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_FILE).write_text("[" * 200_000)
    families([ladder], out, needles=(out, "refusing"))


# -- safetensors: header validated before the library sees the file ------------------------------------------------
def _weights(ladder: Path) -> Path:
    return ladder / "w32" / "sae.safetensors"


def test_safetensors_truncated(tmp_path, ladder):
    w = _weights(ladder)
    w.write_bytes(w.read_bytes()[:-100])
    families([ladder], tmp_path / "out", needles=(w, "not a readable safetensors file", "truncated"))


def test_safetensors_zero_bytes(tmp_path, ladder):
    w = _weights(ladder)
    w.write_bytes(b"")
    families([ladder], tmp_path / "out", needles=(w, "0 bytes"))


def test_safetensors_header_length_huge(tmp_path, ladder):
    w = _weights(ladder)
    w.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    families([ladder], tmp_path / "out", needles=(w, f"header length {2**62}"))


def test_safetensors_header_is_a_list(tmp_path, ladder):
    w = _weights(ladder)
    w.write_bytes(safetensors_bytes([1, 2]))  # type: ignore[arg-type]
    families([ladder], tmp_path / "out", needles=(w, "header is a JSON list"))


def test_safetensors_header_nested(tmp_path, ladder):
    w = _weights(ladder)
    raw = b"[" * 100_000 + b"]" * 100_000
    w.write_bytes(struct.pack("<Q", len(raw)) + raw)
    families([ladder], tmp_path / "out", needles=(w, "nested 100000 levels"))


def test_safetensors_unknown_dtype(tmp_path, ladder):
    w = _weights(ladder)
    w.write_bytes(safetensors_bytes({"W_dec": {"dtype": "Q99", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8))
    families([ladder], tmp_path / "out", needles=(w, "unknown dtype 'Q99'"))


def test_safetensors_offsets_past_end(tmp_path, ladder):
    w = _weights(ladder)
    header = {"W_dec": {"dtype": "F32", "shape": [32, D_IN], "data_offsets": [0, 32 * D_IN * 4]}}
    w.write_bytes(safetensors_bytes(header, b"\0" * 64))
    families([ladder], tmp_path / "out", needles=(w, "data ends at byte 1024 of a 64-byte data section"))


def test_safetensors_offsets_disagree_with_shape(tmp_path, ladder):
    w = _weights(ladder)
    header = {"W_dec": {"dtype": "F32", "shape": [32, D_IN], "data_offsets": [0, 16]}}
    w.write_bytes(safetensors_bytes(header, b"\0" * 16))
    families([ladder], tmp_path / "out", needles=(w, "hold 16 bytes", "needs 1024"))


def test_safetensors_overlapping_tensors(tmp_path, ladder):
    w = _weights(ladder)
    header = {
        "W_dec": {"dtype": "F32", "shape": [32, D_IN], "data_offsets": [0, 1024]},
        "b_dec": {"dtype": "F32", "shape": [D_IN], "data_offsets": [1000, 1032]},
    }
    w.write_bytes(safetensors_bytes(header, b"\0" * 1032))
    families([ladder], tmp_path / "out", needles=(w, "overlap"))


@pytest.mark.parametrize("dtype", ["int32", "bool", "int8"])
def test_non_float_decoder_safetensors(tmp_path, ladder, dtype):
    w = _weights(ladder)
    t = load_file(str(w))
    t["W_dec"] = (t["W_dec"] > 0).astype(dtype)
    save_file(t, str(w))
    families([ladder], tmp_path / "out", needles=(w, "'W_dec'", f"dtype {dtype}"))


def test_non_float_encoder_in_stitch(tmp_path, ladder, store):
    w = ladder / "w16" / "sae.safetensors"
    t = load_file(str(w))
    t["W_enc"] = (t["W_enc"] * 10).astype(np.int32)
    save_file(t, str(w))
    out = tmp_path / "out"
    assert_refused(["stitch", ladder / "w16", ladder / "w32", "--acts", store, "--out", out, "-q"],
                   inputs=[ladder, store], out=out, needles=(w, "'W_enc'", "int32"))


def test_weights_file_is_a_dangling_link(tmp_path, ladder):
    w = _weights(ladder)
    w.unlink()
    w.symlink_to(tmp_path / "gone.safetensors")
    families([ladder / "w16", ladder / "w32"], tmp_path / "out", needles=(ladder / "w32", "not an SAE"))


# -- Gemma Scope npz: no pickle, sizes checked before allocating ---------------------------------------------------
def gemmascope(path: Path, W_dec: np.ndarray, **replace) -> Path:
    F, d = W_dec.shape
    rng = np.random.default_rng(0)
    arrays = {"W_enc": rng.standard_normal((d, F)).astype(np.float32), "b_enc": np.zeros(F, np.float32),
              "W_dec": W_dec, "b_dec": np.zeros(d, np.float32), "threshold": np.zeros(F, np.float32)}
    arrays.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def npy_member_claiming(shape: tuple[int, ...], data: bytes) -> bytes:
    """A .npy member whose header claims ``shape`` float64 but which holds only ``data``."""
    header = repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


@pytest.fixture
def npz_pair(tmp_path) -> tuple[Path, Path]:
    decoders, _ = planted_ladder([16, 32], D_IN, seed=2)
    return (gemmascope(tmp_path / "gs" / "a" / "params.npz", decoders[0]),
            gemmascope(tmp_path / "gs" / "b" / "params.npz", decoders[1]))


def test_npz_header_claims_4_tib(tmp_path, npz_pair):
    a, b = npz_pair
    with zipfile.ZipFile(b, "w") as z:  # W_dec's header claims 2**39 float64 = 4 TiB; the member holds 64 bytes
        z.writestr("W_dec.npy", npy_member_claiming((2**20, 2**19), b"\0" * 64))
    families([a, b], tmp_path / "out", needles=(b, "W_dec", "4398046511104 bytes"))


def test_npz_object_member_never_unpickled(tmp_path, npz_pair):
    a, b = npz_pair
    marker = tmp_path / "pwned"
    payload = np.array([_Marker(str(marker))], dtype=object)
    with open(b, "wb") as f:
        np.savez(f, W_dec=payload)
    families([a, b], tmp_path / "out", needles=(b, "dtype object", "no pickle"))
    assert not marker.exists()


def test_npz_truncated(tmp_path, npz_pair):
    a, b = npz_pair
    b.write_bytes(b.read_bytes()[:300])
    families([a, b], tmp_path / "out", needles=(b, "not a readable npz"))


def test_npz_int32_decoder(tmp_path, npz_pair):
    a, b = npz_pair
    gemmascope(b, np.ones((32, D_IN), np.int32))
    families([a, b], tmp_path / "out", needles=(b, "'W_dec'", "int32"))


def test_npz_missing_decoder(tmp_path, npz_pair):
    a, b = npz_pair
    with open(b, "wb") as f:
        np.savez(f, W_enc=np.zeros((D_IN, 32), np.float32))
    families([a, b], tmp_path / "out", needles=(b, "['W_dec'] missing"))


# -- ae.pt: weights_only, so a pickle payload is never executed ----------------------------------------------------
class _Marker:
    """Unpickling this creates a file: the proof that a payload ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_ae_pt_pickle_payload_never_runs(tmp_path, ladder):
    marker = tmp_path / "pwned"
    pt = tmp_path / "dl" / "ae.pt"
    pt.parent.mkdir()
    torch.save({"decoder.weight": torch.zeros(D_IN, 48), "evil": _Marker(str(marker))}, pt)
    err = families([ladder / "w16", pt], tmp_path / "out", needles=(pt, "not a readable torch state dict"),
                   inputs=[ladder, pt])
    assert not marker.exists(), err


def test_ae_pt_garbage(tmp_path, ladder):
    pt = tmp_path / "dl" / "ae.pt"
    pt.parent.mkdir()
    pt.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    families([ladder / "w16", pt], tmp_path / "out", needles=(pt, "not a readable torch state dict"),
             inputs=[ladder, pt])


def test_ae_pt_int_decoder(tmp_path, ladder):
    pt = tmp_path / "dl" / "ae.pt"
    pt.parent.mkdir()
    torch.save({"encoder.weight": torch.zeros(48, D_IN), "encoder.bias": torch.zeros(48),
                "decoder.weight": torch.ones(D_IN, 48, dtype=torch.int32), "bias": torch.zeros(D_IN)}, pt)
    families([ladder / "w16", pt], tmp_path / "out", needles=(pt, "'decoder.weight'", "int32"),
             inputs=[ladder, pt])


# -- SAE identity and widths ---------------------------------------------------------------------------------------
def test_same_sae_as_folder_and_weights_file(tmp_path, ladder):
    families([ladder / "w16", ladder / "w32", ladder / "w32" / "sae.safetensors"], tmp_path / "out",
             needles=("the same SAE is given twice", ladder / "w32"))


def test_same_sae_through_a_symlink(tmp_path, ladder):
    link = tmp_path / "alias"
    link.symlink_to(ladder / "w32")
    families([ladder / "w32", link], tmp_path / "out", needles=("the same SAE is given twice", link),
             inputs=[ladder, link])


def test_same_sae_through_dot_dot(tmp_path, ladder):
    families([ladder / "w32", ladder / "w16" / ".." / "w32"], tmp_path / "out",
             needles=("the same SAE is given twice",))


def test_same_sae_through_a_hard_link(tmp_path, ladder):
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(ladder / "w32" / "cfg.json", twin / "cfg.json")
    os.link(ladder / "w32" / "sae.safetensors", twin / "sae.safetensors")
    families([ladder / "w32", twin], tmp_path / "out", needles=("the same SAE is given twice", twin),
             inputs=[ladder, twin])


def test_ladder_folder_and_one_of_its_saes(tmp_path, ladder):
    families([ladder, ladder / "w16"], tmp_path / "out", needles=("the same SAE is given twice",))


def test_copy_of_an_sae_in_index(tmp_path, ladder):
    """index allows equal widths (each SAE is indexed alone) but a byte copy is still the same SAE."""
    copy = tmp_path / "copy"
    shutil.copytree(ladder / "w32", copy)
    out = tmp_path / "idx"
    assert_refused(["index", ladder / "w32", copy, "--out", out, "-q"], inputs=[ladder, copy], out=out,
                   needles=("identical decoders", copy))


def test_equal_widths_in_families(tmp_path, ladder):
    other = tmp_path / "other"
    tiny_sae(32, D_IN, seed=9).save(other)
    families([ladder / "w16", ladder / "w32", other], tmp_path / "out",
             needles=("both have width 32", "different widths"), inputs=[ladder, other])


def test_equal_widths_in_frankenstein(tmp_path, ladder, store):
    other = tmp_path / "other"
    sae = tiny_sae(32, D_IN, seed=9)
    sae.cfg.hook_name = HOOK
    sae.save(other)
    out = tmp_path / "out"
    assert_refused(["frankenstein", ladder / "w16", ladder / "w32", other, "--acts", store, "--out", out, "-q"],
                   inputs=[ladder, other, store], out=out, needles=("both have width 32",))


def test_stitch_same_sae_twice(tmp_path, ladder, store):
    out = tmp_path / "out"
    assert_refused(["stitch", ladder / "w32", ladder / "w32", "--acts", store, "--out", out, "-q"],
                   inputs=[ladder, store], out=out, needles=("the same SAE is given twice",))


def test_stitch_ladder_folder_as_small(tmp_path, ladder, store):
    out = tmp_path / "out"
    assert_refused(["stitch", ladder, ladder / "w64", "--acts", store, "--out", out, "-q"],
                   inputs=[ladder, store], out=out, needles=(f"SMALL {ladder} is a folder of 3 SAEs",))


def test_stitch_small_wider_than_large(tmp_path, ladder, store):
    out = tmp_path / "out"
    assert_refused(["stitch", ladder / "w64", ladder / "w16", "--acts", store, "--out", out, "-q"],
                   inputs=[ladder, store], out=out,
                   needles=("SMALL must be narrower than LARGE", "width 64", "width 16"))


def test_stitch_d_in_differs(tmp_path, ladder, store):
    other = tmp_path / "other"
    sae = tiny_sae(64, 6, seed=9)
    sae.cfg.hook_name = HOOK
    sae.save(other)
    out = tmp_path / "out"
    assert_refused(["stitch", ladder / "w16", other, "--acts", store, "--out", out, "-q"],
                   inputs=[ladder, other, store], out=out, needles=("d_in=6", "d_in=8"))


def test_stitch_one_argument_is_a_usage_error(tmp_path, ladder, store):
    out = tmp_path / "out"
    assert_refused(["stitch", ladder / "w16", "--acts", store, "--out", out], inputs=[ladder, store], out=out,
                   code=2, needles=("LARGE",))


# -- activation stores ---------------------------------------------------------------------------------------------
def stitch_refused(tmp_path, ladder, store, needles, extra_inputs=()):
    out = tmp_path / "out"
    return assert_refused(["stitch", ladder / "w16", ladder / "w32", "--acts", store, "--out", out, "-q"],
                          inputs=[ladder, store, *extra_inputs], out=out, needles=needles)


def test_store_meta_is_a_list(tmp_path, ladder, store):
    set_meta(store, [1, 2, 3])
    stitch_refused(tmp_path, ladder, store, (store / "meta.json", "expected a JSON object, got list"))


def test_store_meta_lacks_keys(tmp_path, ladder, store):
    meta = meta_of(store)
    del meta["shards"]
    set_meta(store, meta)
    stitch_refused(tmp_path, ladder, store, (store / "meta.json", "missing key 'shards'"))


def test_store_meta_wrong_type(tmp_path, ladder, store):
    meta = meta_of(store)
    meta["d_in"] = "8"
    set_meta(store, meta)
    stitch_refused(tmp_path, ladder, store, (store / "meta.json", "d_in='8'", "an integer >= 1"))


def test_store_meta_count_disagrees_with_shards(tmp_path, ladder, store):
    meta = meta_of(store)
    meta["n_tokens"] = 10**6
    set_meta(store, meta)
    stitch_refused(tmp_path, ladder, store, (store / "meta.json", "n_tokens=1000000", "hold 200 rows"))


def test_store_extra_keys_are_accepted(tmp_path, ladder, store):
    """Provenance or other keys a newer featgraph adds do not make a store unreadable."""
    meta = meta_of(store)
    meta["provenance"] = {"documents": ["a", "b"], "tokens_sha256": "x"}
    set_meta(store, meta)
    out = tmp_path / "out"
    code, _, err = run_main("stitch", ladder / "w16", ladder / "w32", "--acts", store, "--out", out, "-q")
    assert code == 0, err
    assert (out / "summary.json").is_file()


@pytest.mark.parametrize("shard", ["../outside.npy", "/etc/passwd", "sub/../../x.npy"])
def test_store_shard_path_outside(tmp_path, ladder, store, shard):
    meta = meta_of(store)
    meta["shards"][0]["file"] = shard
    set_meta(store, meta)
    stitch_refused(tmp_path, ladder, store, (store / "meta.json", "must be a file name inside the store"))


def test_store_shard_symlink_pointing_out(tmp_path, ladder, store):
    outside = tmp_path / "elsewhere.npy"
    shutil.copy(store / "acts_00000.npy", outside)
    (store / "acts_00000.npy").unlink()
    (store / "acts_00000.npy").symlink_to(outside)
    stitch_refused(tmp_path, ladder, store, ("acts_00000.npy", "outside the store"), extra_inputs=[outside])


def test_store_truncated_shard(tmp_path, ladder, store):
    shard = store / "acts_00001.npy"
    shard.write_bytes(shard.read_bytes()[:-40])
    stitch_refused(tmp_path, ladder, store, (shard, "truncated"))


def test_store_shard_dtype_differs(tmp_path, ladder, store):
    shard = store / "acts_00000.npy"
    np.save(shard, np.zeros((100, D_IN), np.float64))
    stitch_refused(tmp_path, ladder, store, (shard, "dtype float64, expected float32"))


def test_store_shard_shape_differs(tmp_path, ladder, store):
    shard = store / "acts_00000.npy"
    np.save(shard, np.zeros((100, D_IN + 1), np.float32))
    stitch_refused(tmp_path, ladder, store, (shard, "shape [100, 9], expected [100, 8]"))


def test_store_shard_is_a_pickle(tmp_path, ladder, store):
    shard = store / "acts_00000.npy"
    marker = tmp_path / "pwned"
    np.save(shard, np.array([_Marker(str(marker))], dtype=object), allow_pickle=True)
    stitch_refused(tmp_path, ladder, store, (shard, "dtype object", "no pickle"))
    assert not marker.exists()


def test_store_shard_missing(tmp_path, ladder, store):
    (store / "acts_00001.npy").unlink()
    stitch_refused(tmp_path, ladder, store, (store / "acts_00001.npy", "missing"))


def test_store_tokens_truncated(tmp_path, ladder, store):
    tokens = store / "tokens.npy"
    tokens.write_bytes(tokens.read_bytes()[:-4])
    stitch_refused(tmp_path, ladder, store, (tokens, "truncated"))


def test_store_meta_is_a_fifo(tmp_path, ladder, store):
    (store / "meta.json").unlink()
    os.mkfifo(store / "meta.json")
    out = tmp_path / "out"
    assert_refused(["stitch", ladder / "w16", ladder / "w32", "--acts", store, "--out", out, "-q"],
                   inputs=[ladder, *sorted(store.glob("*.npy"))], out=out,  # not the FIFO: hashing it would block
                   needles=(store / "meta.json", "not a regular file"))


def test_store_nan_rows(tmp_path, ladder, store):
    shard = store / "acts_00001.npy"
    x = np.load(shard)
    x[[7, 9], 3] = np.nan
    np.save(shard, x)
    stitch_refused(tmp_path, ladder, store, (shard, "2 rows with NaN/inf", "row 7"))


def test_store_d_in_differs_from_saes(tmp_path, ladder):
    wide = make_store(tmp_path / "wide", d_in=D_IN + 4)
    stitch_refused(tmp_path, ladder, wide, (wide, "12", "8"))


def test_frankenstein_bad_train_store(tmp_path, ladder, store):
    train = make_store(tmp_path / "train")
    set_meta(train, {"model": "x"})
    out = tmp_path / "out"
    assert_refused(["frankenstein", ladder, "--acts", store, "--train-acts", train, "--out", out, "-q"],
                   inputs=[ladder, store, train], out=out, needles=(train / "meta.json", "missing key"))


def test_report_bad_store(tmp_path, ladder, store):
    shard = store / "acts_00000.npy"
    shard.write_bytes(b"\x93NUMPY garbage")
    out = tmp_path / "out"
    assert_refused(["report", ladder, "--acts", store, "--out", out, "-q", "--no-frankenstein"],
                   inputs=[ladder, store], out=out, needles=(shard, "not a readable .npy array"))


def test_report_equal_widths(tmp_path, ladder, store):
    copy = tmp_path / "copy"
    shutil.copytree(ladder / "w32", copy)
    out = tmp_path / "out"
    assert_refused(["report", ladder, copy, "--acts", store, "--out", out, "-q", "--no-frankenstein"],
                   inputs=[ladder, copy, store], out=out, needles=("both have width 32",))


# -- saved indices (families --index) ------------------------------------------------------------------------------
@pytest.fixture
def index_dir(tmp_path, ladder) -> Path:
    out = tmp_path / "idx"
    code, _, err = run_main("index", ladder, "--out", out, "-q", "--device", "cpu")
    assert code == 0, err
    return out


def with_index(tmp_path, ladder, index_dir, needles):
    return families([ladder], tmp_path / "out", "--index", index_dir, needles=needles, inputs=[ladder, index_dir])


def test_index_faiss_garbage(tmp_path, ladder, index_dir):
    f = index_dir / "w32" / "index.faiss"
    f.write_bytes(struct.pack("<4siqqqBiQ", b"IxFI", 3, 5, 0, 0, 1, 0, 15) + b"\xff" * 60)  # 5 x 3, not 32 x 8
    with_index(tmp_path, ladder, index_dir, (f, "holds 5 x 3 rows", "expected 32 x 8"))


def test_index_faiss_truncated(tmp_path, ladder, index_dir):
    f = index_dir / "w32" / "index.faiss"
    f.write_bytes(f.read_bytes()[:-8])
    with_index(tmp_path, ladder, index_dir, (f, "truncated or from another SAE"))


def test_index_faiss_not_faiss(tmp_path, ladder, index_dir):
    f = index_dir / "w32" / "index.faiss"
    f.write_bytes(b"\x00" * 2000)
    with_index(tmp_path, ladder, index_dir, (f, "not a faiss IndexFlatIP file"))


def test_index_norms_wrong_shape(tmp_path, ladder, index_dir):
    f = index_dir / "w32" / "norms.npy"
    np.save(f, np.ones(31, np.float32))
    with_index(tmp_path, ladder, index_dir, (f, "shape [31], expected [32]"))


def test_index_meta_width_as_string(tmp_path, ladder, index_dir):
    f = index_dir / "w32" / "meta.json"
    meta = json.loads(f.read_text())
    meta["width"] = "32"
    f.write_text(json.dumps(meta))
    with_index(tmp_path, ladder, index_dir, (f, "width='32'"))


@pytest.mark.parametrize("folder", ["../ladder/w32", 7])
def test_index_manifest_folder_outside_or_not_a_string(tmp_path, ladder, index_dir, folder):
    f = index_dir / "manifest.json"
    manifest = json.loads(f.read_text())
    manifest["saes"][1]["folder"] = folder
    f.write_text(json.dumps(manifest))
    with_index(tmp_path, ladder, index_dir, (f,))


# -- eval and collect: refused before any model load ---------------------------------------------------------------
def test_eval_corrupt_sae_before_model(tmp_path, ladder, no_model):
    w = _weights(ladder)
    w.write_bytes(w.read_bytes()[:50])
    out = tmp_path / "out"
    assert_refused(["eval", ladder, "--out", out, "-q", "--tokens", "100"], inputs=[ladder], out=out,
                   needles=(w, "not a readable safetensors file"))


def test_eval_same_sae_twice_before_model(tmp_path, ladder, no_model):
    out = tmp_path / "out"
    assert_refused(["eval", ladder / "w16", ladder / "w16" / "cfg.json", "--out", out, "-q"], inputs=[ladder],
                   out=out, needles=("the same SAE is given twice",))


def test_eval_non_float_decoder_before_model(tmp_path, ladder, no_model):
    w = _weights(ladder)
    t = load_file(str(w))
    t["W_dec"] = t["W_dec"].astype(np.int32)
    save_file(t, str(w))
    out = tmp_path / "out"
    assert_refused(["eval", ladder, "--out", out, "-q"], inputs=[ladder], out=out, needles=(w, "int32"))


def test_collect_over_a_corrupt_store_before_model(tmp_path, store, no_model):
    set_meta(store, ["not", "a", "store"])
    assert_refused(["collect", "--out", store, "--tokens", "100", "-q"], inputs=[store],
                   needles=(store / "meta.json", "got list"))


def test_collect_over_a_truncated_shard_before_model(tmp_path, store, no_model):
    meta = meta_of(store)
    meta["complete"] = False
    set_meta(store, meta)
    shard = store / "acts_00000.npy"
    shard.write_bytes(shard.read_bytes()[:200])
    assert_refused(["collect", "--out", store, "--tokens", "100", "-q"], inputs=[store],
                   needles=(shard, "truncated"))


@pytest.mark.parametrize("args", [["--tokens", "0"], ["--context-size", "1"]])
def test_collect_bad_numbers_before_model(tmp_path, no_model, args):
    out = tmp_path / "out"
    assert_refused(["collect", "--out", out, "-q", *args], inputs=[], out=out, needles=("must be >= ",))


def test_families_bad_tau_is_a_usage_error(tmp_path, ladder):
    families([ladder], tmp_path / "out", "--tau", "abc", code=2, needles=("abc",))


# -- size bombs in a subprocess: bounded peak memory ---------------------------------------------------------------
_RUNNER = textwrap.dedent("""
    import contextlib, io, json, resource, sys, traceback
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))  # a regression: MemoryError, not a dead machine
    from featgraph.cli.main import main
    results = []
    for args in json.loads(sys.argv[1]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                main(args)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                code = -1
                err.write(traceback.format_exc())
        results.append([code, err.getvalue()])
    print(json.dumps(results))
""")


def _run_measured(cases: list[list[str]]) -> tuple[list, int]:
    """Run ``featgraph`` on each argument list in ONE fresh grandchild (the entry point in-process, so torch is
    imported once); return its results and its peak RSS in bytes. The middle process exists so that
    RUSAGE_CHILDREN, which keeps the maximum over every child ever waited for, measures this grandchild alone."""
    probe = textwrap.dedent("""
        import resource, subprocess, sys
        r = subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "null")
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """)
    res = subprocess.run([sys.executable, "-c", probe, _RUNNER, json.dumps(cases)], capture_output=True, text=True,
                         timeout=300)
    results, rss = res.stdout.strip().splitlines()[-2:]
    assert results != "null", res.stderr
    return json.loads(results), int(rss) * 1024


def test_size_bombs_fail_fast_in_bounded_memory(tmp_path, npz_pair):
    a, b = npz_pair
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("W_dec.npy", npy_member_claiming((2**20, 2**19), b"\0" * 64))  # claims 4 TiB
    st = tmp_path / "st"
    tiny_sae(16, D_IN).save(st / "big")
    header = {"W_dec": {"dtype": "F32", "shape": [2**31, 2**10], "data_offsets": [0, 2**43]}}  # 8 TiB
    (st / "big" / "sae.safetensors").write_bytes(safetensors_bytes(header, b"\0" * 64))
    deep = tmp_path / "deep"
    tiny_sae(32, D_IN).save(deep)
    (deep / "cfg.json").write_text("[" * 10**6)
    dev = tmp_path / "zero.npz"
    dev.symlink_to("/dev/zero")  # endless: zipfile would read it whole looking for the end record
    cases = [(b, "4398046511104 bytes"), (st / "big", "data ends at byte"), (deep, "nested 1000000"),
             (dev, "not a regular file")]
    inputs = [a, b, st, deep]
    before = tree_digest(*inputs)
    runs = [["families", str(a), str(bad), "--out", str(tmp_path / f"out{i}"), "-q"]
            for i, (bad, _) in enumerate(cases)]
    results, rss = _run_measured(runs)
    for (bad, needle), (code, err) in zip(cases, results, strict=True):
        assert code == 1 and needle in err and "Traceback" not in err, (bad, err)
        assert len(err.strip().splitlines()) == 1, err
    assert rss < 1.5 * 2**30, f"peak RSS {rss / 2**20:.0f} MiB"
    assert tree_digest(*inputs) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))]


# -- more of each command: the same readers behind index, frankenstein and report ----------------------------------
def index_refused(tmp_path, sae_paths, needles, inputs=None):
    out = tmp_path / "idx_out"
    return assert_refused(["index", *sae_paths, "--out", out, "-q", "--device", "cpu"],
                          inputs=inputs if inputs is not None else list(sae_paths), out=out, needles=needles)


def test_index_bool_decoder(tmp_path, ladder):
    w = _weights(ladder)
    t = load_file(str(w))
    t["W_dec"] = t["W_dec"] > 0
    save_file(t, str(w))
    index_refused(tmp_path, [ladder], (w, "dtype bool"))


def test_index_nested_cfg(tmp_path, ladder):
    cfg = ladder / "w64" / "cfg.json"
    cfg.write_text('{"a": ' * 5000 + "1" + "}" * 5000)
    index_refused(tmp_path, [ladder], (cfg, "nested 5000 levels"))


def test_index_ladder_and_its_sae(tmp_path, ladder):
    index_refused(tmp_path, [ladder, ladder / "w64" / "sae.safetensors"], ("the same SAE is given twice",))


def test_index_pickle_payload(tmp_path, ladder):
    marker = tmp_path / "pwned"
    pt = tmp_path / "evil.pt"
    torch.save({"W_dec": _Marker(str(marker))}, pt)
    index_refused(tmp_path, [ladder / "w16", pt], (pt, "not a readable torch state dict"), inputs=[ladder, pt])
    assert not marker.exists()


def test_frankenstein_nan_store(tmp_path, ladder, store):
    shard = store / "acts_00000.npy"
    x = np.load(shard)
    x[42] = np.inf
    np.save(shard, x)
    out = tmp_path / "out"
    assert_refused(["frankenstein", ladder, "--acts", store, "--out", out, "-q", "--retrain-tokens", "100"],
                   inputs=[ladder, store], out=out, needles=(shard, "NaN/inf", "row 42"))


def test_report_same_sae_twice(tmp_path, ladder, store):
    link = tmp_path / "alias"
    link.symlink_to(ladder / "w16")
    out = tmp_path / "out"
    assert_refused(["report", ladder, link, "--acts", store, "--out", out, "-q", "--no-frankenstein"],
                   inputs=[ladder, link, store], out=out, needles=("the same SAE is given twice",))


@pytest.mark.parametrize("kind", ["nested", "gzip_bomb"])
def test_release_registry_from_the_environment(tmp_path, ladder, monkeypatch, kind):
    """A registry named by FEATGRAPH_RELEASE_REGISTRY is a user's file: nested JSON or a gzip bomb (200 MiB of
    spaces in 200 KiB) gives one line, read through the checked reader and a capped gunzip."""
    import gzip

    reg = tmp_path / "registry.json"
    if kind == "nested":
        reg.write_text("[" * 200_000)
    else:
        reg.write_bytes(gzip.compress(b" " * (200 * 2**20), compresslevel=1))
    monkeypatch.setenv("FEATGRAPH_RELEASE_REGISTRY", str(reg))
    families([ladder / "w16", "some-release/some-sae"], tmp_path / "out", needles=("some-release/some-sae",),
             inputs=[ladder, reg])


def test_eval_copy_of_an_sae_before_model(tmp_path, ladder, no_model):
    """eval allows equal widths (SAEs of several seeds) but not a byte copy of one SAE under another path."""
    copy = tmp_path / "copy"
    shutil.copytree(ladder / "w16", copy)
    out = tmp_path / "out"
    assert_refused(["eval", ladder / "w16", copy, "--out", out, "-q"], inputs=[ladder, copy], out=out,
                   needles=("identical decoders", copy))
