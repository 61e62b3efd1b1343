"""Feature labels on an atlas's graph: ``--acts STORE`` (repeatable) and/or ``--examples DIR`` (repeatable).

A store is tied to one hook, so each ``--acts`` store explains exactly the atlas SAEs whose ``site`` is the store's
``hook_name`` (a store no SAE of the run lies at, or two stores at one site, is refused): one
:func:`featgraph.explain.run_explain` run per store, written to ``<out>/examples/<site>/`` (the folder
``featgraph explain`` writes). ``--examples`` folders (``featgraph explain`` outputs, e.g. of a site without a
store here) are read as they are and not copied. Every folder's labels (:func:`featgraph.explain.read_labels`) go
on the graph's nodes as ``label`` (``""`` for a feature no folder labels); an SAE labelled by two folders is
refused. Without stores or folders nothing here runs and the graph files are byte-identical to before.

Checks before the matching work (:func:`check_stores`): each store has token ids in whole contexts, matches a site,
has the d_in of its SAEs, and its tokenizer loads. A rerun reuses ``<out>/examples/<site>/`` when its
``summary.json`` records the same SAEs (names and decoder fingerprints), store (folder, token hash, size) and
tokenizer.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featgraph.errors import ConfigError, FeatgraphError

log = logging.getLogger(__name__)

EXAMPLES_DIR = "examples"


@dataclasses.dataclass(frozen=True)
class SiteStore:
    """One ``--acts`` store and the atlas SAEs (names, collection order) at its hook."""

    folder: Path
    site: str
    names: tuple[str, ...]
    tokens_sha256: str
    n_tokens: int
    tokenizer: str  #: what decodes its tokens: ``--tokenizer`` or the store's model


def check_stores(stores: Sequence[str], tokenizer: str | None, specs: Mapping[str, Any], entries: Mapping[str, Any],
                 used: Sequence[str]) -> list[SiteStore]:
    """Open every store and match it to the SAEs of the run at its hook (module docstring), before slow work."""
    from featgraph.explain.run import check_explainable, open_store

    out: list[SiteStore] = []
    for folder in stores:
        store, layout = open_store(folder)
        names = tuple(n for n in used if specs[n].site == store.hook_name)
        if not names:
            sites = sorted({specs[n].site for n in used})
            raise ConfigError(f"{store.folder}: the store holds {store.hook_name!r}, where no SAE of this atlas run "
                              f"lies (sites: {', '.join(sites)}); a store explains the SAEs at its own hook")
        if any(s.site == store.hook_name for s in out):
            raise ConfigError(f"{store.folder}: two --acts stores at site {store.hook_name!r}; give one per site")
        used_tokenizer = check_explainable(
            store, layout, [(entries[n].W_dec.shape[1], f"the SAE {n!r} ({specs[n].path})") for n in names], tokenizer)
        out.append(SiteStore(store.folder.resolve(), store.hook_name, names, store.meta["tokens_sha256"],
                             layout.n_contexts * layout.rows_per_context, used_tokenizer))
    return out


def read_folders(folders: Sequence[str]) -> dict[str, dict[int, str]]:
    """The labels of the ``--examples`` folders, merged; an SAE in two folders is refused (checked early)."""
    from featgraph.explain.labels import read_labels

    merged: dict[str, dict[int, str]] = {}
    where: dict[str, str] = {}
    for folder in folders:
        for sae, per in read_labels(folder).items():
            if sae in merged:
                raise ConfigError(f"{folder}: SAE {sae!r} is also labelled by {where[sae]}; give each SAE's labels "
                                  "once")
            merged[sae], where[sae] = per, str(folder)
    return merged


def _reusable(previous: Path, s: SiteStore, fps: Mapping[str, str]) -> bool:
    from featgraph.io.readers import read_json

    path = previous / "summary.json"
    if not path.is_file():
        return False
    try:
        old = read_json(path)
        st = old["store"]
        return (sorted((e["name"], e["fingerprint"]) for e in old["saes"]) == sorted((n, fps[n]) for n in s.names)
                and st["folder"] == str(s.folder) and st["tokens_sha256"] == s.tokens_sha256
                and st["n_tokens"] == s.n_tokens and old["tokenizer"] == s.tokenizer
                and (previous / "feature_stats.parquet").is_file() and (previous / "examples.parquet").is_file())
    except (FeatgraphError, TypeError, KeyError) as e:
        log.warning("%s: not reusing it (%s)", path, e)
        return False


def explain_stores(sites: Sequence[SiteStore], tokenizer: str | None, specs: Mapping[str, Any],
                   fps: Mapping[str, str], previous: Path, tmp: Path, *, progress: bool) -> tuple[list[Path], int]:
    """Each store's explain folder into ``tmp/examples/<site>/`` (copied from ``previous`` when reusable); returns
    the folders and how many were reused."""
    from featgraph.explain.config import ExplainConfig
    from featgraph.explain.run import run_explain

    folders, reused = [], 0
    for s in sites:
        target = tmp / EXAMPLES_DIR / s.site
        old = previous / EXAMPLES_DIR / s.site
        if _reusable(old, s, fps):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(old, target)
            reused += 1
        else:
            run_explain(ExplainConfig(saes=tuple(str(specs[n].path) for n in s.names), names=s.names,
                                      out=str(target), acts=str(s.folder), tokenizer=tokenizer, progress=progress))
        folders.append(target)
    return folders, reused


def merge_labels(given: dict[str, dict[int, str]], folders: Sequence[Path]) -> dict[str, dict[int, str]]:
    """``given`` (from ``--examples``) plus each explain folder's labels; an SAE labelled twice is refused."""
    from featgraph.explain.labels import read_labels

    merged = dict(given)
    for folder in folders:
        for sae, per in read_labels(folder).items():
            if sae in merged:
                raise ConfigError(f"SAE {sae!r} is labelled both by an --examples folder and by the store explained "
                                  f"into {folder.name}; give one")
            merged[sae] = per
    return merged
