"""``featgraph explore``'s library entry point: a families folder + an explain folder in, one HTML page out."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from featgraph.explorer.config import ExploreConfig
from featgraph.explorer.data import page_data
from featgraph.explorer.page import check_page_out, render_page, write_page


@dataclasses.dataclass
class ExploreResult:
    page: Path
    n_families: int
    n_trees: int
    n_features_with_examples: int
    size_bytes: int
    data: dict[str, Any]


def run_explore(cfg: ExploreConfig) -> ExploreResult:
    """Check ``--out`` (before reading anything), read both folders, write the page; the page's data holds the
    resolved config under ``config`` (a single file has no folder to put a config.json in)."""
    check_page_out(cfg.out, cfg.inputs())
    data = page_data(cfg.families, cfg.examples, contexts=cfg.contexts, window=cfg.window, title=cfg.title)
    data["config"] = cfg.to_json()
    page = render_page(data)
    out = write_page(page, cfg.out)
    trees = {t for f in data["features"] for t in f["tree"] if t is not None}
    return ExploreResult(out, len(data["families"]), len(trees), sum(len(e) for e in data["examples"]),
                         len(page.encode("utf-8")), data)
