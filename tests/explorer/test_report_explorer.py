"""``featgraph report --examples``: the report runs families on its ladder, writes the family explorer beside
report.html and shows the largest split families' panel; with the real ``featgraph explain`` output."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from featgraph.activations.store import ActivationStore
from featgraph.explorer.data import page_data
from featgraph.synthetic import planted_ladder
from tests.builders import projection_sae

from ..conftest import run_main
from ..hostile import assert_refused
from .test_page import embedded


@pytest.fixture(scope="module")
def ladder_store_examples(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    decs, _ = planted_ladder([32, 64, 128], 64, seed=5)
    root = tmp / "ladder"
    for i, W in enumerate(decs):
        sae = projection_sae(W, seed=i)
        sae.cfg.hook_name = "blocks.0.hook_resid_pre"
        sae.save(root / f"w{W.shape[0]}")
    rng = np.random.default_rng(5)
    unit = decs[-1] / np.linalg.norm(decs[-1], axis=1, keepdims=True)
    n_ctx, ctx = 20, 100
    code = rng.exponential(1.0, (n_ctx * ctx, 128)) * (rng.random((n_ctx * ctx, 128)) < 4.0 / 128)
    x = (code @ unit + 0.05 * rng.standard_normal((n_ctx * ctx, 64))).astype(np.float32)
    store = ActivationStore.create(tmp / "acts", model="synthetic", hook_name="blocks.0.hook_resid_pre", d_in=64,
                                   tokens=rng.integers(0, 300, (n_ctx, ctx)).astype(np.int32), exclude_bos=False,
                                   dtype="float32")
    store.write(x)
    store.mark_complete()
    ex = tmp / "examples"
    rc, _, err = run_main("explain", root, "--acts", tmp / "acts", "--out", ex, "-k", "3", "--window", "4",
                          "--tokenizer", "ids", "-q")
    assert rc == 0, err
    return root, tmp / "acts", ex


def test_report_with_examples_writes_families_explorer_and_panel(ladder_store_examples, tmp_path):
    root, acts, ex = ladder_store_examples
    out = tmp_path / "report"
    rc, stdout, err = run_main("report", root, "--out", out, "--acts", acts, "--examples", ex, "--no-frankenstein",
                               "-q")
    assert rc == 0, err
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 * 5 + 1  # five figures per pair + the split panel
    assert "What split features mean" in page and 'href="explorer.html"' in page
    assert not re.search(r"""(src|href)=["'](https?:|//)""", page)
    assert (out / "split_families.png").read_bytes()[:4] == b"\x89PNG"
    # families/ is what `featgraph families` writes for the same ladder, byte for byte
    fam = tmp_path / "fam"
    assert run_main("families", root, "--out", fam, "--quiet")[0] == 0
    for name in ("features.parquet", "edges.parquet", "families.parquet"):
        assert (out / "families" / name).read_bytes() == (fam / name).read_bytes(), name
    data = embedded(out / "explorer.html")
    want = page_data(fam, ex)
    for key in ("saes", "features", "edges", "families", "vocab", "examples"):
        assert data[key] == want[key], key
    assert data["examples"][0] and data["config"]["command"] == "report"
    config = json.loads((out / "config.json").read_text())
    assert config["examples"] == str(ex.resolve())


def test_report_refuses_a_bad_examples_folder_before_any_work(ladder_store_examples, tmp_path):
    root, acts, _ = ladder_store_examples
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "examples.parquet").write_text("not parquet")
    out = tmp_path / "report"
    assert_refused(["report", root, "--out", out, "--acts", acts, "--examples", bad, "--no-frankenstein", "-q"],
                   inputs=[root, acts, bad], out=out, needles=("examples.parquet",))
    assert_refused(["report", root, "--out", bad / "r", "--acts", acts, "--examples", bad, "-q"],
                   inputs=[root, acts, bad], needles=("lies inside the input",))
