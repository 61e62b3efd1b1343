"""Provenance of SAEs resolved from names (:class:`HubSource`, kept by local path) and the Neuronpedia links
it gives a families result."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("featgraph.hub")

NEURONPEDIA = "https://www.neuronpedia.org"


# -- provenance -----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class HubSource:
    """Where a resolved SAE came from. ``files`` maps each fetched repo file to its cache blob id (the sha256 of
    an LFS file, the git blob sha1 of a small one: huggingface_hub names blobs by the file's ETag)."""

    name: str
    spec: str
    repo: str
    revision: str  # as asked ("main" when not given)
    commit: str
    path: str  # the SAE's path in the repo
    files: dict[str, str]
    release: str | None = None
    sae_id: str | None = None
    neuronpedia: str | None = None
    width: int | None = None

    def neuronpedia_url(self, feature: int) -> str | None:
        """The feature's Neuronpedia dashboard, when the SAE has a Neuronpedia id."""
        return f"{NEURONPEDIA}/{self.neuronpedia}/{int(feature)}" if self.neuronpedia else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SOURCES: dict[str, HubSource] = {}


def source_of(path: str | Path) -> HubSource | None:
    """The provenance of an SAE path this process resolved from a name, else None."""
    return _SOURCES.get(os.path.abspath(path))


def display_name(path: str | Path) -> str | None:
    """The default name of an SAE resolved from a name (its SAE id, or its path in the repo), else None: cache
    folder names are commit hashes and ``average_l0_82``-style leaves, no use as names."""
    src = source_of(path)
    return src.name if src else None


def remember(local: Path, src: HubSource) -> None:
    _SOURCES[os.path.abspath(local)] = src
    log.info("%s -> %s (commit %s)", src.spec, local, src.commit)


# -- attaching provenance and Neuronpedia links to results ----------------------------------------------------
def annotate_results(ladder: Any, features: Any, graph: Any, summary: dict[str, Any]) -> Any:
    """Add hub provenance and Neuronpedia links to a families result whose SAEs were resolved from names.

    ``features`` (a polars frame) gains a ``neuronpedia_url`` column (null for SAEs without a Neuronpedia id),
    each graph node a ``neuronpedia_url`` attribute ("" where there is none: GraphML holds no None), each
    ``summary["saes"]`` entry a ``source`` (:meth:`HubSource.to_dict`) and ``summary["config"]`` a ``sources``
    list (None for local SAEs). A ladder of local SAEs only is left exactly as it was. Returns the features.
    """
    import polars as pl

    sources = [source_of(e.path) for e in ladder]
    if not any(sources):
        return features
    for entry, src in zip(summary["saes"], sources, strict=True):
        if src is not None:
            entry["source"] = src.to_dict()
    summary["config"]["sources"] = [src.to_dict() if src else None for src in sources]
    prefixes = {e.name: f"{NEURONPEDIA}/{src.neuronpedia}/" for e, src in zip(ladder, sources, strict=True)
                if src is not None and src.neuronpedia}
    if not prefixes:
        return features
    url = pl.concat_str([pl.col("sae").replace_strict(prefixes, default=None, return_dtype=pl.String),
                         pl.col("feature").cast(pl.String)])
    features = features.with_columns(url.alias("neuronpedia_url"))
    from featgraph.graph import node_id

    for sae, feature, link in features.select("sae", "feature", "neuronpedia_url").iter_rows() if graph else ():
        graph.nodes[node_id(sae, feature)]["neuronpedia_url"] = link or ""
    return features


def sources_of(paths: Any) -> list[dict[str, Any] | None] | None:
    """Each SAE path's provenance (:meth:`HubSource.to_dict`, None for a local SAE) in the order given, or None
    when none came from a name: a run on local SAEs only writes its files exactly as before."""
    sources = [source_of(p) for p in paths]
    return [src.to_dict() if src else None for src in sources] if any(sources) else None
