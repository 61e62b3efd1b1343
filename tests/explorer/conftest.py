"""Builders for the explorer tests: a real families folder from a planted ladder, and an explain folder written in
explain's schema (featgraph.explain.tables) with made-up but deterministic contexts.

The contexts are synthetic on purpose: the explorer only displays what explain wrote, so the tests check that
the page shows exactly these rows. Some tokens hold HTML and script text to prove the page escapes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from featgraph.explain.tables import EXAMPLES_SCHEMA, STATS_SCHEMA
from featgraph.synthetic import planted_ladder

from ..conftest import write_ladder

WORDS = [" Monday", " Tuesday", " the", "\n", " <b>bold</b>", "</script>", " cat", ' "q"', " &amp;", "é", " 42"]


def examples_folder(folder: Path, saes: list[tuple[str, int]], *, k: int = 4, window: int = 5,
                    seed: int = 0, skip_every: int = 5) -> Path:
    """``examples.parquet`` + ``feature_stats.parquet`` for SAEs ``[(name, width)]``: k contexts per feature
    (activation falling with rank; features whose index is a multiple of ``skip_every`` never fire: no rows)."""
    rng = np.random.default_rng(seed)
    ex_rows, st_rows = [], []
    for name, width in saes:
        for f in range(width):
            active = f % skip_every != 0
            tops = [WORDS[(f + j) % len(WORDS)] for j in range(3)] if active else []
            st_rows.append({"sae": name, "feature": f, "n_tokens": 1000, "n_active": 10 * active,
                            "frequency": 0.01 * active, "mean_act": 1.0 if active else None,
                            "max_act": float(k + 1) if active else 0.0, "top_tokens": tops,
                            "top_token_counts": [3, 2, 1][: len(tops)], "top_tokens_by_act": tops,
                            "top_token_act_sums": [3.0, 2.0, 1.0][: len(tops)], "label": "|".join(tops)})
            if not active:
                continue
            for r in range(k):
                n = 2 * window + 1
                toks = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), n)]
                acts = np.where(rng.random(n) < 0.4, rng.random(n), 0.0).astype(np.float32)
                center = int(rng.integers(0, n))
                acts[center] = float(k - r) + 1.0
                ex_rows.append({"sae": name, "feature": f, "rank": r, "activation": float(acts[center]),
                                "context": int(rng.integers(0, 500)), "position": center,
                                "token_ids": [int(i) for i in rng.integers(0, 100, n)], "tokens": toks,
                                "acts": acts.tolist(), "center": center})
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(ex_rows, schema=EXAMPLES_SCHEMA).write_parquet(folder / "examples.parquet")
    pl.DataFrame(st_rows, schema=STATS_SCHEMA).write_parquet(folder / "feature_stats.parquet")
    return folder


@pytest.fixture(scope="module")
def explorer_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """(families folder, examples folder) for a planted ladder of widths 48, 96, 192 (copies, splits, novel)."""
    from featgraph.families import run_families

    tmp = tmp_path_factory.mktemp("explorer")
    decoders = planted_ladder([48, 96, 192], 24, seed=7)[0]
    ladder = write_ladder(tmp, decoders, names=["a48", "b96", "c192"])
    fam = tmp / "fam"
    run_families([str(ladder / n) for n in ("a48", "b96", "c192")], fam, progress=False)
    ex = examples_folder(tmp / "examples", [("a48", 48), ("b96", 96), ("c192", 192)])
    return fam, ex
