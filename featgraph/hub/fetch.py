"""Fetching an SAE's files from the Hugging Face hub into its cache (only the files a reader needs), offline
misses as one line naming what to download, and the download progress switch."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from featgraph.errors import SaeFormatError

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


def _few(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


class _NotCached(Exception):
    def __init__(self, repo: str, revision: str, files: list[str]) -> None:
        super().__init__(repo, revision, files)
        self.repo, self.revision, self.files = repo, revision, files


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
