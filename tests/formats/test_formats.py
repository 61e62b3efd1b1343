"""Readers and writers of every SAE format: writer round trips, hand-built files in each format's own names
and orientation (checked against that library's forward formula, written out here), auto-detection,
mixed-format ladders, and one test per error kind asserting that the message names the file."""

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as tF
from safetensors.torch import save_file

from featgraph import formats
from featgraph.errors import (
    BadWeightsError,
    ConfigError,
    SaeFormatError,
    ShapeMismatchError,
    UnsupportedError,
)
from featgraph.formats import detect_format, load_decoder, load_sae
from featgraph.ladder import load_ladder
from tests.conftest import tiny_sae

F_, D_ = 12, 8  # non-square, so that a missed transpose is a shape error rather than a silent one
SAVERS = {
    "saelens": formats.save_saelens,
    "sparsify": formats.save_sparsify,
    "dictionary_learning": formats.save_dictionary_learning,
    "gemmascope": formats.save_gemmascope,
    "featgraph": lambda sae, p: sae.save(p),
}


def _sae(arch, apply=True, seed=0):
    sae = tiny_sae(F_, D_, seed=seed, architecture=arch, k=3 if arch == "topk" else None)
    sae.cfg.apply_b_dec_to_input = apply
    return sae


def _x(n=9):
    return torch.randn(n, D_, generator=torch.Generator().manual_seed(1)) * 2


def _np(t):
    return t.detach().numpy()


# -- writers: round trips -----------------------------------------------------------------------------------
EXACT = [("featgraph", "relu", True), ("featgraph", "topk", False), ("saelens", "relu", True),
         ("saelens", "jumprelu", False), ("saelens", "topk", True), ("saelens", "jumprelu", True),
         ("sparsify", "topk", True),
         ("dictionary_learning", "relu", False), ("dictionary_learning", "topk", True),
         ("dictionary_learning", "jumprelu", False),
         ("gemmascope", "jumprelu", False)]


@pytest.mark.parametrize("fmt,arch,apply", EXACT)
def test_writer_roundtrip_is_bit_identical(tmp_path, fmt, arch, apply):
    sae = _sae(arch, apply)
    path = tmp_path / ("sae.npz" if fmt == "gemmascope" else "sae")
    SAVERS[fmt](sae, path)
    assert detect_format(path) == fmt
    back = load_sae(path)
    assert back.cfg.source_format == fmt
    assert (back.cfg.architecture, back.cfg.k, back.cfg.apply_b_dec_to_input) == (arch, sae.cfg.k, apply)
    assert set(back.tensors()) == set(sae.tensors())
    for name, t in sae.tensors().items():
        assert torch.equal(back.tensors()[name], t), name
    x = _x()
    assert torch.equal(back(x).x_hat, sae(x).x_hat) and torch.equal(back(x).acts, sae(x).acts)
    got_fmt, W = load_decoder(path)
    assert got_fmt == fmt and W.dtype == np.float32 and np.array_equal(W, _np(sae.W_dec))


def test_saelens_roundtrip_keeps_names_and_writes_6x_cfg(tmp_path):
    sae = _sae("topk")
    sae.cfg.hook_name, sae.cfg.model_name = "blocks.8.hook_resid_pre", "gpt2"
    formats.save_saelens(sae, tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["metadata"] == {"hook_name": "blocks.8.hook_resid_pre", "model_name": "gpt2"}
    assert (cfg["architecture"], cfg["k"], cfg["d_sae"], cfg["d_in"]) == ("topk", 3, F_, D_)
    back = load_sae(tmp_path / "s")
    assert (back.cfg.hook_name, back.cfg.model_name) == ("blocks.8.hook_resid_pre", "gpt2")


def test_dictionary_learning_autoencoder_is_written_with_unit_decoder_columns(tmp_path):
    """AutoEncoder.from_pretrained renormalises decoder columns by default; featgraph writes them already
    normalised (norms folded into the encoder), so the library's default load gives the SAE's x_hat."""
    sae = _sae("relu", True)
    norms = sae.W_dec.detach().norm(dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms))
    formats.save_dictionary_learning(sae, tmp_path / "dl")
    state = torch.load(tmp_path / "dl" / "ae.pt", weights_only=True)
    dec_cols = state["decoder.weight"].norm(dim=0)
    assert torch.allclose(dec_cols, torch.ones_like(dec_cols))  # the library's own test: nothing left to fold
    back = load_sae(tmp_path / "dl")
    x = _x()
    torch.testing.assert_close(back(x).x_hat, sae(x).x_hat, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back.encode(x), sae.encode(x) * norms, atol=1e-5, rtol=1e-5)
    _, W = load_decoder(tmp_path / "dl")
    np.testing.assert_allclose(W, _np(sae.W_dec / norms[:, None]), atol=1e-6)


FOLDED = [("gemmascope", "jumprelu", True), ("gemmascope", "relu", True), ("sparsify", "topk", False),
          ("dictionary_learning", "topk", False), ("dictionary_learning", "jumprelu", True)]


@pytest.mark.parametrize("fmt,arch,apply", FOLDED)
def test_writer_folds_b_dec_where_the_format_fixes_it(tmp_path, fmt, arch, apply):
    sae = _sae(arch, apply)
    SAVERS[fmt](sae, tmp_path / "s")
    back = load_sae(tmp_path / "s")
    assert back.cfg.apply_b_dec_to_input != apply  # the format's convention, with b_enc adjusted to match
    assert torch.equal(back.W_dec, sae.W_dec) and torch.equal(back.W_enc, sae.W_enc)
    x = _x()
    torch.testing.assert_close(back(x).x_hat, sae(x).x_hat, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt,arch", [("sparsify", "relu"), ("sparsify", "jumprelu"), ("gemmascope", "topk")])
def test_writer_refuses_what_the_format_cannot_hold(tmp_path, fmt, arch):
    with pytest.raises(UnsupportedError, match=re.escape(str(tmp_path / "out"))):
        SAVERS[fmt](_sae(arch), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- hand-built files in each library's own names and orientation --------------------------------------------
def _ref_check(path, x_hat_ref, sae_src, fmt):
    """The loaded SAE reproduces the library's forward formula; load_decoder gives rows = features."""
    back = load_sae(path)
    torch.testing.assert_close(back(_x()).x_hat, x_hat_ref, atol=1e-5, rtol=1e-5)
    got_fmt, W = load_decoder(path)
    assert got_fmt == fmt and np.array_equal(W, _np(sae_src.W_dec))
    return back


def _topk(a, k):
    top = a.topk(k, dim=-1)
    return torch.zeros_like(a).scatter(-1, top.indices, top.values)


def test_saelens_hand_built_6x_topk_and_old_layouts(tmp_path):
    s = _sae("topk")
    t = {n: v.detach().clone() for n, v in s.tensors().items()}
    x = _x()
    ref = _topk(tF.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]), 3) @ t["W_dec"] + t["b_dec"]
    new = tmp_path / "v6"
    new.mkdir()
    save_file(t, str(new / "sae_weights.safetensors"))
    meta = {"hook_name": "blocks.3.hook_resid_post", "model_name": "m"}
    (new / "cfg.json").write_text(json.dumps({
        "architecture": "topk", "d_in": D_, "d_sae": F_, "k": 3, "apply_b_dec_to_input": True,
        "dtype": "float32", "normalize_activations": "none", "metadata": meta}))
    back = _ref_check(new, ref, s, "saelens")
    assert (back.cfg.hook_name, back.cfg.model_name, back.cfg.k) == ("blocks.3.hook_resid_post", "m", 3)
    old = tmp_path / "v3"  # TopK as "standard" + activation_fn_str, hook_point at the top level
    old.mkdir()
    save_file(t, str(old / "sae_weights.safetensors"))
    (old / "cfg.json").write_text(json.dumps({
        "architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}, "d_in": D_,
        "d_sae": F_, "hook_point": "blocks.3.hook_resid_post", "model_name": "m"}))
    back = _ref_check(old, ref, s, "saelens")
    assert (back.cfg.architecture, back.cfg.hook_name) == ("topk", "blocks.3.hook_resid_post")


def test_saelens_gated_decoder_only_and_normalisations_refused(tmp_path):
    s = _sae("relu")
    g = tmp_path / "gated"
    g.mkdir()
    gated = {"W_enc": s.W_enc.detach(), "W_dec": s.W_dec.detach(), "b_dec": s.b_dec.detach(),
             "b_gate": s.b_enc.detach().clone(), "b_mag": s.b_enc.detach().clone(), "r_mag": torch.zeros(F_)}
    save_file(gated, str(g / "sae_weights.safetensors"))
    (g / "cfg.json").write_text(json.dumps({"architecture": "gated", "d_in": D_, "d_sae": F_}))
    assert np.array_equal(load_decoder(g)[1], _np(s.W_dec))
    with pytest.raises(UnsupportedError, match=r"cfg\.json: gated"):
        load_sae(g)
    n = tmp_path / "norm"
    formats.save_saelens(s, n)
    cfg = json.loads((n / "cfg.json").read_text())
    assert cfg["normalize_activations"] == "none"
    for value, shown in [("expected_average_only_in", "'expected_average_only_in'"), ("layer_norm", "'layer_norm'"),
                         ("constant_norm_rescale", "'constant_norm_rescale'"),
                         ("covariance_whitening", "'covariance_whitening'"), (True, "'expected_average_only_in'")]:
        (n / "cfg.json").write_text(json.dumps(dict(cfg, normalize_activations=value)))
        with pytest.raises(UnsupportedError, match=re.escape(f"{n / 'cfg.json'}: normalize_activations={shown}")):
            load_sae(n)
        assert np.array_equal(load_decoder(n)[1], _np(s.W_dec))  # directions are still the SAE's
    for value in (False, None, "none"):  # pre-6 bool false and null mean none, as in SAELens
        (n / "cfg.json").write_text(json.dumps(dict(cfg, normalize_activations=value)))
        assert torch.equal(load_sae(n).W_enc, s.W_enc)


def test_saelens_rescale_acts_by_decoder_norm_is_folded_exactly(tmp_path):
    """A TopK training checkpoint (decoder norms not folded): SAELens scales pre-activations by ||W_dec[i]||
    before the top-k and divides them out before decoding. Written out here as SAELens's formula."""
    s = _sae("topk")
    t = {n: v.detach().clone() for n, v in s.tensors().items()}
    n = t["W_dec"].norm(dim=-1)
    x = _x()
    hidden = ((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]) * n
    acts = _topk(hidden, 3).relu()
    x_hat = (acts / n) @ t["W_dec"] + t["b_dec"]
    folder = tmp_path / "ckpt"
    formats.save_saelens(s, folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps(dict(cfg, rescale_acts_by_decoder_norm=True)))
    back = load_sae(folder)
    torch.testing.assert_close(back.encode(x), acts, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back(x).x_hat, x_hat, atol=1e-5, rtol=1e-5)
    _, W = load_decoder(folder)
    np.testing.assert_allclose(W, _np(t["W_dec"] / n[:, None]), atol=1e-6)  # the rows load_sae uses
    assert np.array_equal(W, _np(back.W_dec))
    (folder / "cfg.json").write_text(json.dumps(dict(cfg, rescale_acts_by_decoder_norm=True, architecture="standard")))
    with pytest.raises(UnsupportedError, match="rescale_acts_by_decoder_norm=true on a relu SAE"):
        load_sae(folder)


def test_saelens_old_key_spellings(tmp_path):
    s = _sae("relu")
    folder = tmp_path / "old"
    formats.save_saelens(s, folder)
    old = {"d_in": D_, "d_sae": F_, "hook_point": "blocks.2.hook_resid_pre", "hook_point_layer": 2,
           "hook_point_head_index": None, "activation_fn_str": "relu", "model_name": "gpt2",
           "normalize_activations": False}
    (folder / "cfg.json").write_text(json.dumps(old))
    back = load_sae(folder)
    assert (back.cfg.hook_name, back.cfg.model_name, back.cfg.apply_b_dec_to_input) == (
        "blocks.2.hook_resid_pre", "gpt2", True)
    (folder / "cfg.json").write_text(json.dumps(dict(old, hook_point_head_index=3)))
    with pytest.raises(UnsupportedError, match="hook_head_index=3"):
        load_sae(folder)
    (folder / "cfg.json").write_text(json.dumps(dict(old, hook_point="blocks.2.attn.hook_z")))
    with pytest.raises(UnsupportedError, match="reshape_activations='hook_z'"):  # SAELens's pre-6 default
        load_sae(folder)
    (folder / "cfg.json").write_text(json.dumps(dict(old, activation_fn_str="tanh-relu")))
    with pytest.raises(UnsupportedError, match="activation_fn 'tanh-relu'"):
        load_sae(folder)


@pytest.mark.parametrize("fmt,cfg_name,key,value,shown", [
    ("saelens", "cfg.json", "d_in", "8", "d_in='8'"),
    ("saelens", "cfg.json", "architecture", 3, "architecture=3"),
    ("saelens", "cfg.json", "k", 2.5, "k=2.5"),
    ("saelens", "cfg.json", "hook_name", ["a"], 'hook_name=["a"]'),
    ("sparsify", "cfg.json", "num_latents", -1, "num_latents=-1"),
    ("sparsify", "cfg.json", "k", 0, "k=0"),
    ("sparsify", "cfg.json", "multi_topk", "yes", "multi_topk='yes'"),
    ("dictionary_learning", "config.json", "activation_dim", False, "activation_dim=False"),
    ("dictionary_learning", "config.json", "lm_name", 7, "lm_name=7"),
])
def test_wrong_cfg_types_name_file_key_and_value(tmp_path, fmt, cfg_name, key, value, shown):
    folder = tmp_path / "s"
    SAVERS[fmt](_sae("topk"), folder)
    cfg = json.loads((folder / cfg_name).read_text())
    (cfg["trainer"] if fmt == "dictionary_learning" else cfg)[key] = value
    (folder / cfg_name).write_text(json.dumps(cfg))
    for load in (load_sae, load_decoder):
        with pytest.raises(SaeFormatError, match=re.escape(f"{folder / cfg_name}: {shown} is not")):
            load(folder)


def test_sparsify_hand_built_transposes_encoder(tmp_path):
    s = _sae("topk")
    t = s.tensors()
    folder = tmp_path / "layers.3"
    folder.mkdir()
    state = {"encoder.weight": t["W_enc"].T.contiguous(), "encoder.bias": t["b_enc"], "W_dec": t["W_dec"],
             "b_dec": t["b_dec"]}
    save_file(state, str(folder / "sae.safetensors"))
    # a nonzero num_latents wins over expansion_factor; 0 means expansion_factor * d_in (checked below)
    (folder / "cfg.json").write_text(json.dumps({
        "activation": "topk", "expansion_factor": 32, "num_latents": F_, "k": 3, "d_in": D_,
        "transcode": False}))
    x = _x()
    ref = _topk(tF.relu(tF.linear(x - t["b_dec"], t["W_enc"].T, t["b_enc"])), 3) @ t["W_dec"] + t["b_dec"]
    back = _ref_check(folder, ref, s, "sparsify")
    assert back.cfg.extra["hookpoint"] == "layers.3" and back.cfg.apply_b_dec_to_input
    (folder / "cfg.json").write_text(json.dumps({"num_latents": 0, "expansion_factor": 2, "d_in": D_}))
    with pytest.raises(ShapeMismatchError, match=r"sae\.safetensors: .*\[12, 8\], expected \[16, 8\]"):
        load_decoder(folder)


def test_dictionary_learning_hand_built_variants(tmp_path):
    s = _sae("relu")
    t = s.tensors()
    x = _x()
    enc_w, dec_w = t["W_enc"].T.contiguous(), t["W_dec"].T.contiguous()  # nn.Linear: [F, d] and [d, F]

    def write(name, state, cfg):
        (tmp_path / name).mkdir()
        torch.save(state, tmp_path / name / "ae.pt")
        (tmp_path / name / "config.json").write_text(json.dumps({"trainer": cfg}))
        return tmp_path / name

    base = {"activation_dim": D_, "dict_size": F_}
    ae = {"encoder.weight": enc_w, "encoder.bias": t["b_enc"], "decoder.weight": dec_w, "bias": t["b_dec"]}
    p = write("ae", ae, dict(base, dict_class="AutoEncoder", lm_name="m"))
    ref = tF.linear(tF.relu(tF.linear(x - t["b_dec"], enc_w, t["b_enc"])), dec_w) + t["b_dec"]
    back = load_sae(p)  # AutoEncoder.from_pretrained's normalize_decoder: unit columns, norms into the encoder
    assert back.cfg.model_name == "m"
    torch.testing.assert_close(back(x).x_hat, ref, atol=1e-5, rtol=1e-5)
    norms = dec_w.norm(dim=0)
    torch.testing.assert_close(back.encode(x), tF.relu(tF.linear(x - t["b_dec"], enc_w, t["b_enc"])) * norms,
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(load_decoder(p)[1], _np(t["W_dec"] / norms[:, None]), atol=1e-6)
    unit = dict(ae, **{"decoder.weight": dec_w / norms, "encoder.weight": enc_w * norms[:, None],
                       "encoder.bias": t["b_enc"] * norms})
    p = write("ae_unit", unit, dict(base, dict_class="AutoEncoder"))  # already unit: loaded as stored
    assert torch.equal(load_sae(p).W_dec, unit["decoder.weight"].T)

    topk = {"encoder.weight": enc_w, "encoder.bias": t["b_enc"], "decoder.weight": dec_w, "b_dec": t["b_dec"],
            "k": torch.tensor(3, dtype=torch.int), "threshold": torch.tensor(0.2)}
    pre = tF.relu(tF.linear(x - t["b_dec"], enc_w, t["b_enc"]))
    p = write("topk", topk, dict(base, dict_class="AutoEncoderTopK"))
    assert _ref_check(p, tF.linear(_topk(pre, 3), dec_w) + t["b_dec"], s, "dictionary_learning").cfg.k == 3
    p = write("batch", topk, dict(base, dict_class="BatchTopKSAE"))  # inference uses the global threshold
    ref = tF.linear(pre * (pre > 0.2), dec_w) + t["b_dec"]
    assert _ref_check(p, ref, s, "dictionary_learning").cfg.architecture == "jumprelu"
    # never calibrated (-1): BatchTopKSAE.encode's relu(pre) * (relu(pre) > -1) is plain relu
    p = write("batch_raw", dict(topk, threshold=torch.tensor(-1.0)), dict(base, dict_class="BatchTopKSAE"))
    _ref_check(p, tF.linear(pre, dec_w) + t["b_dec"], s, "dictionary_learning")

    th = torch.rand(F_, generator=torch.Generator().manual_seed(2)) * 0.1
    jump = dict(t, threshold=th)  # JumpReluAutoEncoder's names and orientation are featgraph's
    p = write("jump", jump, dict(base, dict_class="JumpReluAutoEncoder"))
    pre = x @ t["W_enc"] + t["b_enc"]  # JumpReluAutoEncoder does not subtract b_dec by default
    norms = t["W_dec"].norm(dim=1)  # the class scales activations by decoder norms, then divides them out
    ref = (tF.relu(pre * (pre > th)) * norms) / norms @ t["W_dec"] + t["b_dec"]
    _ref_check(p, ref, s, "dictionary_learning")

    gated = {"encoder.weight": enc_w, "decoder.weight": dec_w, "decoder_bias": t["b_dec"],
             "r_mag": t["b_enc"], "gate_bias": t["b_enc"], "mag_bias": t["b_enc"]}
    p = write("gated", gated, base)
    assert np.array_equal(load_decoder(p)[1], _np(s.W_dec))
    with pytest.raises(UnsupportedError, match=r"ae\.pt: gated"):
        load_sae(p)


def test_gemmascope_hand_built_does_not_subtract_b_dec(tmp_path):
    s = _sae("jumprelu")
    t = {n: _np(v) for n, v in s.tensors().items()}
    np.savez(tmp_path / "params.npz", **t)
    x = _x()
    pre = x @ s.W_enc + s.b_enc
    ref = (tF.relu(pre) * (pre > s.threshold)) @ s.W_dec + s.b_dec
    back = _ref_check(tmp_path, ref.detach(), s, "gemmascope")
    assert back.cfg.architecture == "jumprelu" and not back.cfg.apply_b_dec_to_input


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_upcast(tmp_path, dtype):
    s = _sae("relu")
    s.save(tmp_path / "fg", dtype=dtype)
    formats.save_saelens(load_sae(tmp_path / "fg").to(dtype), tmp_path / "sl")
    for p in (tmp_path / "fg", tmp_path / "sl"):
        _, W = load_decoder(p)
        assert W.dtype == np.float32 and np.array_equal(W, s.W_dec.detach().to(dtype).float().numpy())
        assert load_sae(p).W_dec.dtype == torch.float32


# -- detection and ladders -----------------------------------------------------------------------------------
def test_detect_each_format_from_folder_and_file(tmp_path):
    for fmt in ("featgraph", "saelens", "sparsify", "dictionary_learning"):
        SAVERS[fmt](_sae("topk"), tmp_path / fmt)
        assert detect_format(tmp_path / fmt) == fmt
    formats.save_gemmascope(_sae("jumprelu"), tmp_path / "gemmascope")
    assert detect_format(tmp_path / "gemmascope") == "gemmascope"
    assert detect_format(tmp_path / "gemmascope" / "params.npz") == "gemmascope"
    assert detect_format(tmp_path / "dictionary_learning" / "ae.pt") == "dictionary_learning"
    assert detect_format(tmp_path / "saelens" / "sae_weights.safetensors") == "saelens"
    assert detect_format(tmp_path / "featgraph" / "sae.safetensors") == "featgraph"
    assert detect_format(tmp_path / "sparsify" / "cfg.json") == "sparsify"
    assert load_decoder(tmp_path / "saelens" / "sae_weights.safetensors")[0] == "saelens"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hi")
    assert detect_format(tmp_path / "other", missing_ok=True) is None
    assert detect_format(tmp_path / "other" / "notes.txt", missing_ok=True) is None
    assert detect_format(tmp_path / "nothing", missing_ok=True) is None
    with pytest.raises(SaeFormatError, match=r"other: not an SAE .*found: notes\.txt"):
        detect_format(tmp_path / "other")
    with pytest.raises(SaeFormatError, match=r"nothing: no such file or folder"):
        load_decoder(tmp_path / "nothing")


def test_ladder_folder_mixing_formats(tmp_path):
    root = tmp_path / "ladder"
    def sized(arch, n, apply=True, seed=0):  # a ladder needs distinct widths
        sae = tiny_sae(n, D_, seed=seed, architecture=arch, k=3 if arch == "topk" else None)
        sae.cfg.apply_b_dec_to_input = apply
        return sae

    saes = {"a_fg": sized("relu", 10, seed=1), "b_sl": sized("jumprelu", 12, seed=2), "c_sp": sized("topk", 14, seed=3),
            "d_dl": sized("relu", 16, False, seed=4), "e_gs": sized("jumprelu", 18, False, seed=5)}
    formats.save_saelens(saes["b_sl"], root / "b_sl")
    saes["a_fg"].save(root / "a_fg")
    formats.save_sparsify(saes["c_sp"], root / "c_sp")
    formats.save_dictionary_learning(saes["d_dl"], root / "d_dl")
    formats.save_gemmascope(saes["e_gs"], root / "e_gs" / "params.npz")
    formats.save_gemmascope(saes["e_gs"], root / "loose.npz")  # files beside the SAE folders are ignored
    (root / "README.txt").write_text("not an SAE")
    (root / "empty").mkdir()
    ladder = load_ladder([root])
    assert ladder.names == sorted(saes)  # sorted by width
    got = {e.name: e.format for e in ladder}
    assert got == {"a_fg": "featgraph", "b_sl": "saelens", "c_sp": "sparsify", "d_dl": "dictionary_learning",
                   "e_gs": "gemmascope"}
    for e in ladder:
        assert np.array_equal(e.W_dec, _np(saes[e.name].W_dec))


# -- errors: each names the file -----------------------------------------------------------------------------
def test_missing_and_corrupt_files(tmp_path):
    sl = tmp_path / "sl"
    formats.save_saelens(_sae("relu"), sl)
    weights = sl / "sae_weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(SaeFormatError, match=rf"{re.escape(str(weights))}: not a readable safetensors file"):
        load_decoder(sl)
    weights.unlink()
    with pytest.raises(SaeFormatError, match=rf"{re.escape(str(weights))}: file not found"):
        load_sae(sl, format="saelens")
    with pytest.raises(SaeFormatError, match=r"sl: not an SAE .*found: cfg\.json"):
        load_sae(sl)
    (tmp_path / "bad.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(SaeFormatError, match=r"bad\.npz: not a readable npz file"):
        load_decoder(tmp_path / "bad.npz")
    (tmp_path / "ae.pt").write_bytes(b"garbage, not a torch file")
    with pytest.raises(SaeFormatError, match=r"ae\.pt: not a readable torch state dict"):
        load_sae(tmp_path / "ae.pt")
    sp = tmp_path / "sp"
    formats.save_sparsify(_sae("topk"), sp)
    (sp / "cfg.json").write_text("{oops")
    with pytest.raises(SaeFormatError, match=r"sp/cfg\.json: not valid JSON"):
        load_decoder(sp)
    with pytest.raises(ConfigError, match=r"unknown SAE format 'safetensor'"):
        load_decoder(sp, format="safetensor")


def test_missing_tensor_and_wrong_shape(tmp_path):
    s = _sae("jumprelu", False)
    t = {n: _np(v) for n, v in s.tensors().items()}
    np.savez(tmp_path / "nothr.npz", **{n: v for n, v in t.items() if n != "threshold"})
    with pytest.raises(SaeFormatError, match=r"nothr\.npz: tensor\(s\) \['threshold'\] missing"):
        load_sae(tmp_path / "nothr.npz")
    np.savez(tmp_path / "cube.npz", **dict(t, W_dec=t["W_dec"][None]))
    with pytest.raises(ShapeMismatchError, match=r"cube\.npz: decoder has shape \[1, 12, 8\]"):
        load_decoder(tmp_path / "cube.npz")
    sl = tmp_path / "sl"
    formats.save_saelens(s, sl)
    save_file({n: v for n, v in s.tensors().items() if n != "W_dec"}, str(sl / "sae_weights.safetensors"))
    with pytest.raises(SaeFormatError, match=r"sae_weights\.safetensors: tensor\(s\) \['W_dec'\] missing"):
        load_decoder(sl)
    formats.save_saelens(s, sl)
    cfg = json.loads((sl / "cfg.json").read_text())
    (sl / "cfg.json").write_text(json.dumps(dict(cfg, d_sae=F_ * 2)))
    with pytest.raises(ShapeMismatchError, match=r"sae_weights\.safetensors: decoder has shape \[12, 8\]"):
        load_decoder(sl)
    with pytest.raises(ShapeMismatchError, match=r"safetensors: W_enc has shape \[8, 12\], expected \[8, 24"):
        load_sae(sl)
    dl = tmp_path / "dl"
    formats.save_dictionary_learning(_sae("relu"), dl)
    torch.save({"encoder.weight": torch.zeros(F_, D_)}, dl / "ae.pt")
    with pytest.raises(SaeFormatError, match=r"ae\.pt: no decoder tensor"):
        load_decoder(dl)


@pytest.mark.parametrize("fmt", ["featgraph", "saelens", "dictionary_learning", "gemmascope"])
def test_nan_weights_are_refused(tmp_path, fmt):
    s = _sae("jumprelu", False)
    with torch.no_grad():
        s.W_dec[3, 1] = float("nan")
    SAVERS[fmt](s, tmp_path / "s")
    where = re.escape(str(tmp_path / "s"))
    with pytest.raises(BadWeightsError, match=rf"{where}.*NaN/inf values in 1 rows \(first: \[3\]\)"):
        load_decoder(tmp_path / "s")
    with torch.no_grad():
        s.W_dec[3, 1] = 0.0
        s.W_enc[0, 0] = float("inf")
    SAVERS[fmt](s, tmp_path / "s")
    with pytest.raises(BadWeightsError, match=rf"{where}.*W_enc has 1 NaN/inf"):
        load_sae(tmp_path / "s")


def test_gemmascope_lowercase_keys_and_ambiguous_spellings(tmp_path):
    s = _sae("jumprelu", False)
    t = {n: _np(v) for n, v in s.tensors().items()}
    lower = {("w_" + n[2:] if n in ("W_enc", "W_dec") else n): v for n, v in t.items()}
    np.savez(tmp_path / "lower.npz", **lower)  # SAELens's Gemma Scope loader accepts this spelling
    back = load_sae(tmp_path / "lower.npz")
    x = _x()
    assert torch.equal(back(x).x_hat, s(x).x_hat)
    assert np.array_equal(load_decoder(tmp_path / "lower.npz")[1], t["W_dec"])
    np.savez(tmp_path / "both.npz", **lower, W_dec=t["W_dec"])
    with pytest.raises(SaeFormatError, match=r"both\.npz: holds both 'W_dec' and 'w_dec'"):
        load_decoder(tmp_path / "both.npz")
    np.savez(tmp_path / "ones.npz", **t, scaling_factor=np.ones(F_, np.float32))  # ignored, as SAELens does
    assert torch.equal(load_sae(tmp_path / "ones.npz")(x).x_hat, s(x).x_hat)
    np.savez(tmp_path / "scaled.npz", **t, scaling_factor=np.full(F_, 2.0, np.float32))
    with pytest.raises(UnsupportedError, match=r"scaled\.npz: scaling_factor is not all ones"):
        load_sae(tmp_path / "scaled.npz")
    assert np.array_equal(load_decoder(tmp_path / "scaled.npz")[1], t["W_dec"])


def test_sparsify_transcoder_groupmax_and_skip(tmp_path):
    s = _sae("topk")
    s.cfg.extra["transcode"] = True
    s.cfg.apply_b_dec_to_input = False
    folder = tmp_path / "layers.1.mlp"
    formats.save_sparsify(s, folder)
    with pytest.raises(UnsupportedError, match=r"layers\.1\.mlp: transcode=true"):
        load_sae(folder)
    back = load_sae(folder, allow_transcoder=True)  # the library's encode/decode, on request
    x = _x()
    assert back.cfg.extra["transcode"] and torch.equal(back(x).x_hat, s(x).x_hat)
    assert np.array_equal(load_decoder(folder)[1], _np(s.W_dec))
    cfg = json.loads((folder / "cfg.json").read_text())
    for key, value, needle in [("activation", "groupmax", "activation='groupmax'"),
                               ("skip_connection", True, "skip_connection=true")]:
        (folder / "cfg.json").write_text(json.dumps(dict(cfg, **{key: value})))
        with pytest.raises(UnsupportedError, match=re.escape(needle)):
            load_sae(folder, allow_transcoder=True)
        assert np.array_equal(load_decoder(folder)[1], _np(s.W_dec))
