"""featgraph.io.readers and the SAE-identity checks, from Python (the CLI side is tests/cli/test_hostile_inputs.py).

Valid files must still read exactly as the libraries read them (the guards refuse only what is broken), and each
guard is shown to fire on the smallest input that should trip it.
"""

from __future__ import annotations

import json
import struct
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from featgraph.activations.store import ActivationStore
from featgraph.errors import ConfigError, SaeFormatError, ShapeMismatchError
from featgraph.formats import load_decoder
from featgraph.io import arrays, readers
from featgraph.ladder import check_distinct_saes, load_ladder, load_saes, load_stitch_pair
from tests.conftest import tiny_sae


# -- JSON ----------------------------------------------------------------------------------------------------------
def test_json_depth_ignores_brackets_inside_strings():
    assert readers.json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert readers.json_depth(b'"[[[["') == 0
    assert readers.json_depth(b"[" * 65 + b"]" * 65) == 65


def test_read_json_accepts_ordinary_configs(tmp_path):
    obj = {"d_in": 768, "d_sae": 24576, "lr": 3e-4, "k": None, "seed": -1, "name": "[x]", "nested": {"a": [1, 2]},
           "big": 10**29}
    p = tmp_path / "cfg.json"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(obj).encode())  # a BOM, as some editors write
    assert readers.read_json(p) == obj
    assert readers.read_json(tmp_path / "absent.json", required=False) == {}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[" * 65 + "]" * 65, "nested 65 levels"),
        ('{"a": ' + "1" * 31 + "}", "31 digits"),
        ('{"a": Infinity}', "Infinity"),
        ('{"a": 1, "a": 1}', "duplicate key 'a'"),
        ('"just a string"', "got str"),
    ],
)
def test_read_json_guards(tmp_path, text, needle):
    p = tmp_path / "x.json"
    p.write_text(text)
    with pytest.raises(SaeFormatError, match=rf"x\.json: .*{needle}"):
        readers.read_json(p)


def test_read_json_refuses_a_folder_and_a_dangling_link(tmp_path):
    (tmp_path / "d.json").mkdir()
    with pytest.raises(SaeFormatError, match=r"d\.json: is a folder"):
        readers.read_json(tmp_path / "d.json")
    (tmp_path / "l.json").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SaeFormatError, match=r"l\.json: a symbolic link to nothing"):
        readers.read_json(tmp_path / "l.json")


# -- safetensors ---------------------------------------------------------------------------------------------------
def test_safetensors_valid_files_read_exactly(tmp_path):
    t = {"W_dec": torch.randn(5, 3).to(torch.bfloat16), "b": torch.arange(3, dtype=torch.int64),
         "empty": torch.zeros(0, 4)}
    p = tmp_path / "x.safetensors"
    save_file(t, str(p), metadata={"format": "pt"})
    header = readers.safetensors_header(p)
    assert sorted(header) == ["W_dec", "b", "empty"] and header["W_dec"]["dtype"] == "BF16"
    got = readers.read_safetensors(p)
    assert all(torch.equal(got[k], v) for k, v in load_file(str(p)).items())


def test_safetensors_trailing_bytes_are_not_tensors(tmp_path):
    """Offsets past the data section are refused even when the file is long enough in total."""
    raw = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}).encode()
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 16)
    with pytest.raises(SaeFormatError, match="data ends at byte 24 of a 16-byte data section"):
        readers.safetensors_header(p)


# -- npy / npz -----------------------------------------------------------------------------------------------------
def test_npz_reads_fortran_order_and_compressed_members(tmp_path):
    a = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    p = tmp_path / "x.npz"
    np.savez_compressed(p, a=a, b=np.ones(2, np.float64))
    got = arrays.read_npz(p, ["a", "b"])
    assert np.array_equal(got["a"], a) and got["b"].dtype == np.float64


def test_npz_header_and_zip_size_disagree(tmp_path):
    p = tmp_path / "x.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.npy", _npy_bytes(np.zeros(4, np.float32))[:-4])  # header says 16 data bytes, holds 12
    with pytest.raises(SaeFormatError, match=r"x\.npz\[a\]: header claims shape \[4\] float32 \(16 bytes\)"):
        arrays.read_npz(p, ["a"])


def test_npy_shape_dtype_and_size_checks(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((3, 2), np.float32))
    assert arrays.read_npy(p, shape=(None, 2), dtype="float32").shape == (3, 2)
    with pytest.raises(SaeFormatError, match=r"shape \[3, 2\], expected \[3, 5\]"):
        arrays.read_npy(p, shape=(3, 5))
    p.write_bytes(p.read_bytes() + b"\0")
    with pytest.raises(SaeFormatError, match="trailing data"):
        arrays.read_npy(p)


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


# -- faiss ---------------------------------------------------------------------------------------------------------
def test_flat_ip_check_accepts_what_faiss_writes(tmp_path):
    import faiss

    ix = faiss.IndexFlatIP(6)
    ix.add(np.random.default_rng(0).standard_normal((9, 6)).astype(np.float32))
    p = tmp_path / "i.faiss"
    faiss.write_index(ix, str(p))
    arrays.check_flat_ip_file(p, d=6, ntotal=9)
    with pytest.raises(SaeFormatError, match="expected 10 x 6"):
        arrays.check_flat_ip_file(p, d=6, ntotal=10)


# -- SAE identity, widths and the stitch pair ----------------------------------------------------------------------
@pytest.fixture
def saes(tmp_path):
    for f in (8, 16, 32):
        tiny_sae(f, 4, seed=f).save(tmp_path / f"w{f}")
    return tmp_path


def test_identity_is_the_weights_file(saes):
    ids = check_distinct_saes([saes / "w8", saes / "w16" / "sae.safetensors"])
    assert ids[0].weights == (saes / "w8" / "sae.safetensors").resolve()
    with pytest.raises(ConfigError, match="the same SAE is given twice"):
        check_distinct_saes([saes / "w8" / "cfg.json", saes / "w8"])


def test_equal_widths_per_command(saes, tmp_path):
    tiny_sae(16, 4, seed=99).save(tmp_path / "other16")
    paths = [saes / "w8", saes / "w16", tmp_path / "other16"]
    with pytest.raises(ConfigError, match="both have width 16"):
        load_ladder(paths)
    with pytest.raises(ConfigError, match="both have width 16"):
        load_saes(paths)
    assert [e.width for e in load_ladder(paths, distinct_widths=False)] == [8, 16, 16]  # index: allowed
    loaded, names = load_saes(paths, distinct_widths=False)  # eval-style: allowed
    assert names == ["w8", "w16", "other16"] and [s.n_features for s in loaded] == [8, 16, 16]


def test_stitch_pair_api(saes):
    (small, large), names = load_stitch_pair(saes / "w8", saes / "w32")
    assert (small.n_features, large.n_features, names) == (8, 32, ["w8", "w32"])
    with pytest.raises(ConfigError, match="SMALL must be narrower than LARGE.*width 32.*width 8"):
        load_stitch_pair(saes / "w32", saes / "w8")
    with pytest.raises(ConfigError, match=r"LARGE .* is a folder of 3 SAEs"):
        load_stitch_pair(saes / "w8", saes)


def test_non_float_decoder_refused_from_python(tmp_path):
    sae = tiny_sae(8, 4)
    sae.save(tmp_path / "s")
    w = tmp_path / "s" / "sae.safetensors"
    t = load_file(str(w))
    t["W_dec"] = t["W_dec"].to(torch.int32)
    save_file(t, str(w))
    with pytest.raises(Exception, match="tensor 'W_dec' has dtype int32") as e:
        load_decoder(tmp_path / "s")
    assert str(w) in str(e.value)


# -- activation store ----------------------------------------------------------------------------------------------
def test_store_d_in_check_and_extra_meta_keys(tmp_path):
    st = ActivationStore.create(tmp_path / "s", model="m", hook_name="h", d_in=4, tokens=np.zeros((2, 3)),
                                exclude_bos=False, dtype="float32", extra={"provenance": {"docs": ["a"]}})
    st.write(np.ones((5, 4), np.float32), contexts_done=1)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    meta["a_future_key"] = [1, 2]
    (tmp_path / "s" / "meta.json").write_text(json.dumps(meta))
    again = ActivationStore(tmp_path / "s")  # extra keys are kept, and writing resumes after the first shard
    again.write(np.zeros((3, 4), np.float32), contexts_done=2)
    assert ActivationStore(tmp_path / "s").read().shape == (8, 4)
    again.check_d_in(4, "an SAE")
    with pytest.raises(ShapeMismatchError, match=r"d_in=4, but SAE x has d_in=6"):
        again.check_d_in(6, "SAE x")


def test_npz_decompression_bomb_is_refused_before_inflating(tmp_path):
    """Header and zip directory agree on 256 MiB of zeros that deflate to ~256 KiB: refused from the sizes."""
    p = tmp_path / "bomb.npz"
    n = 2**25  # float64 -> 256 MiB
    header = repr({"descr": "<f8", "fortran_order": False, "shape": (n,)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z, z.open("W_dec.npy", "w",
                                                                                force_zip64=True) as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header)
        chunk = bytes(2**22)
        for _ in range(n * 8 // len(chunk)):
            f.write(chunk)
    assert p.stat().st_size < 2**20
    with pytest.raises(SaeFormatError, match=r"bomb\.npz\[W_dec\]: \d+ compressed bytes claim to expand"):
        arrays.read_npz(p, ["W_dec"])


def test_headers_with_a_million_dimensions_are_refused_quickly(tmp_path):
    """prod() over a hostile million-entry shape multiplies ever-growing integers: refused from its length."""
    raw = json.dumps({"W": {"dtype": "F32", "shape": [2] * 10**6, "data_offsets": [0, 8]}}).encode()
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    with pytest.raises(SaeFormatError, match="shape has 1000000 dimensions"):
        readers.safetensors_header(p)
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (1,) * 70}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    q = tmp_path / "x.npy"
    q.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 4)
    with pytest.raises(SaeFormatError, match="70 dimensions"):
        arrays.read_npy(q)
