"""featgraph against SAEs written and run by the real libraries (SAELens, sparsify, dictionary_learning, Gemma
Scope via SAELens's loader), and featgraph's writers against those libraries' default loaders.

The fixtures and the libraries' outputs were made by ``tests/fixtures/real_libs/make_fixtures.py`` (run in
throwaway venvs; the libraries are not featgraph dependencies); ``RESULTS.md`` there has the measured table.
Here, without the libraries: every fixture's decoder rows, encode and decode must equal the library's recorded
outputs, or the file must be refused naming the flag; every featgraph writer must still write the committed
file the library was run on (a writer change fails here: re-run the script); hostile cfg values are refused
through the CLI with one line naming the file, key and value.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from featgraph import formats
from featgraph.errors import UnsupportedError
from featgraph.formats import load_decoder, load_sae
from featgraph.sae import Sae
from tests.conftest import tiny_sae
from tests.hostile import assert_refused

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "real_libs"
FORWARD = sorted(p.name for p in ROOT.iterdir() if (p / "library.json").is_file())
REVERSE = sorted(p.name for p in (ROOT / "reverse").iterdir() if (p / "library.json").is_file())
# fixtures featgraph must refuse to encode with, and the flag the one-line message must name
REFUSED = {
    "saelens-layer_norm": "normalize_activations='layer_norm'",
    "saelens-expected_average_only_in": "normalize_activations='expected_average_only_in'",
}
TRANSCODERS = {"sparsify-transcoder"}
# fixtures whose reader folds decoder norms into the encoder, as the library does at load (rows become unit)
FOLDED = {"saelens-topk-rescale", "dictionary_learning-autoencoder"}
WRITERS = {"saelens": formats.save_saelens, "sparsify": formats.save_sparsify,
           "dictionary_learning": formats.save_dictionary_learning, "gemmascope": formats.save_gemmascope}


def _expected(folder: Path) -> dict[str, torch.Tensor]:
    with np.load(folder / "expected.npz", allow_pickle=False) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


def _raw_decoder_rows(folder: Path) -> np.ndarray:
    """The decoder exactly as the library stored it, rows = features, read here independently of featgraph."""
    if (folder / "sae_weights.safetensors").is_file():
        return load_file(str(folder / "sae_weights.safetensors"))["W_dec"].numpy()
    if (folder / "sae.safetensors").is_file():
        return load_file(str(folder / "sae.safetensors"))["W_dec"].numpy()
    if (folder / "ae.pt").is_file():
        state = torch.load(folder / "ae.pt", weights_only=True)
        return (state["W_dec"] if "W_dec" in state else state["decoder.weight"].T).numpy()
    with np.load(folder / "params.npz", allow_pickle=False) as z:
        return z["W_dec" if "W_dec" in z.files else "w_dec"]


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    # float32 arithmetic in a different order (folded weights, sparse decoders): 1e-5 of the values' scale
    scale = float(want.abs().max()) or 1.0
    torch.testing.assert_close(got, want, atol=1e-5 * scale, rtol=1e-5, msg=lambda m: f"{what}: {m}")


def _unit(W: np.ndarray) -> np.ndarray:
    return W / np.linalg.norm(W, axis=1, keepdims=True)


def test_the_fixture_set_is_complete_and_meaningful():
    want = {"saelens-standard", "saelens-topk", "saelens-topk-rescale", "saelens-jumprelu", "saelens-layer_norm",
            "sparsify-topk", "sparsify-transcoder", "dictionary_learning-autoencoder", "dictionary_learning-topk",
            "dictionary_learning-batchtopk", "dictionary_learning-jumprelu", "gemmascope-upper",
            "gemmascope-lower"}
    assert want <= set(FORWARD)
    assert {f"{fmt}-{a}" for fmt, a in [("saelens", "relu"), ("saelens", "topk"), ("saelens", "jumprelu"),
                                        ("sparsify", "topk"), ("dictionary_learning", "relu"),
                                        ("dictionary_learning", "topk"), ("dictionary_learning", "jumprelu"),
                                        ("gemmascope", "jumprelu")]} <= set(REVERSE)
    for name in FORWARD:  # non-unit decoder rows, so that a missed or wrong norm fold shows
        norms = np.linalg.norm(_raw_decoder_rows(ROOT / name), axis=1)
        assert norms.min() < 0.9 and norms.max() > 1.1, name
        exp = _expected(ROOT / name)
        assert (exp["encode"] > 0).any() and (exp["encode"] == 0).any(), name  # sparse, not dead
    with np.load(ROOT / "gemmascope-lower" / "params.npz") as z:
        assert {"w_enc", "w_dec"} <= set(z.files) and "W_enc" not in z.files


@pytest.mark.parametrize("name", FORWARD)
def test_featgraph_reads_the_library_file_as_the_library_runs_it(name):
    folder = ROOT / name
    info = json.loads((folder / "library.json").read_text())
    assert info["variant"] and info["version"]
    raw = _raw_decoder_rows(folder)
    _, W = load_decoder(folder)
    # decoder directions are the library's in every case (matching is safe), norms too unless folded
    np.testing.assert_allclose(_unit(W), _unit(raw), atol=1e-6)
    if name in FOLDED:
        np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.0, atol=1e-5)
    else:
        assert np.array_equal(W, raw)
    if name in REFUSED:
        with pytest.raises(UnsupportedError) as err:
            load_sae(folder)
        msg = str(err.value)
        assert REFUSED[name] in msg and str(folder) in msg and "\n" not in msg
        return
    if name in TRANSCODERS:
        with pytest.raises(UnsupportedError, match="transcode=true"):
            load_sae(folder)
    sae = load_sae(folder, allow_transcoder=name in TRANSCODERS)
    assert np.array_equal(sae.W_dec.detach().numpy(), W)  # load_decoder gives the rows load_sae uses
    exp = _expected(folder)
    with torch.no_grad():
        _close(sae.encode(exp["x"]), exp["encode"], f"{name} encode")
        _close(sae.decode(exp["encode"]), exp["decode"], f"{name} decode")
        _close(sae(exp["x"]).x_hat, exp["forward"], f"{name} forward")


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix == ".pt":
        return torch.load(path, weights_only=True)
    with np.load(path, allow_pickle=False) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


@pytest.mark.parametrize("name", REVERSE)
def test_writer_output_is_what_the_library_was_run_on(tmp_path, name):
    """Re-write the source SAE with the current writer: the file must equal the committed one that the library's
    default loader read (else the writer changed: re-run make_fixtures.py and review RESULTS.md); then featgraph
    must run that file as the library did, and the library's function must be the source SAE's."""
    folder = ROOT / "reverse" / name
    fmt, arch = name.rsplit("-", 1)
    source = Sae.load(ROOT / "reverse" / f"source-{arch}")
    target = tmp_path / "params.npz" if fmt == "gemmascope" else tmp_path / "w"
    WRITERS[fmt](source, target)
    # featgraph's own dot-named bookkeeping (the output manifest) is not part of the format
    written = sorted(p.name for p in (tmp_path if fmt == "gemmascope" else target).iterdir()
                     if not p.name.startswith("."))
    assert written, f"{name}: the writer wrote nothing"
    for fname in written:
        new, old = (tmp_path if fmt == "gemmascope" else target) / fname, folder / fname
        assert old.is_file(), f"{name}: the writer now writes {fname}; re-run make_fixtures.py"
        if fname.endswith(".json"):
            assert json.loads(new.read_text()) == json.loads(old.read_text()), \
                f"{name}: {fname} changed; re-run make_fixtures.py"
            continue
        a, b = _tensors(new), _tensors(old)
        assert sorted(a) == sorted(b), f"{name}: tensors changed; re-run make_fixtures.py"
        for k in a:
            assert a[k].dtype == b[k].dtype, f"{name}: {k} dtype changed; re-run make_fixtures.py"
            torch.testing.assert_close(a[k], b[k], atol=1e-7, rtol=1e-6,
                                       msg=lambda m, k=k: f"{name}: {k} changed, re-run make_fixtures.py: {m}")
    exp = _expected(folder)
    sae = load_sae(folder)
    with torch.no_grad():
        _close(sae.encode(exp["x"]), exp["encode"], f"{name} encode")
        _close(sae.decode(exp["encode"]), exp["decode"], f"{name} decode")
        _close(source(exp["x"]).x_hat, exp["forward"], f"{name}: the library's forward vs the source SAE's")
        if fmt == "dictionary_learning" and arch == "relu":
            # written with decoder norms folded (AutoEncoder.from_pretrained normalises): the library's
            # activations are the source's times each decoder row's norm
            _close(source.encode(exp["x"]) * source.W_dec.norm(dim=1), exp["encode"], f"{name} scaled encode")
        else:
            _close(source.encode(exp["x"]), exp["encode"], f"{name}: library encode vs source SAE")


# -- hostile cfg values and refused flags through the CLI ------------------------------------------------------
def _copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / "in" / name
    shutil.copytree(ROOT / name, dst)
    return dst


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


def _narrow(tmp_path: Path) -> Path:
    """A featgraph SAE with the fixtures' d_in and half their width, for pairs and stitching."""
    p = tmp_path / "in" / "narrow"
    tiny_sae(128, 64, seed=3).save(p)
    return p


BAD_CFG = [
    # (fixture, cfg file, edit, needles)
    ("saelens-standard", "cfg.json", lambda c: c.update(d_in="64"), ("cfg.json", "d_in='64'")),
    ("saelens-standard", "cfg.json", lambda c: c.update(d_sae=True), ("d_sae=True",)),
    ("saelens-standard", "cfg.json", lambda c: c.update(apply_b_dec_to_input="yes"),
     ("apply_b_dec_to_input='yes'", "true or false")),
    ("saelens-topk", "cfg.json", lambda c: c.update(k=-3), ("k=-3", "an integer >= 1")),
    ("saelens-topk", "cfg.json", lambda c: c.update(k="8"), ("k='8'",)),
    ("saelens-topk-rescale", "cfg.json", lambda c: c.update(rescale_acts_by_decoder_norm="true"),
     ("rescale_acts_by_decoder_norm='true'",)),
    ("saelens-standard", "cfg.json", lambda c: c.update(normalize_activations="per_token_magic"),
     ("normalize_activations='per_token_magic'", "is not one of")),
    ("saelens-standard", "cfg.json", lambda c: c["metadata"].update(hook_head_index="1"),
     ("hook_head_index='1'",)),
    ("saelens-standard", "cfg.json", lambda c: c.update(metadata=[1, 2]), ("metadata=[1, 2]", "an object")),
    ("sparsify-topk", "cfg.json", lambda c: c.update(k=True), ("k=true",)),
    ("sparsify-topk", "cfg.json", lambda c: c.update(d_in=64.5), ("d_in=64.5",)),
    ("sparsify-topk", "cfg.json", lambda c: c.update(activation="softmax"), ("activation='softmax'",)),
    ("sparsify-topk", "cfg.json", lambda c: c.update(transcode="no"), ("transcode='no'",)),
    ("dictionary_learning-topk", "config.json", lambda c: c["trainer"].update(dict_size="256"),
     ("config.json", "dict_size='256'")),
    ("dictionary_learning-autoencoder", "config.json", lambda c: c.update(trainer=[]), ("trainer=[]",)),
    ("dictionary_learning-topk", "config.json", lambda c: c["trainer"].update(k=-1), ("k=-1",)),
]


@pytest.mark.parametrize("fixture,cfg_name,edit,needles", BAD_CFG,
                         ids=[f"{b[0]}:{'/'.join(b[3])}" for b in BAD_CFG])
def test_bad_cfg_values_are_refused_naming_file_key_value(tmp_path, fixture, cfg_name, edit, needles):
    sae_dir = _copy(tmp_path, fixture)
    _edit_json(sae_dir / cfg_name, edit)
    narrow = _narrow(tmp_path)
    out = tmp_path / "out"
    # families reads decoders only (load_decoder): a wrong type is refused there too
    assert_refused(["families", narrow, sae_dir, "--out", out], inputs=[sae_dir, narrow], out=out,
                   needles=(str(sae_dir), *needles))
    # stitch and eval need encode/decode (load_sae)
    acts = tmp_path / "acts"
    acts.mkdir(exist_ok=True)
    assert_refused(["stitch", narrow, sae_dir, "--acts", acts, "--out", out], inputs=[sae_dir, narrow, acts],
                   out=out, needles=(str(sae_dir), *needles))


ENCODE_REFUSED = [
    ("saelens-layer_norm", None, ("normalize_activations='layer_norm'", "per-token")),
    ("saelens-expected_average_only_in", None, ("normalize_activations='expected_average_only_in'",)),
    ("saelens-standard", lambda c: c.update(normalize_activations="constant_norm_rescale"),
     ("normalize_activations='constant_norm_rescale'",)),
    ("saelens-standard", lambda c: c.update(normalize_activations=True),  # pre-6 bool, as SAELens reads it
     ("normalize_activations='expected_average_only_in'",)),
    ("saelens-standard", lambda c: c["metadata"].update(hook_head_index=2, hook_name="blocks.1.attn.hook_z"),
     ("hook_head_index=2", "blocks.1.attn.hook_z")),
    ("saelens-standard", lambda c: c.update(reshape_activations="hook_z"), ("reshape_activations='hook_z'",)),
    ("saelens-standard", lambda c: c.update(architecture="matryoshka_batchtopk"),
     ("architecture 'matryoshka_batchtopk'",)),
    ("sparsify-transcoder", None, ("transcode=true",)),
    ("sparsify-topk", lambda c: c.update(skip_connection=True), ("skip_connection=true",)),
]


@pytest.mark.parametrize("fixture,edit,needles", ENCODE_REFUSED,
                         ids=[f"{e[0]}:{e[2][0]}" for e in ENCODE_REFUSED])
def test_flags_featgraph_cannot_run_are_refused_where_encode_is_needed(tmp_path, fixture, edit, needles):
    sae_dir = _copy(tmp_path, fixture)
    if edit is not None:
        _edit_json(sae_dir / "cfg.json", edit)
    narrow = _narrow(tmp_path)
    out, acts = tmp_path / "out", tmp_path / "acts"
    acts.mkdir()
    assert_refused(["stitch", narrow, sae_dir, "--acts", acts, "--out", out], inputs=[sae_dir, narrow, acts],
                   out=out, needles=(str(sae_dir), *needles))
    assert_refused(["eval", sae_dir, "--tokens", 64, "--out", out], inputs=[sae_dir], out=out,
                   needles=(str(sae_dir), *needles))
    # the decoder directions are still the library's: matching (families) reads them
    _, W = load_decoder(sae_dir)
    np.testing.assert_allclose(_unit(W), _unit(_raw_decoder_rows(sae_dir)), atol=1e-6)


def test_families_matches_a_refused_file_by_its_decoder(tmp_path):
    """Matching needs decoder directions only, which are right for every library file: families runs on the
    files whose encode featgraph refuses, and finds the planted copies."""
    from tests.conftest import run_main

    src = _copy(tmp_path, "saelens-layer_norm")
    W = load_decoder(src)[1]
    narrow = tmp_path / "in" / "narrow"
    tiny_sae(W_dec=np.ascontiguousarray(W[:128] * 3.0), seed=4).save(narrow)  # 128 exact copies, rescaled
    out = tmp_path / "out"
    rc, stdout, stderr = run_main("families", narrow, src, "--out", out, "--quiet")
    assert rc == 0, stderr
    import pandas as pd

    edges = pd.read_parquet(out / "edges.parquet")
    assert len(edges) >= 128
    top = pd.read_parquet(out / "features.parquet")
    large = top[top["width"] == 256].sort_values("feature")
    np.testing.assert_allclose(large["max_cos"].to_numpy()[:128], 1.0, atol=1e-5)
