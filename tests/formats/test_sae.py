import numpy as np
import pytest
import torch

from featgraph.errors import BadWeightsError, ConfigError, SaeFormatError, ShapeMismatchError
from featgraph.sae import Sae, SaeConfig
from tests.conftest import tiny_sae


@pytest.mark.parametrize("arch,k", [("relu", None), ("jumprelu", None), ("topk", 4)])
def test_save_load_roundtrip_is_bit_identical(tmp_path, arch, k):
    sae = tiny_sae(architecture=arch, k=k)
    sae.save(tmp_path / "s")
    back = Sae.load(tmp_path / "s")
    assert back.cfg == sae.cfg
    for name, t in sae.tensors().items():
        assert torch.equal(t, back.tensors()[name]), name
    x = torch.randn(5, sae.d_in)
    assert torch.equal(sae(x).x_hat, back(x).x_hat)


def test_topk_keeps_k_active():
    sae = tiny_sae(architecture="topk", k=3)
    acts = sae.encode(torch.randn(10, sae.d_in) * 5)
    assert ((acts != 0).sum(-1) <= 3).all()


def test_relu_forward_matches_formula():
    sae = tiny_sae()
    x = torch.randn(7, sae.d_in)
    f = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    torch.testing.assert_close(sae(x).x_hat, f @ sae.W_dec + sae.b_dec)


def test_bad_inputs_raise_named_errors(tmp_path):
    with pytest.raises(ConfigError, match="architecture"):
        SaeConfig(d_in=4, n_features=8, architecture="gelu")
    cfg = SaeConfig(d_in=4, n_features=8)
    t = tiny_sae(8, 4).tensors()
    bad = dict(t, W_dec=t["W_dec"].T.contiguous())
    with pytest.raises(ShapeMismatchError, match=r"W_dec has shape \[4, 8\]"):
        Sae.from_tensors(bad, cfg)
    nan = dict(t, W_enc=t["W_enc"].clone())
    nan["W_enc"][0, 0] = float("nan")
    with pytest.raises(BadWeightsError, match="NaN"):
        Sae.from_tensors(nan, cfg)
    with pytest.raises(SaeFormatError, match="cfg.json: file not found"):
        Sae.load(tmp_path / "nothing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cfg.json").write_text("{not json")
    with pytest.raises(SaeFormatError, match="not valid JSON"):
        Sae.load(tmp_path / "broken")
    np.testing.assert_equal(tiny_sae(8, 4).W_dec.detach().numpy().shape, (8, 4))


def test_jumprelu_is_relu_times_step_for_negative_thresholds():
    """relu(pre) * (pre > threshold), as SAELens, Gemma Scope and dictionary_learning compute it: a negative
    pre-activation above a negative threshold gives 0, not the negative value."""
    sae = tiny_sae(n_features=6, d_in=4, architecture="jumprelu")
    with torch.no_grad():
        sae.threshold.copy_(torch.tensor([-1.0, -0.5, 0.0, 0.1, 0.5, -2.0]))
    pre = torch.tensor([[-0.7, -0.2, 0.0, 0.3, 0.4, -1.0], [0.5, -0.6, 0.2, 0.05, 0.6, 3.0]])
    got = sae.activation(pre)
    want = torch.tensor([[0.0, 0.0, 0.0, 0.3, 0.0, 0.0], [0.5, 0.0, 0.2, 0.0, 0.6, 3.0]])
    assert torch.equal(got, want)


@pytest.mark.parametrize("arch,k", [("relu", None), ("jumprelu", None)])
def test_fold_decoder_norms_keeps_x_hat_and_scales_activations(arch, k):
    from featgraph.sae import fold_decoder_norms

    sae = tiny_sae(architecture=arch, k=k)
    norms = sae.W_dec.detach().norm(dim=1)
    folded = Sae.from_tensors(fold_decoder_norms(sae.tensors(), norms), sae.cfg)
    x = torch.randn(7, sae.d_in, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(folded(x).x_hat, sae(x).x_hat, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded.encode(x), sae.encode(x) * norms, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded.W_dec.norm(dim=1), torch.ones_like(norms))


@pytest.mark.parametrize("key,value,shown", [
    ("d_in", "16", 'd_in="16" is not an integer >= 1'),
    ("n_features", True, "n_features=true is not an integer >= 1"),
    ("architecture", "gated", 'architecture="gated" is not one of'),
    ("k", -2, "k=-2 is not null or an integer >= 1"),
    ("apply_b_dec_to_input", 1, "apply_b_dec_to_input=1 is not true or false"),
    ("extra", [], "extra=[] is not an object"),
])
def test_featgraph_cfg_wrong_types_are_one_line_format_errors(tmp_path, key, value, shown):
    import json
    import re

    sae = tiny_sae()
    sae.save(tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(dict(cfg, **{key: value})))
    with pytest.raises(SaeFormatError, match=re.escape(f"{tmp_path / 's' / 'cfg.json'}: {shown}")):
        Sae.load(tmp_path / "s")
