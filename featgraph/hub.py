"""SAEs by the names researchers use: SAELens release names and Hugging Face hub paths.

Three spellings are accepted wherever an SAE path is (``featgraph.ladder.expand_sae_paths`` sends every argument
that does not exist as a local path here; **a local path that exists always wins over a name**):

- ``RELEASE``: every SAE of a SAELens release at one model site, as a ladder. A release with SAEs at several
  sites (Gemma Scope: one per layer) is refused with the list of its sites; pick one as ``RELEASE@SITE``
  (``gemma-scope-2b-pt-res-canonical@layer_12``). A site with several SAEs of one width (Gemma Scope's L0
  sweeps) is refused too: name those SAEs one by one.
- ``RELEASE/SAE_ID``: one SAE of a release (``gpt2-small-res-jb-feature-splitting/blocks.8.hook_resid_pre_768``).
- ``hf://OWNER/REPO[@REVISION][/PATH]``: a folder or file in a hub model repo (huggingface_hub's own URI
  syntax, parsed by ``huggingface_hub.parse_hf_uri``), e.g.
  ``hf://google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82``. ``@REVISION`` pins a branch, tag or
  commit.

Releases come from featgraph's registry (``featgraph/registry/releases.json.gz``, generated from SAELens's
``pretrained_saes.yaml`` by ``scripts/make_release_registry.py``; ``FEATGRAPH_RELEASE_REGISTRY`` points at
another registry file, as the tests do). sae-lens itself is not needed.

Files are fetched with ``huggingface_hub.hf_hub_download`` into its normal cache (``HF_HUB_CACHE``, else
``HF_HOME/hub``), with its progress bars (hidden by ``HF_HUB_DISABLE_PROGRESS_BARS=1``, :func:`set_progress` or
:func:`progress_bars`, which ``featgraph families --quiet`` uses) and its token lookup (``HF_TOKEN``, ``hf auth
login``). Only the files a reader needs are fetched: SAELens ``cfg.json`` + ``sae_weights.safetensors`` (not
``sparsity.safetensors``), Gemma Scope ``params.npz``, dictionary_learning ``ae.pt`` + ``config.json``. With
``HF_HUB_OFFLINE=1`` (or with the hub unreachable) a name whose files are in the cache works, and one whose files
are not fails in one line naming the repo, revision and files to download.

Every resolved SAE's provenance (:class:`HubSource`: release, SAE id, Neuronpedia id, repo, requested revision,
commit hash, and the cache blob id of each file) is kept by local path: :func:`source_of` returns it, so a result
can name exactly the weights it came from, and :meth:`HubSource.neuronpedia_url` gives a feature's dashboard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from featgraph import readers
from featgraph.errors import ConfigError, SaeFormatError, UnsupportedError

log = logging.getLogger(__name__)

REGISTRY_PATH = Path(__file__).resolve().parent / "registry" / "releases.json.gz"
REGISTRY_ENV = "FEATGRAPH_RELEASE_REGISTRY"
NEURONPEDIA = "https://www.neuronpedia.org"

# the files each format's reader needs (featgraph.formats); "optional" ones are used when present
_FORMAT_FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "saelens": (("cfg.json", "sae_weights.safetensors"), ()),
    "gemmascope": (("params.npz",), ()),
    "dictionary_learning": (("ae.pt",), ("config.json",)),
    "featgraph": (("cfg.json", "sae.safetensors"), ()),
    "sparsify": (("cfg.json", "sae.safetensors"), ()),
}
# an hf:// folder of unknown format: the layouts tried, in featgraph.formats' detection order
_FOLDER_LAYOUTS = ("gemmascope", "dictionary_learning", "saelens", "sparsify")
_progress = True


def set_progress(enabled: bool) -> None:
    """Show (default) or hide huggingface_hub's download progress bars (a command's ``--quiet``)."""
    global _progress
    _progress = enabled


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Within the block, show (or with ``enabled`` False hide) download progress bars; restored afterwards."""
    global _progress
    before, _progress = _progress, enabled
    try:
        yield
    finally:
        _progress = before


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


# -- resolution -----------------------------------------------------------------------------------------------
def looks_like_name(raw: str) -> bool:
    """True when ``raw`` is an ``hf://`` URI or starts with a release name of the registry."""
    if raw.startswith("hf://"):
        return True
    head = raw.split("/", 1)[0].split("@", 1)[0]
    try:
        return head in load_registry().releases
    except ConfigError:
        return False


def resolve(raw: str) -> list[Path]:
    """Local paths (in the hub cache) of the SAEs ``raw`` names; a SaeFormatError when it names nothing."""
    if raw.startswith("hf://"):
        return [_resolve_uri(raw)]
    reg = load_registry()
    head, _, sae_id = raw.partition("/")
    name, _, site = head.partition("@")
    if name not in reg.releases:
        raise SaeFormatError(f"{raw}: no such file or folder")
    rel = reg.releases[name]
    if rel.format is None:
        raise UnsupportedError(
            f"{raw}: release {name} (repo {rel.repo}) uses SAELens's {rel.conversion!r} conversion, which no "
            "featgraph reader implements; featgraph reads releases in SAELens, Gemma Scope and dictionary_learning "
            "layouts"
        )
    if sae_id:
        if site:
            raise ConfigError(f"{raw}: give either RELEASE@SITE (a ladder) or RELEASE/SAE_ID (one SAE), not both")
        match = [s for s in rel.saes if s.sae_id == sae_id]
        if not match:
            ids = [s.sae_id for s in rel.saes]
            raise SaeFormatError(f"{raw}: release {name} has no SAE id {sae_id!r}; its ids: {_few(ids)}")
        chosen = match
    else:
        chosen = _select_site(rel, site, raw)
    return _fetch_many([(rel, s) for s in chosen], raw)


def _few(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _select_site(rel: Release, site: str, raw: str) -> list[RegistrySae]:
    sites = rel.sites
    if not site:
        if len(sites) > 1:
            raise ConfigError(
                f"{raw}: release {rel.name} has SAEs at {len(sites)} sites ({_few(sites)}); pick one as "
                f"{rel.name}@SITE (e.g. {rel.name}@{sites[0]}) or one SAE as {rel.name}/SAE_ID "
                f"(`featgraph releases --search {rel.name}` lists them)"
            )
        site = sites[0]
    if site not in sites:
        raise ConfigError(f"{raw}: release {rel.name} has no site {site!r}; its sites: {_few(sites)}")
    saes = [s for s in rel.saes if s.site == site]
    by_width: dict[int, list[str]] = {}
    for s in saes:
        if s.width is not None:
            by_width.setdefault(s.width, []).append(s.sae_id)
    dup = {w: ids for w, ids in by_width.items() if len(ids) > 1}
    if dup:
        w, ids = min(dup.items())
        raise ConfigError(
            f"{raw}: {len(ids)} SAEs of width {w} at {site} ({_few(ids, 3)}): a ladder takes one SAE per width; "
            f"name them one by one as {rel.name}/SAE_ID"
        )
    return sorted(saes, key=lambda s: (s.width is None, s.width or 0, s.sae_id))


class _NotCached(Exception):
    def __init__(self, repo: str, revision: str, files: list[str]) -> None:
        super().__init__(repo, revision, files)
        self.repo, self.revision, self.files = repo, revision, files


def _fetch_many(items: list[tuple[Release, RegistrySae]], raw: str) -> list[Path]:
    """Fetch every SAE's files, then report every file missing from the cache at once."""
    out, missing = [], []
    for rel, s in items:
        try:
            out.append(_fetch_registry_sae(rel, s, raw))
        except _NotCached as e:
            missing.append(e)
        except _AbsentOnHub as e:
            raise SaeFormatError(f"{raw}: repo {rel.repo} has no file {e.args[0]} (SAE {s.sae_id} of release "
                                 f"{rel.name}); the registry may be older than the repo") from e
    if missing:
        files = [f for e in missing for f in e.files]
        raise _missing_error(raw, missing[0].repo, missing[0].revision, files)
    return out


def _fetch_registry_sae(rel: Release, s: RegistrySae, raw: str) -> Path:
    assert rel.format is not None
    required, optional = _FORMAT_FILES[rel.format]
    fetched = _fetch_files(rel.repo, None, s.path, required, optional, raw)
    local = _local_sae_path(fetched, s.path, rel.format)
    _remember(local, fetched, HubSource(
        name=s.sae_id.replace("/", "-"), spec=raw, repo=rel.repo, revision="main", commit=fetched.commit,
        path=s.path, files=fetched.blobs, release=rel.name, sae_id=s.sae_id, neuronpedia=s.neuronpedia,
        width=s.width,
    ))
    return local


def _resolve_uri(raw: str) -> Path:
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        uri = parse_hf_uri(raw)
    except HfUriError as e:
        raise SaeFormatError(f"{raw}: not an hf://OWNER/REPO[@REVISION][/PATH] name ({e.msg})") from e
    if uri.type != "model":
        raise SaeFormatError(f"{raw}: featgraph reads SAEs from model repos only, not a {uri.type} repo")
    path = uri.path_in_repo.strip("/")
    leaf = path.rsplit("/", 1)[-1]
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    # a file path names its format; a folder's format is found by which layout's files exist
    if leaf.endswith(".npz"):
        layouts, folder, files = ["gemmascope"], folder, {"gemmascope": ((leaf,), ())}
    elif leaf.endswith(".pt"):
        layouts, files = ["dictionary_learning"], {"dictionary_learning": ((leaf,), ("config.json",))}
    elif leaf in ("cfg.json", "sae_weights.safetensors"):
        layouts, files = ["saelens"], dict(_FORMAT_FILES)
    elif leaf == "sae.safetensors":
        layouts, files = ["sparsify"], dict(_FORMAT_FILES)
    else:
        layouts, folder, files = list(_FOLDER_LAYOUTS), path, dict(_FORMAT_FILES)
    missing: list[str] = []
    for fmt in layouts:
        required, optional = files[fmt]
        try:
            fetched = _fetch_files(uri.id, uri.revision, folder, required, optional, raw, probing=len(layouts) > 1)
        except _NotCached as e:
            missing.append(" + ".join(e.files))
            continue
        except _AbsentOnHub:
            continue
        is_file = leaf.endswith((".npz", ".pt"))
        target = path if is_file else folder
        local = _local_sae_path(fetched, target, fmt)
        # the default name: the SAE's folder in the repo (its file's stem when the file is not the format's
        # fixed file name), the repo's name at the root
        name = path.rsplit(".", 1)[0] if is_file and leaf not in ("params.npz", "ae.pt") else folder
        name = name or uri.id.split("/")[1]
        known = _registry_entry(uri.id, target)  # a registry SAE named by its hub path keeps its Neuronpedia id
        _remember(local, fetched, HubSource(
            name=name.replace("/", "-"), spec=raw, repo=uri.id, revision=uri.revision or "main",
            commit=fetched.commit, path=target, files=fetched.blobs, release=known and known.release,
            sae_id=known and known.sae_id, neuronpedia=known and known.neuronpedia, width=known and known.width,
        ))
        return local
    if missing:
        # offline (or hub unreachable): nothing of any layout is cached
        rev = uri.revision or "main"
        if len(layouts) > 1:
            raise _missing_error(raw, uri.id, rev, missing, folder=folder)
        raise _missing_error(raw, uri.id, rev, missing[0].split(" + "))
    raise SaeFormatError(f"{raw}: repo {uri.id} has no SAE at {path or 'its root'!r} (looked for "
                         f"{', '.join(' + '.join(files[f][0]) for f in layouts)})")


def _registry_entry(repo: str, path: str) -> RegistrySae | None:
    try:
        releases = load_registry().releases.values()
    except ConfigError:
        return None
    return next((s for r in releases if r.repo == repo for s in r.saes if s.path == path), None)


class _AbsentOnHub(Exception):
    pass


@dataclasses.dataclass
class _Fetched:
    commit: str
    snapshot: Path  # snapshots/<commit>
    blobs: dict[str, str]


def _cache_dir() -> str:
    # huggingface_hub reads HF_HOME / HF_HUB_CACHE (and HF_ENDPOINT) once, at import; read them per call so that
    # a process that sets them later (the tests, a notebook) is still respected
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


def _offline() -> bool:
    # the same variables huggingface_hub reads at import (constants.HF_HUB_OFFLINE), read per call for the same
    # reason as _cache_dir
    from huggingface_hub import constants

    vals = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    if any(v is not None for v in vals):
        return any((v or "").upper() in ("1", "ON", "YES", "TRUE") for v in vals)
    return bool(constants.HF_HUB_OFFLINE)


def _fetch_files(repo: str, revision: str | None, folder: str, required: tuple[str, ...],
                 optional: tuple[str, ...], raw: str, *, probing: bool = False) -> _Fetched:
    """hf_hub_download each file (the cached copy offline); _NotCached lists the required files missing."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    silence = not _progress and not are_progress_bars_disabled()
    if silence:
        disable_progress_bars()
    try:
        return _fetch_files_inner(repo, revision, folder, required, optional, raw, probing)
    finally:
        if silence:
            enable_progress_bars()


def _fetch_files_inner(repo: str, revision: str | None, folder: str, required: tuple[str, ...],
                       optional: tuple[str, ...], raw: str, probing: bool) -> _Fetched:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rev = revision or "main"
    got: dict[str, str] = {}
    missing: list[str] = []
    offline = _offline()
    for i, name in enumerate(required + optional):
        filename = f"{folder}/{name}" if folder else name
        try:
            local = hf_hub_download(repo, filename, revision=revision, cache_dir=_cache_dir(),
                                    local_files_only=offline, endpoint=os.environ.get("HF_ENDPOINT") or None)
        except LocalEntryNotFoundError:
            if i < len(required):
                missing.append(filename)
            continue
        except (RepositoryNotFoundError, GatedRepoError) as e:
            raise SaeFormatError(f"{raw}: repo {repo} not found on the hub or not accessible with your token "
                                 f"({type(e).__name__}); log in with `hf auth login` or set HF_TOKEN for a gated "
                                 "repo") from e
        except RevisionNotFoundError as e:
            raise SaeFormatError(f"{raw}: repo {repo} has no revision {rev!r}") from e
        except EntryNotFoundError as e:
            if i >= len(required):
                continue
            if (got or missing) and not probing:  # the layout's first file exists: the rest must too
                # (when probing an hf:// folder's layout, a shared cfg.json does not decide it: try the next)
                raise SaeFormatError(f"{raw}: repo {repo}@{rev} has no file {filename}") from e
            raise _AbsentOnHub(filename) from e
        except HfHubHTTPError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SaeFormatError(f"{raw}: downloading {filename} from {repo}@{rev} failed: {first}") from e
        except OSError as e:  # the cache folder unwritable, the disk full, ...
            raise SaeFormatError(f"{raw}: fetching {filename} of {repo}@{rev} into {_cache_dir()} failed: "
                                 f"{e.strerror or e}") from e
        got[filename] = local
    if missing:
        raise _NotCached(repo, rev, missing)
    any_file = next(iter(got.values()))
    snapshot = _snapshot_root(Path(any_file), next(iter(got)))
    # by hand: huggingface_hub returns snapshots/<commit>/<file>, a symlink to blobs/<ETag> (its documented cache
    # layout); the commit and blob ids are read from those names rather than asked of the hub again
    blobs = {f: os.path.basename(os.path.realpath(p)) for f, p in got.items()}
    return _Fetched(snapshot.name, snapshot, blobs)


def _snapshot_root(local_file: Path, filename: str) -> Path:
    root = local_file
    for _ in filename.split("/"):
        root = root.parent
    return root


def _local_sae_path(fetched: _Fetched, target: str, fmt: str) -> Path:
    """The SAE's folder (or .npz/.pt file) inside the snapshot; its format must be the one fetched."""
    from featgraph.formats import detect_format

    local = Path(os.path.abspath(fetched.snapshot / target if target else fetched.snapshot))
    found = detect_format(local, missing_ok=True)
    if found != fmt and not (fmt == "sparsify" and found == "featgraph"):
        raise SaeFormatError(f"{local}: fetched as {fmt} but featgraph detects {found or 'no SAE'} there")
    return local


def _remember(local: Path, fetched: _Fetched, src: HubSource) -> None:
    _SOURCES[os.path.abspath(local)] = src
    log.info("%s -> %s (commit %s)", src.spec, local, src.commit)


def _missing_error(raw: str, repo: str, revision: str, files: list[str], *, folder: str | None = None
                   ) -> SaeFormatError:
    """The one line an offline miss prints: what to download, and the command that does it once online."""
    where = _cache_dir()
    why = "HF_HUB_OFFLINE is set" if _offline() else "the hub is unreachable"
    if folder is not None:  # an hf:// folder of unknown layout: any one layout's files will do
        what = f"the SAE files of {folder or 'the repo root'} (one of: {'; '.join(files)})"
        pattern = f"{folder}/*" if folder else "*"
        cmd = f"hf download {repo} --revision {revision} --include '{pattern}'"
    else:
        what = f"files {_few(files, 4)}"
        cmd = f"hf download {repo} --revision {revision} " + " ".join(files[:4]) + (" ..." if len(files) > 4 else "")
    return SaeFormatError(f"{raw}: not in the Hugging Face cache ({where}) and {why}; download repo {repo} "
                          f"revision {revision}: {what} (size unknown offline), e.g. online: {cmd}")


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

    for sae, feature, link in features.select("sae", "feature", "neuronpedia_url").iter_rows():
        graph.nodes[node_id(sae, feature)]["neuronpedia_url"] = link or ""
    return features
