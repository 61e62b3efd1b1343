"""train: planted-dictionary recovery, determinism, one-pass ladders, SAELens checkpoints, config errors."""

from __future__ import annotations

import json

import pytest
import torch

from featgraph.errors import ConfigError
from featgraph.formats import load_sae
from featgraph.sae import Sae
from featgraph.training import TrainConfig, train_ladder, train_sae
from tests.builders import planted, store_of
from tests.conftest import run_main

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    x, atoms = planted(40_000)
    return store_of(x, tmp_path_factory.mktemp("planted") / "store"), atoms


def max_cos(sae: Sae, atoms: torch.Tensor) -> torch.Tensor:
    W = sae.W_dec.detach()
    return (atoms @ (W / W.norm(dim=1, keepdim=True)).T).max(1).values


@pytest.mark.parametrize("arch", ["relu", "topk"])
def test_recovers_planted_dictionary(planted_store, arch):
    store, atoms = planted_store
    cfg = TrainConfig(
        architecture=arch,
        k=3 if arch == "topk" else None,
        l1_coefficient=2.0,
        lr=3e-3,
        batch_size=256,
        epochs=5,
        dead_window=5000,
        resample_every=200,
    )
    sae = train_sae(store, 64, cfg, progress=False)
    cos = max_cos(sae, atoms)
    assert float((cos > 0.95).float().mean()) >= 0.9, cos
    # the saved SAE reads raw activations: its reconstruction error is small on the data itself
    x = store.read(5000)
    with torch.no_grad():
        err = (sae(x).x_hat - x).pow(2).sum(1).mean() / x.pow(2).sum(1).mean()
    assert float(err) < (0.2 if arch == "relu" else 0.1)  # L1 shrinks ReLU activations a little


def test_training_is_deterministic_and_ladder_differs_only_in_width(planted_store, tmp_path):
    store, _ = planted_store
    cfg = TrainConfig(batch_size=512, n_tokens=20_000, l1_coefficient=2.0, lr=3e-3)
    a = train_ladder(store, [32, 64], cfg, tmp_path / "a", name_prefix="p", progress=False)
    b = train_ladder(store, [32, 64], cfg, tmp_path / "b", name_prefix="p", progress=False)
    assert [f.name for f in a] == ["p-32", "p-64"]
    for fa, fb in zip(a, b, strict=True):
        assert (fa / "sae.safetensors").read_bytes() == (fb / "sae.safetensors").read_bytes()
    cfgs = [json.loads((f / "cfg.json").read_text()) for f in a]
    # same settings, data, scale: only the width and the init seed derived from it differ
    inits = [c["extra"].pop("init") for c in cfgs]
    assert cfgs[0]["extra"] == cfgs[1]["extra"]
    assert [i["init_seed"] for i in inits] == [32, 64]  # seed 0: init_seed = width
    assert cfgs[0]["extra"]["train"]["l1_coefficient"] == 2.0 and cfgs[0]["hook_name"] == "planted.hook"
    assert cfgs[0]["extra"]["train"]["n_tokens_trained"] == 19_968  # 39 steps of 512
    # decoder rows stay unit-norm (the scale is folded into the biases)
    W = Sae.load(a[1]).W_dec.detach()
    assert torch.allclose(W.norm(dim=1), torch.ones(64), atol=1e-5)


def test_saelens_checkpoints_load_back_bit_identically(planted_store, tmp_path):
    store, _ = planted_store
    for arch, k in (("relu", None), ("topk", 4)):
        cfg = TrainConfig(architecture=arch, k=k, batch_size=512, n_tokens=5_000)
        ours = train_ladder(
            store, [40], cfg, tmp_path / arch, saelens_dir=tmp_path / f"{arch}-sl", progress=False
        )
        trained = Sae.load(ours[0])
        back = load_sae(tmp_path / f"{arch}-sl" / "sae-40")
        assert back.cfg.architecture == arch and back.cfg.k == k
        for name, t in trained.tensors().items():
            assert torch.equal(back.tensors()[name], t), name
        x = store.read(100)
        assert torch.equal(back(x).x_hat, trained(x).x_hat)


def test_fp16_checkpoint_halves_size(planted_store, tmp_path):
    store, _ = planted_store
    cfg = TrainConfig(batch_size=512, n_tokens=2_000)
    (f32,) = train_ladder(store, [64], cfg, tmp_path / "32", progress=False)
    (f16,) = train_ladder(store, [64], cfg, tmp_path / "16", save_dtype=torch.float16, progress=False)
    assert (f16 / "sae.safetensors").stat().st_size < 0.6 * (f32 / "sae.safetensors").stat().st_size
    assert torch.allclose(Sae.load(f16).W_dec, Sae.load(f32).W_dec, atol=1e-3)


def test_resampling_replaces_dead_features_with_poorly_reconstructed_inputs():
    from featgraph.training.trainer import _Trainer

    x, _ = planted(512)
    cfg = TrainConfig(dead_window=1000)
    t = _Trainer(64, 32, cfg, b_dec=torch.zeros(32), seed=0)
    err = t.step(x, l1=1.0, lr=1e-3)
    t.since_fired[:] = 0
    t.since_fired[[3, 7, 11]] = 5000  # pretend these have been silent for 5000 tokens
    before = t.sae.W_dec.detach().clone()
    assert t.resample(x, err, torch.Generator().manual_seed(0)) == 3
    W = t.sae.W_dec.detach()
    changed = (W != before).any(1).nonzero().flatten().tolist()
    assert changed == [3, 7, 11]
    assert torch.allclose(W[[3, 7, 11]].norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.all(t.sae.b_enc.detach()[[3, 7, 11]] == 0)
    assert torch.all(t.opt.state[t.sae.W_dec]["exp_avg"][[3, 7, 11]] == 0)
    assert t.n_resampled == 3 and int(t.since_fired.max()) == 0
    # each new decoder row points along the residual of a training input
    resid_dirs = x - t.sae(x).x_hat
    assert float((W[[3, 7, 11]] @ torch.nn.functional.normalize(x, dim=1).T).abs().max()) > 0.3
    assert resid_dirs.shape == x.shape


def test_config_errors(planted_store):
    store, _ = planted_store
    with pytest.raises(ConfigError, match="'gated'"):
        TrainConfig(architecture="gated")
    with pytest.raises(ConfigError, match="k=None"):
        TrainConfig(architecture="topk")
    with pytest.raises(ConfigError, match=r"\[32, 32\]"):
        train_ladder(store, [32, 32], progress=False)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        train_ladder(store, [8], TrainConfig(batch_size=10**6), progress=False)


def test_cli_train_on_an_existing_store(planted_store, tmp_path):
    store, _ = planted_store
    out, sl = tmp_path / "ladder", tmp_path / "sl"
    code, stdout, err = run_main("train", "--widths", "16,32", "--acts", store.folder, "--out", out,
                                 "--train-tokens", 4096, "--batch-size", 256, "--fp16", "--saelens", sl, "-q")
    assert code == 0, err
    assert stdout.split() == [str(out / "sae-16"), str(out / "sae-32")]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["widths"] == [16, 32] and cfg["train"]["n_tokens"] == 4096
    assert cfg["hook_name"] == "planted.hook"
    assert load_sae(sl / "sae-32").n_features == 32
    assert Sae.load(out / "sae-16").cfg.extra["train"]["l1_coefficient"] == 2.0


def test_cli_train_bad_widths_is_one_line(planted_store, tmp_path):
    store, _ = planted_store
    code, _, err = run_main("train", "--widths", "16,abc", "--acts", store.folder, "--out", tmp_path / "o")
    assert code == 1 and "16,abc" in err and "Traceback" not in err


def test_killed_run_resumes_from_its_checkpoint_to_the_same_weights(planted_store, tmp_path, monkeypatch):
    from featgraph.training import trainer as train_mod

    store, _ = planted_store
    cfg = TrainConfig(batch_size=256, n_tokens=256 * 60, checkpoint_every=20, resample_every=25, dead_window=2000)
    whole = train_ladder(store, [16, 32], cfg, progress=False)
    real_step, calls = train_mod._Trainer.step, {"n": 0}

    def dying_step(self, *a, **kw):  # the process is "killed" during step 50 (after the checkpoint at 40)
        calls["n"] += 1
        if calls["n"] > 2 * 50:
            raise KeyboardInterrupt
        return real_step(self, *a, **kw)

    monkeypatch.setattr(train_mod._Trainer, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_ladder(store, [16, 32], cfg, progress=False, checkpoint_dir=tmp_path / "ckpt")
    assert torch.load(tmp_path / "ckpt" / "train_state.pt", weights_only=True)["step"] == 40
    monkeypatch.setattr(train_mod._Trainer, "step", real_step)
    resumed = train_ladder(store, [16, 32], cfg, progress=False, checkpoint_dir=tmp_path / "ckpt")
    for a, b in zip(whole, resumed, strict=True):
        for name, t in a.tensors().items():
            assert torch.equal(b.tensors()[name], t), name
    # a checkpoint of another run is refused, naming the file
    with pytest.raises(ConfigError, match="train_state.pt"):
        train_ladder(store, [16, 64], cfg, progress=False, checkpoint_dir=tmp_path / "ckpt")


def test_seed_control_trains_beside_the_ladder_without_changing_it(planted_store, tmp_path):
    store, _ = planted_store
    cfg = TrainConfig(batch_size=256, n_tokens=256 * 30, resample_every=10, dead_window=1000)
    alone = train_ladder(store, [16, 32], cfg, tmp_path / "a", name_prefix="p", progress=False)
    both = train_ladder(store, [16, 32], cfg, tmp_path / "b", name_prefix="p", progress=False, controls=[(32, 1)])
    assert [f.name for f in both] == ["p-16", "p-32", "p-32-seed1"]
    for fa, fb in zip(alone, both, strict=False):
        assert (fa / "sae.safetensors").read_bytes() == (fb / "sae.safetensors").read_bytes()
    ctrl, main = Sae.load(both[2]), Sae.load(both[1])
    assert ctrl.cfg.extra["init"]["init_seed"] != main.cfg.extra["init"]["init_seed"]
    assert not torch.equal(ctrl.W_dec, main.W_dec)
    with pytest.raises(ConfigError, match="seed other than 0"):
        train_ladder(store, [16], cfg, progress=False, controls=[(16, 0)])


def test_geometric_median_resists_outliers():
    from featgraph.training import geometric_median

    g = torch.Generator().manual_seed(0)
    x = torch.randn(999, 4, generator=g) * 0.1 + 1.0
    x = torch.cat([x, torch.full((1, 4), 1e4)])  # one huge-norm token (an attention sink) pulls the mean away
    assert float((x.mean(0) - 1).abs().max()) > 5
    assert float((geometric_median(x) - 1).abs().max()) < 0.05


@pytest.mark.parametrize("dense_below", [0.0, 1.1])  # always dense, always gathered
def test_hand_written_relu_gradients_equal_autograd(monkeypatch, dense_below):
    from featgraph.training import trainer as train_mod

    monkeypatch.setattr(train_mod, "DENSE_BELOW", dense_below)
    t = train_mod._Trainer(300, 40, TrainConfig(), b_dec=0.1 * torch.randn(40), seed=1)
    with torch.no_grad():
        t.sae.b_enc.copy_(torch.linspace(-1.5, 0.2, 300))  # from rarely to often active
    x = 1.3 * torch.randn(64, 40, generator=torch.Generator().manual_seed(5))
    err, fired, stats = t._relu_grads(x, 0.7)
    by_hand = {n: p.grad.clone() for n, p in t.sae.named_parameters()}
    t.sae.zero_grad(set_to_none=True)
    f = t.sae.encode(x)
    loss = ((t.sae.decode(f) - x) ** 2).sum(-1).mean() + 0.7 * f.sum(-1).mean()
    loss.backward()
    for n, p in t.sae.named_parameters():
        assert torch.allclose(by_hand[n], p.grad, rtol=1e-5, atol=1e-6 * float(p.grad.abs().max())), n
    assert stats["loss"] == pytest.approx(float(loss.detach()), rel=1e-5)
    assert stats["l0"] == pytest.approx(float((f > 0).sum(1).float().mean()))
    assert torch.equal(fired, (f > 0).any(0)) and torch.allclose(err, ((t.sae.decode(f) - x) ** 2).sum(-1).detach())
