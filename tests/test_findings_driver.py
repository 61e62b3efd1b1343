"""examples/findings_smollm2.py on a tiny planted ladder with a seed control and two token stores: every step runs
(featgraph's commands, in-process here), a second run skips them all, and the digest's numbers are the ones in the
outputs it read (not re-typed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from featgraph.synthetic import planted_ladder

from .builders import projection_sae
from .conftest import run_main
from .explain.builders import token_store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "findings_smollm2.py"


def _driver():
    spec = importlib.util.spec_from_file_location("findings_smollm2", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _store(folder: Path, atoms: np.ndarray, n_ctx: int, ctx: int, seed: int):
    """Sparse mixtures of the widest SAE's unit rows plus noise, with BOS left out and random token ids."""
    rng = np.random.default_rng(seed)
    n = n_ctx * (ctx - 1)
    code = rng.exponential(1.0, (n, atoms.shape[0])) * (rng.random((n, atoms.shape[0])) < 4.0 / atoms.shape[0])
    x = (code @ atoms + 0.05 * rng.standard_normal((n, atoms.shape[1]))).astype(np.float32)
    tokens = rng.integers(2, 40, size=(n_ctx, ctx)).astype(np.int32)
    tokens[:, 0] = 1
    return token_store(folder, x, tokens, exclude_bos=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("findings")
    decs = planted_ladder([24, 48, 96], 16, seed=3)[0]
    ladder = tmp / "ladder"
    for i, W in enumerate(decs):
        projection_sae(W, seed=i).save(ladder / f"l3-{W.shape[0]}")
    rng = np.random.default_rng(9)
    W2 = decs[1] + 0.1 * rng.standard_normal(decs[1].shape).astype(np.float32)  # another "seed" of width 48
    projection_sae(W2, seed=5).save(ladder / "seed-control" / "l3-48-seed1")
    unit = decs[2] / np.linalg.norm(decs[2], axis=1, keepdims=True)
    held, train = _store(tmp / "held", unit, 24, 9, 1), _store(tmp / "train", unit, 40, 9, 2)
    mod = _driver()
    calls: list[list[str]] = []

    def in_process(argv: list[str]) -> int:
        calls.append(argv)
        rc, _, err = run_main(*argv)
        assert rc == 0, (argv, err)
        return rc

    mod.invoke = in_process
    args = ["--ladder", str(ladder), "--heldout", str(held.folder), "--train", str(train.folder),
            "--out", str(tmp / "out"), "--ce-contexts", "0", "--retrain-tokens", "200", "--explain-tokens", "100",
            "--tokenizer", "ids", "--quiet"]
    mod.main(args)
    first = list(calls)
    mod.main(args)  # every output exists: nothing runs again, the digest is rewritten
    return tmp / "out", first, calls[len(first):], ladder


def test_every_step_runs_once_and_a_rerun_skips_them(tiny_run):
    out, first, second, _ = tiny_run
    assert [a[0] for a in first] == ["report", "compare", "compare", "compare", "families", "explain", "explore"]
    assert second == []
    steps = json.loads((out / "steps.json").read_text())
    assert all(v["reused"] for v in steps.values()) and set(steps) >= {"report", "compare-seed", "explore"}
    assert all(v["wall_s"] is not None for v in steps.values())  # the first run's times survive the rerun
    assert (out / "explorer" / "smollm2-135m.html").stat().st_size > 0


def test_digest_quotes_the_outputs(tiny_run):
    out, _, _, ladder = tiny_run
    digest = (out / "FINDINGS_NUMBERS.md").read_text()
    pair = json.loads((out / "report" / "pairs" / "l3-24__l3-48" / "summary.json").read_text())
    t = pair["two_by_two"]["novel"]
    lo, hi = pair["intervals"]["two_by_two"]["novel"]["dmse_lt_0"]
    assert f"| delta-MSE < 0 | {t['dmse_lt_0']:,} [{lo:,.0f}, {hi:,.0f}] |" in digest
    seed = json.loads((out / "compare-seed" / "summary.json").read_text())["results"]["assignment"]
    assert f"| PW-MCC | {seed['pw_mcc']:.3f} |" in digest
    cmp = pl.read_parquet(out / "report" / "frankenstein" / "comparison.parquet")
    assert all(f"| {n} |" in digest for n in cmp["name"])
    import hashlib

    sha = hashlib.sha256((ladder / "l3-96" / "sae.safetensors").read_bytes()).hexdigest()
    assert f"`{sha}`" in digest
    meta = json.loads((ladder.parent / "held" / "meta.json").read_text())
    assert f"`{meta['tokens_sha256']}`" in digest
