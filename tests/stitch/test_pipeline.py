"""The streaming stitch pipeline equals the 0.1 pipeline (one pass per analysis) on a small synthetic case, reads
the store batch by batch, and its config object validates once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from featgraph.activations.store import ActivationStore
from featgraph.config import FrankensteinConfig, ReportConfig, StitchConfig
from featgraph.errors import ConfigError
from featgraph.stitch.batches import StoreRows, iter_acts
from featgraph.stitch.pair import analyze_pair
from featgraph.synthetic import planted_ladder
from tests.builders import projection_sae

from ..conftest import run_main
from .old_pipeline import old_analyze_pair

D = 32


def _pair(arch: str):
    decs, _ = planted_ladder([24, 48], D, seed=11, near_tau=0.7, n_near_tau=3)
    small, large = (projection_sae(W, seed=i, architecture=arch, bias=0.3) for i, W in enumerate(decs))
    rng = np.random.default_rng(3)
    unit = decs[1] / np.linalg.norm(decs[1], axis=1, keepdims=True)
    n = 1500
    code = rng.exponential(1.0, (n, 48)) * (rng.random((n, 48)) < 5.0 / 48)
    x = (code @ unit + 0.05 * rng.standard_normal((n, D))).astype(np.float32)
    return small, large, x


def _store(tmp_path, x: np.ndarray, shards: int = 3) -> ActivationStore:
    store = ActivationStore.create(tmp_path / "acts", model="synthetic", hook_name="h", d_in=x.shape[1],
                                   tokens=np.zeros((15, 100), np.int32), exclude_bos=False, dtype="float32")
    for part in np.array_split(x, shards):
        store.write(part)
    store.mark_complete()
    return store


def close(new, old, *, scale: float, rtol: float = 1e-6) -> None:
    """Equal up to float summation order: relative to each value, or to the SAE's MSE for values near 0."""
    np.testing.assert_allclose(np.asarray(new, float), np.asarray(old, float), rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("arch", ["relu", "jumprelu"])
def test_streaming_pipeline_equals_the_old_one(tmp_path, arch):
    small, large, x = _pair(arch)
    store = _store(tmp_path, x)
    # a batch size that divides neither the store nor its shards: batch edges fall inside shards
    new = analyze_pair(small, large, StoreRows(store), batch_size=256, progress=False)
    old = old_analyze_pair(small, large, torch.from_numpy(x), batch_size=512)
    mse = old["mse_small"]
    assert new.summary["mse_small"] == pytest.approx(mse, rel=1e-6)
    assert new.summary["l0_small"] == pytest.approx(old["l0_small"], rel=1e-9)
    for col in old["features"].columns:  # dmse, dl0, active_frac, both SAEs' MSE where each feature fires or not
        close(new.features[col].to_numpy(), old["features"][col].to_numpy(), scale=mse, rtol=1e-5
              if "mse_" in col else 1e-6)  # the old active/inactive table summed float32 errors: 1e-5
    assert new.summary["two_by_two"] == old["two_by_two"]
    assert new.cumulative.keys() == old["cumulative"].keys()
    for k, curve in old["cumulative"].items():
        close(new.cumulative[k], curve, scale=mse)
    close(new.swaps["dmse"].to_numpy(), old["swaps"]["dmse"].to_numpy(), scale=mse)
    close(new.swaps["dl0"].to_numpy(), old["swaps"]["dl0"].to_numpy(), scale=1.0)
    assert new.path["n_features"].to_list() == old["path"]["n_features"].to_list()
    for col in ("mse", "l0", "explained_variance"):
        close(new.path[col].to_numpy(), old["path"][col].to_numpy(), scale=mse if col == "mse" else 1.0)
    # the pair's points came from evaluate_sae in float32; the pass computes them in float64
    for col in ("mse", "l0", "explained_variance"):
        close(new.points[col].to_numpy(), old["points"][col].to_numpy(), scale=1.0, rtol=1e-5)
    assert len(new.swaps) > 3 and (new.features["category"] == "novel").sum() > 3  # the case is not trivial


def test_store_is_read_one_batch_at_a_time(tmp_path, monkeypatch):
    small, large, x = _pair("relu")
    store = _store(tmp_path, x, shards=2)
    sizes = []
    real_read = ActivationStore.read

    def read(self, n_tokens=None, offset=0):
        sizes.append(n_tokens)
        return real_read(self, n_tokens, offset)

    monkeypatch.setattr(ActivationStore, "read", read)
    got = torch.cat(list(iter_acts(store, 200)))
    assert torch.equal(got, torch.from_numpy(x)) and max(sizes) == 200 and None not in sizes
    sizes.clear()
    analyze_pair(small, large, store, batch_size=300, progress=False)
    assert sizes and max(sizes) == 300  # one pass: 1500 / 300 reads, never the whole store
    assert len(sizes) == 5


def test_store_rows_halves_and_empty_range(tmp_path):
    _, _, x = _pair("relu")
    rows = StoreRows(_store(tmp_path, x), 1000)
    assert len(rows.head(400)) == 400 and len(rows.tail(400)) == 600
    assert torch.equal(torch.cat(list(rows.tail(400))), torch.from_numpy(x[400:1000]))
    with pytest.raises(ConfigError, match="no activations from offset 1500"):
        StoreRows(rows.store, None, 1500)


def test_configs_validate_once_and_write_config_json():
    cfg = StitchConfig(small="a", large="b", out="o", acts="s", tau=0.5)
    assert cfg.to_json(n_tokens=7) == {
        "command": "stitch", "acts": "s", "n_tokens": 7, "tau": 0.5, "ce_contexts": 0, "model": None,
        "batch_size": 4096, "small": "a", "large": "b", "ce_points": 6,
    }
    for bad, needle in [({"tau": 1.0}, "tau must be a number in (0, 1), got 1.0"),
                        ({"tau": True}, "got True"),
                        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
                        ({"n_tokens": -5}, "n_tokens must be an integer >= 1, got -5"),
                        ({"small": ""}, "small must be a path")]:
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            StitchConfig(**{"small": "a", "large": "b", "out": "o", "acts": "s", **bad})
    with pytest.raises(ConfigError, match="lr must be a number > 0"):
        FrankensteinConfig(saes=("a",), out="o", acts="s", lr=0.0)
    with pytest.raises(ConfigError, match="needs at least one SAE"):
        ReportConfig(out="o", acts="s")
    assert ReportConfig(saes=("a", "b"), out="o", acts="s").to_json()["saes"] == ["a", "b"]


def test_cli_tau_error_is_one_line(tmp_path):
    code, _, err = run_main("stitch", "a", "b", "--acts", tmp_path, "--out", tmp_path / "o", "--tau", "1.5")
    assert code == 1 and err.strip() == "error: tau must be a number in (0, 1), got 1.5"
    assert not (tmp_path / "o").exists()


def test_stitch_config_json_records_what_ran(tmp_path):
    small, large, x = _pair("relu")
    store = _store(tmp_path, x)
    small.save(tmp_path / "s24")
    large.save(tmp_path / "l48")
    code, _, err = run_main("stitch", tmp_path / "s24", tmp_path / "l48", "--acts", store.folder, "--out",
                            tmp_path / "o", "--n-tokens", "1000", "--batch-size", "128", "-q")
    assert code == 0, err
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["n_tokens"] == 1000 and cfg["batch_size"] == 128 and cfg["small"] == str((tmp_path / "s24").resolve())
    assert (tmp_path / "o" / "swaps.parquet").exists() and not (tmp_path / "o" / "families.parquet").exists()


def test_stitch_resolves_names_like_other_commands(tmp_path, monkeypatch):
    """SMALL/LARGE that are not local paths go through expand_sae_paths (the hub resolution, stubbed here with
    local folders); a name naming a whole ladder is refused, and --out inside a resolved folder too."""
    import featgraph.hub as hub

    small, large, x = _pair("relu")
    store = _store(tmp_path, x)
    cache = tmp_path / "cache"
    small.save(cache / "s24")
    large.save(cache / "l48")
    names = {"rel/s24": [cache / "s24"], "rel/l48": [cache / "l48"], "rel": [cache / "s24", cache / "l48"]}
    monkeypatch.setattr(hub, "looks_like_name", lambda raw: raw in names)
    monkeypatch.setattr(hub, "resolve", lambda raw: list(names[raw]))
    code, out, err = run_main("stitch", "rel/s24", "rel/l48", "--acts", store.folder, "--out", tmp_path / "o", "-q")
    assert code == 0, err
    assert "s24 -> l48 on 1500 tokens" in out
    code, _, err = run_main("stitch", "rel", "rel/l48", "--acts", store.folder, "--out", tmp_path / "o2", "-q")
    assert code == 1 and "SMALL rel names 2 SAEs" in err and err.count("\n") == 1
    code, _, err = run_main("stitch", "rel/s24", "rel/l48", "--acts", store.folder, "--out", cache / "l48" / "o",
                            "-q")
    assert code == 1 and "inside" in err and not (cache / "l48" / "o").exists()
