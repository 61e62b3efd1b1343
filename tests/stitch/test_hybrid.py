"""Hybrid SAEs: folding keeps moved features firing exactly as in their own SAE; refusals are clear."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featgraph.errors import ConfigError, ShapeMismatchError, UnsupportedError
from featgraph.sae import Sae, SaeConfig
from featgraph.stitch.hybrid import add_features, hybrid, hybrid_origin, swap_family
from tests.builders import stitch_pair
from tests.conftest import tiny_sae


def test_zero_features_added_equals_original():
    small, large, x, _ = stitch_pair()
    h = hybrid(small, large)
    assert h.n_features == small.n_features
    for name, t in small.tensors().items():
        assert torch.equal(t, h.tensors()[name]), name
    assert torch.equal(h(x).x_hat, small(x).x_hat)


@pytest.mark.parametrize("arch", ["relu", "jumprelu"])
def test_added_features_fire_exactly_as_in_their_own_sae(arch):
    small, large, x, _ = stitch_pair(arch=arch)
    with torch.no_grad():
        large.b_dec.add_(0.3)  # a clearly different pre-encoder bias: folding must compensate
    idx = [5, 0, 77, 31]
    h = add_features(small, large, idx)
    assert h.n_features == small.n_features + 4
    acts_h = h.encode(x)
    torch.testing.assert_close(acts_h[:, small.n_features :], large.encode(x)[:, idx], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(acts_h[:, : small.n_features], small.encode(x), rtol=0, atol=0)
    assert (acts_h[:, small.n_features :] > 0).any(), "test data should make the added features fire"
    # the reconstruction is the base's plus the added features' contributions
    f = large.encode(x)[:, idx]
    torch.testing.assert_close(h(x).x_hat, small(x).x_hat + f @ large.W_dec[idx], rtol=1e-5, atol=1e-5)
    if arch == "jumprelu":
        torch.testing.assert_close(h.threshold[small.n_features :], large.threshold[idx])


def test_mixed_relu_base_and_jumprelu_donor_gives_jumprelu_with_zero_thresholds():
    small, _, x, _ = stitch_pair()
    _, large, _, _ = stitch_pair(arch="jumprelu")
    h = add_features(small, large, [1, 2])
    assert h.cfg.architecture == "jumprelu"
    assert torch.equal(h.threshold[: small.n_features], torch.zeros(small.n_features))
    torch.testing.assert_close(h.encode(x)[:, : small.n_features], small.encode(x), rtol=0, atol=0)


def test_swap_and_feature_order_and_roundtrip(tmp_path):
    small, large, x, _ = stitch_pair()
    h = swap_family(small, large, parents=[3, 10], children=[7, 8, 9])
    assert h.n_features == small.n_features - 2 + 3
    from_donor, src = hybrid_origin(small.n_features, [3, 10], [7, 8, 9])
    assert from_donor.sum() == 3 and src[-3:].tolist() == [7, 8, 9] and 3 not in src[~from_donor]
    torch.testing.assert_close(h.W_dec[~torch.from_numpy(from_donor)], small.W_dec[torch.from_numpy(src[~from_donor])])
    h.save(tmp_path / "h")
    back = Sae.load(tmp_path / "h")
    assert torch.equal(back(x).x_hat, h(x).x_hat)
    assert back.cfg.extra["hybrid"] == {"n_base_kept": 46, "n_removed": 2, "n_added": 3}


def test_copy_family_swap_barely_changes_mse():
    small, large, x, truth = stitch_pair()
    parent_of = truth.parent_of
    counts = np.bincount(parent_of[parent_of >= 0], minlength=small.n_features)
    copies = [j for j in range(large.n_features) if parent_of[j] >= 0 and counts[parent_of[j]] == 1]

    def mse(s):
        with torch.no_grad():
            return float(((s(x.double()).x_hat - x.double()) ** 2).sum(-1).mean())

    from featgraph.stitch.batches import as_dtype

    s64, l64 = as_dtype(small, torch.float64), as_dtype(large, torch.float64)
    base = mse(s64)
    swapped = np.array([mse(swap_family(s64, l64, [parent_of[j]], [j])) - base for j in copies])
    removed = np.array([mse(hybrid(s64, l64, remove=[parent_of[j]])) - base for j in copies])
    assert len(copies) >= 10 and (removed > 0).all()  # each parent matters on its own ...
    assert np.abs(swapped).mean() < 0.1 * removed.mean()  # ... but its copy replaces it almost exactly
    assert np.abs(swapped).max() < 0.01 * base


def test_refusals_name_the_problem():
    small, large, _, _ = stitch_pair()
    topk = tiny_sae(32, 64, architecture="topk", k=4)
    with pytest.raises(UnsupportedError, match="TopK"):
        add_features(small, topk, [0])
    with pytest.raises(UnsupportedError, match="TopK"):
        add_features(topk, large, [0])
    with pytest.raises(ShapeMismatchError, match="d_in"):
        add_features(small, tiny_sae(32, 16), [0])
    other = Sae.from_tensors(large.tensors(), SaeConfig(d_in=64, n_features=96, apply_b_dec_to_input=False))
    with pytest.raises(UnsupportedError, match="apply_b_dec_to_input"):
        add_features(small, other, [0])
    with pytest.raises(ConfigError, match=r"out of range for 96"):
        add_features(small, large, [96])
    with pytest.raises(ConfigError, match="duplicate"):
        add_features(small, large, [1, 1])
    with pytest.raises(ConfigError, match="no features"):
        hybrid(small, large, remove=np.arange(small.n_features))
