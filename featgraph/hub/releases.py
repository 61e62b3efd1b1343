"""featgraph's release registry: SAELens release names -> hub repo, SAE ids, sites, widths, Neuronpedia ids.

The data is ``featgraph/hub/registry/releases.json.gz`` (generated from SAELens's ``pretrained_saes.yaml`` by
``scripts/make_release_registry.py``); ``FEATGRAPH_RELEASE_REGISTRY`` points at another file.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import os
from pathlib import Path
from typing import Any

from featgraph.errors import ConfigError
from featgraph.io import readers

REGISTRY_PATH = Path(__file__).resolve().parent / "registry" / "releases.json.gz"
REGISTRY_ENV = "FEATGRAPH_RELEASE_REGISTRY"


# -- the registry ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RegistrySae:
    """One SAE of a release: its id, path in the repo, model site, width (None: not known before loading) and
    Neuronpedia id."""

    release: str
    sae_id: str
    path: str
    site: str
    width: int | None
    neuronpedia: str | None


@dataclasses.dataclass(frozen=True)
class Release:
    name: str
    repo: str
    model: str | None
    conversion: str | None  # SAELens's conversion function
    format: str | None  # the featgraph format reading it; None: no featgraph reader
    saes: tuple[RegistrySae, ...]

    @property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(s.site for s in self.saes))


@dataclasses.dataclass(frozen=True)
class Registry:
    source: dict[str, Any]
    releases: dict[str, Release]
    path: Path


def registry_path() -> Path:
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else REGISTRY_PATH


def load_registry(path: str | Path | None = None) -> Registry:
    """The release registry (``path``, else ``$FEATGRAPH_RELEASE_REGISTRY``, else the shipped one)."""
    p = Path(path) if path is not None else registry_path()
    try:
        st = p.stat()
    except OSError as e:
        raise ConfigError(f"release registry {p}: cannot be read ({e.strerror})") from e
    return _load_registry(str(p), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_registry(path: str, _mtime: int, _size: int) -> Registry:
    p = Path(path)
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:  # read to a cap: a gzip bomb stops there
                raw = gz.read(readers.JSON_MAX_BYTES + 1)
            if len(raw) > readers.JSON_MAX_BYTES:
                raise ValueError(f"decompresses to more than {readers.JSON_MAX_BYTES} bytes")
        obj = readers.parse_json_bytes(raw, p)  # the checked reader: depth, number size, duplicate keys
        fields = obj["sae_fields"]
        releases = {}
        for name, r in obj["releases"].items():
            saes = tuple(RegistrySae(name, **dict(zip(_FIELD_NAMES, _pick(row, fields), strict=True)))
                         for row in r["saes"])
            releases[name] = Release(name, r["repo"], r.get("model"), r.get("conversion"), r.get("format"), saes)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"release registry {p}: not a registry written by scripts/make_release_registry.py "
                          f"({type(e).__name__}: {e})") from e
    return Registry(obj.get("source", {}), releases, p)


_FIELD_NAMES = ("sae_id", "path", "site", "width", "neuronpedia")


def _pick(row: list, fields: list[str]) -> list:
    by = dict(zip(fields, row, strict=True))
    return [by["id"], by["path"], by["site"], by["width"], by.get("neuronpedia")]


# -- listing --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ReleaseSite:
    """One (release, site) row of ``featgraph releases``: its SAEs' widths (None: unknown)."""

    release: str
    model: str | None
    repo: str
    format: str | None
    site: str
    widths: tuple[int | None, ...]
    neuronpedia: bool


def release_sites(search: str | None = None) -> list[ReleaseSite]:
    """Every (release, site) of the registry whose release, model, repo or site contains ``search``
    (case-insensitive)."""
    reg = load_registry()
    rows = []
    needle = (search or "").lower()
    for rel in sorted(reg.releases.values(), key=lambda r: r.name):
        for site in rel.sites:
            saes = [s for s in rel.saes if s.site == site]
            text = " ".join([rel.name, rel.model or "", rel.repo, site]).lower()
            if needle and needle not in text:
                continue
            widths = tuple(sorted((s.width for s in saes), key=lambda w: (w is None, w or 0)))
            rows.append(ReleaseSite(rel.name, rel.model, rel.repo, rel.format, site, widths,
                                    any(s.neuronpedia for s in saes)))
    return rows
