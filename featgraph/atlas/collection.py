"""A collection: every SAE of a study, each with its model, site, layer, seed and other tags, read from a manifest
(TOML or JSON) or from a folder tree.

Manifest (``atlas.toml`` / ``atlas.json``)::

    [defaults]                  # optional: values every entry gets unless it sets its own
    model = "smollm2-135m"

    [[sae]]
    path = "l3/w1152"           # required; relative paths resolve against the manifest's folder; a path that
                                # does not exist may be an SAE name (RELEASE/SAE_ID, hf://...: featgraph.hub)
    site = "blocks.3.hook_resid_post"   # required: the hook point the SAE was trained on
    layer = 3                   # optional: read from the site ("blocks.3." / "layers.3." / "layer_3") when absent
    stream = "blocks.*.hook_resid_post" # optional: flow runs across the layers of one stream (default: the site
                                        # with its layer number replaced by "*")
    seed = 0                    # optional, default 0
    width = 1152                # optional: checked against the SAE's own width when given
    name = "l3-1152"            # optional, default: the folder name (or, when two share it, the path relative
                                # to the manifest's folder with "/" -> "-")
    tags = { l1 = "5e-4" }      # optional: anything else that tells SAEs apart (sparsity, lr, ...)

In JSON the same is ``{"defaults": {...}, "sae": [{...}, ...]}``. Any other key is refused, naming it.

Folder tree: ``ROOT/<site>/<name>/`` where each ``<name>`` is an SAE folder in any format featgraph reads (other
entries are ignored); the width comes from the SAE, the layer from the site name, and the seed from a ``seed<N>``
part of the name (``l3-1152-seed1``; default 0).

Refused with one line naming the file and entry: unknown keys, wrong types, a missing SAE, the same SAE twice
(by identity, :func:`featgraph.ladder.check_distinct_saes`), duplicate names, names featgraph cannot use as a
folder name. After loading (:func:`load_decoders`): a stated width that differs from the SAE's, two SAEs of one
site with different d_in, and two entries with identical decoders.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featgraph.errors import ConfigError, SaeFormatError, ShapeMismatchError

if TYPE_CHECKING:
    from featgraph.ladder import LadderEntry

ENTRY_KEYS = ("path", "site", "layer", "stream", "seed", "width", "name", "model", "tags")
DEFAULT_KEYS = ("site", "stream", "seed", "model", "tags")  # a default path, layer, width or name makes no sense
TOP_KEYS = ("defaults", "sae")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]*$")  # an SAE name is part of folder names (pair=<a>~<b>)
_LAYER_RE = re.compile(r"(?:^|[._/-])(?:blocks|layers|layer|block|h|l|L)[._-]?(\d+)(?=$|[._/-])")
_SEED_RE = re.compile(r"(?:^|[._-])seed[_-]?(\d+)(?=$|[._-])")
MANIFEST_MAX_BYTES = 16 * 2**20


@dataclasses.dataclass(frozen=True)
class SaeSpec:
    """One SAE of a collection as the manifest (or the folder tree) describes it."""

    name: str
    path: Path
    site: str
    layer: int | None
    stream: str
    seed: int
    model: str
    width: int | None  # as stated; None: read from the SAE
    tags: tuple[tuple[str, Any], ...]  # sorted (key, value) pairs

    def group(self) -> tuple:
        """Which SAEs form one ladder: same model, site, layer, seed and tags (widths differ). The layer counts
        too: a manifest may name one site (``resid_post``) and tell layers apart by ``layer`` alone."""
        return (self.model, self.site, self.layer, self.seed, self.tags)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "model": self.model, "site": self.site,
                "layer": self.layer, "stream": self.stream, "seed": self.seed, "tags": dict(self.tags)}


@dataclasses.dataclass
class Collection:
    """The SAEs of a collection (manifest order) and where they were described."""

    source: Path  # the manifest file or the folder tree
    saes: list[SaeSpec]

    def names(self) -> list[str]:
        return [s.name for s in self.saes]

    def __getitem__(self, name: str) -> SaeSpec:
        for s in self.saes:
            if s.name == name:
                return s
        raise KeyError(name)


def layer_of(site: str) -> int | None:
    """The layer number in a hook name (``blocks.3.hook_resid_post`` -> 3), or None."""
    m = _LAYER_RE.search(site)
    return int(m.group(1)) if m else None


def stream_of(site: str) -> str:
    """The site with its layer number replaced by ``*``: the sites of one stream at different layers."""
    m = _LAYER_RE.search(site)
    return site if m is None else site[: m.start(1)] + "*" + site[m.end(1):]


def read_collection(path: str | os.PathLike[str]) -> Collection:
    """A :class:`Collection` from a manifest file (``.toml`` or ``.json``) or a folder tree (module docstring)."""
    p = Path(path)
    if not p.exists():
        raise SaeFormatError(f"{p}: no such manifest file or folder")
    if p.is_dir():
        return _from_tree(p)
    return _from_manifest(p)


def _read_manifest_obj(p: Path) -> dict[str, Any]:
    from featgraph.io.readers import _read_bytes, parse_json_bytes, require_file

    data = _read_bytes(require_file(p), MANIFEST_MAX_BYTES)
    if p.suffix.lower() == ".json":
        obj = parse_json_bytes(data, p)
    elif p.suffix.lower() == ".toml":
        import tomllib

        try:
            obj = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise SaeFormatError(f"{p}: not UTF-8 text (offset {e.start})") from e
        except (tomllib.TOMLDecodeError, RecursionError) as e:
            raise SaeFormatError(f"{p}: not valid TOML ({str(e).splitlines()[0] if str(e) else e!r})") from e
    else:
        raise SaeFormatError(f"{p}: a manifest must be a .toml or .json file (or a folder of <site>/<sae> folders)")
    if not isinstance(obj, dict):
        raise SaeFormatError(f"{p}: expected a table/object at the top, got {type(obj).__name__}")
    return obj


def _from_manifest(p: Path) -> Collection:
    obj = _read_manifest_obj(p)
    unknown = sorted(set(obj) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{p}: unknown top-level key {unknown[0]!r} (allowed: {', '.join(TOP_KEYS)})")
    defaults = obj.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{p}: 'defaults' must be a table, got {type(defaults).__name__}")
    bad = sorted(set(defaults) - set(DEFAULT_KEYS))
    if bad:
        raise ConfigError(f"{p}: unknown key {bad[0]!r} in 'defaults' (allowed: {', '.join(DEFAULT_KEYS)})")
    entries = obj.get("sae")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{p}: needs a non-empty list 'sae' of entries ([[sae]] in TOML), got {entries!r}"[:300])
    root = p.resolve().parent
    saes = []
    for i, raw in enumerate(entries):
        where = f"{p}: sae entry {i + 1}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
        saes.append(_spec(where, root, {**defaults, **raw}))
    named = [isinstance(raw, dict) and "name" in raw for raw in entries]
    return _checked(p, _default_names(saes, named, root, [f"{p}: sae entry {i + 1}" for i in range(len(saes))]))


def _default_names(saes: list[SaeSpec], named: list[bool], root: Path, where: list[str]) -> list[SaeSpec]:
    """An entry without a ``name`` is called by its folder name, or, when another SAE has that name too, by its
    path relative to the manifest's folder with "/" -> "-" (``l3/w1152`` -> ``l3-w1152``); every name is checked."""
    short = [s.name for s in saes]
    out = []
    for spec, explicit, w in zip(saes, named, where, strict=True):
        name = spec.name
        if not explicit and short.count(name) > 1:
            rel = os.path.relpath(spec.path, root)
            name = "-".join(Path(rel).parts) if not rel.startswith("..") else name
        if not NAME_RE.match(name):
            raise ConfigError(f"{w}: name {name!r} must match {NAME_RE.pattern} (it names output folders); "
                              "set 'name'")
        out.append(dataclasses.replace(spec, name=name))
    return out


def _spec(where: str, root: Path, e: dict[str, Any]) -> SaeSpec:
    unknown = sorted(set(e) - set(ENTRY_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(ENTRY_KEYS)})")
    raw_path = _string(where, "path", e.get("path"))
    site = _string(where, "site", e.get("site"))
    path = Path(raw_path) if os.path.isabs(raw_path) else root / raw_path
    hub_name = None
    if not path.exists():
        path, hub_name = _hub_sae(where, raw_path, path)
    layer = _int(where, "layer", e.get("layer"), optional=True)
    layer = layer_of(site) if layer is None else layer
    stream = _string(where, "stream", e.get("stream", stream_of(site)))
    seed = _int(where, "seed", e.get("seed", 0))
    width = _int(where, "width", e.get("width"), optional=True, minimum=1)
    model = _string(where, "model", e.get("model", ""), empty_ok=True)
    default = hub_name or path.name  # may be lengthened by _default_names
    name = _string(where, "name", e["name"]) if "name" in e else default
    tags = e.get("tags", {})
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in tags.items()
    ):
        raise ConfigError(f"{where}: 'tags' must be a table of strings, numbers or booleans, got {tags!r}"[:300])
    return SaeSpec(name, path, site, layer, stream, seed, model, width, tuple(sorted(tags.items())))


def _hub_sae(where: str, raw: str, local: Path) -> tuple[Path, str]:
    """A path that is no local file may be an SAE name (``RELEASE/SAE_ID``, ``hf://...``: :mod:`featgraph.hub`,
    resolved into the Hugging Face cache, downloaded when online); it must name exactly one SAE. Returns its local
    path and its default name (the SAE id, "/" -> "-")."""
    from featgraph.hub import display_name, looks_like_name, resolve

    if not looks_like_name(raw):
        raise SaeFormatError(f"{where}: {local}: no such file or folder")
    found = resolve(raw)
    if len(found) != 1:
        raise ConfigError(f"{where}: {raw!r} names {len(found)} SAEs; a manifest entry is one SAE")
    return found[0], (display_name(found[0]) or found[0].name).replace("/", "-")


def _string(where: str, key: str, v: Any, *, empty_ok: bool = False) -> str:
    if not isinstance(v, str) or not (v or empty_ok):
        raise ConfigError(f"{where}: {key!r} must be a non-empty string, got {v!r}"[:300])
    return v


def _int(where: str, key: str, v: Any, *, optional: bool = False, minimum: int = 0) -> int | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"{where}: {key!r} must be an integer >= {minimum}, got {v!r}"[:300])
    return v


def _from_tree(root: Path) -> Collection:
    from featgraph.formats import detect_format

    if detect_format(root, missing_ok=True) is not None:
        raise SaeFormatError(f"{root}: is one SAE, not a collection (a manifest file or a folder of "
                             "<site>/<sae> folders)")
    saes, where = [], []
    for site_dir in sorted(c for c in root.iterdir() if c.is_dir()):
        for sae_dir in sorted(c for c in site_dir.iterdir() if c.is_dir()):
            if detect_format(sae_dir, missing_ok=True) is None:
                continue
            m = _SEED_RE.search(sae_dir.name)
            site = site_dir.name
            spec = {"path": str(sae_dir), "site": site, "seed": int(m.group(1)) if m else 0,
                    "name": f"{site}-{sae_dir.name}"}
            saes.append(_spec(f"{sae_dir}", root, spec))
            where.append(str(sae_dir))
    if not saes:
        raise SaeFormatError(f"{root}: no SAE folders found as <site>/<sae> (expected a manifest file or such a "
                             "folder tree)")
    return _checked(root, _default_names(saes, [True] * len(saes), root, where))


def _checked(source: Path, saes: Sequence[SaeSpec]) -> Collection:
    from featgraph.ladder import check_distinct_saes

    names = [s.name for s in saes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{source}: duplicate SAE name {dup[0]!r}; set distinct 'name' values")
    try:
        check_distinct_saes([s.path for s in saes])
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from e
    return Collection(source, list(saes))


def load_decoders(coll: Collection, names: Sequence[str]) -> tuple[dict[str, LadderEntry], dict[str, str]]:
    """Each named SAE's decoder as a :class:`~featgraph.ladder.LadderEntry` (float32 ``[F, d_in]`` rows) and its
    fingerprint (:meth:`~featgraph.ladder.LadderEntry.fingerprint`, the one definition, computed once here),
    checked against the collection (module docstring)."""
    from featgraph.formats import load_decoder
    from featgraph.ladder import LadderEntry

    out: dict[str, LadderEntry] = {}
    d_in_of_site: dict[tuple[str, str], tuple[int, str]] = {}
    seen: dict[str, str] = {}
    fps: dict[str, str] = {}
    for name in names:
        spec = coll[name]
        fmt, W = load_decoder(spec.path)
        if spec.width is not None and spec.width != W.shape[0]:
            raise ShapeMismatchError(f"{coll.source}: SAE {name!r} ({spec.path}) states width {spec.width} but "
                                     f"has {W.shape[0]} features")
        first = d_in_of_site.setdefault((spec.model, spec.site), (W.shape[1], name))
        if first[0] != W.shape[1]:
            raise ShapeMismatchError(f"{coll.source}: site {spec.site!r} mixes d_in: {first[1]!r} has d_in="
                                     f"{first[0]}, {name!r} ({spec.path}) has d_in={W.shape[1]}")
        entry = LadderEntry(name=name, path=spec.path, format=fmt, W_dec=W)
        fps[name] = entry.fingerprint()
        other = seen.setdefault(fps[name], name)
        if other != name:
            raise ConfigError(f"{coll.source}: {other!r} and {name!r} ({spec.path}) have identical decoders: "
                              "the same SAE given twice")
        out[name] = entry
    return out, fps
