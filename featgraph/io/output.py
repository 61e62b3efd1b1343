"""Output folders: the one way every command and every folder writer puts results on disk.

The rules (GUIDE.md, "House rules"), and how this module keeps them:

- **An output never touches an input.** :func:`check_output` resolves ``--out`` and every input with
  ``os.path.realpath`` (symlinks, ``..``, trailing slashes) and also compares ``(st_dev, st_ino)`` of the
  existing folders along both paths (bind mounts), and refuses ``--out`` being, containing or lying inside an
  input (SAE folders and files, ladder folders, activation stores, index folders, text files).
- **Replacing an earlier result removes only featgraph's files.** Every folder written here holds
  ``.featgraph-manifest.json`` (command, version, the files written). An existing, non-empty ``--out`` is
  replaced only when its manifest names the same command and lists every file in it; a user's file added to an
  old result makes the run refuse, naming that file.
- **Writability is proven before the work**: :func:`check_output` creates (and removes) a temporary folder where
  the result will go, so a read-only place fails in a second, not after an hour of matching.
- **Atomic, and killed runs leave nothing that lasts.** Results go into ``.<out>.featgraph-<pid>-<hex>.tmp/``
  beside ``--out``. Its owner keeps an ``fcntl.flock`` on the folder for its whole life; a temporary is *stale*
  only when that lock is free *and* its pid is dead (the pid covers the instant between creating the folder and
  locking it). Each run removes the stale temporaries of its own ``--out`` first. On success the folder replaces
  ``--out`` under a lock on the parent folder (so two concurrent runs swap one after the other and one complete
  result is left); the earlier result is renamed ``.<out>.featgraph-<pid>-<hex>.old`` and its manifest's files
  are removed.

A SIGKILL can therefore leave: nothing (killed before the swap; the earlier result, if any, intact), or, in the
few microseconds between the two renames of a swap, ``--out`` absent with the earlier result under a stale
``.old`` name; the next run removes every stale name of its ``--out``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from featgraph.errors import ConfigError
from featgraph.io.checks import (  # noqa: F401  (the checks are imported from here by every command)
    MANIFEST_FILE,
    PathLike,
    _probe_writable,
    check_no_overlap,
    check_output,
    check_replaceable,
    read_manifest,
)
from featgraph.io.files import featgraph_temp_name, is_stale_temp, parse_temp_name, public_mode, write_json_into

log = logging.getLogger(__name__)


# Fault injection for the kill tests (tests/io/test_faults.py): with FEATGRAPH_FAULT_AT=<point> a run stops at that
# named moment of writing, creates the file FEATGRAPH_FAULT_MARKER and waits to be killed, so that a SIGKILL lands
# exactly there instead of wherever a timer happens to fall. Unset (always, outside those tests) it costs one
# environment lookup per point.
FAULT_POINTS = ("temp-created", "results-written", "before-swap", "mid-swap", "after-swap")



def fault_point(name: str) -> None:
    """Stop here for good when FEATGRAPH_FAULT_AT names this point (see FAULT_POINTS)."""
    if os.environ.get("FEATGRAPH_FAULT_AT") != name:
        return
    import time

    Path(os.environ["FEATGRAPH_FAULT_MARKER"]).touch()
    while True:  # the test kills this process; nothing after this point may run
        time.sleep(60)


# -- stale temporaries -------------------------------------------------------------------------------------------
def remove_stale(out: PathLike) -> list[str]:
    """Remove the stale temporaries (``.tmp``) and earlier results awaiting removal (``.old``) of ``out``: only
    featgraph's names for this very ``out``, only those whose owner is dead. Returns the names removed."""
    out = Path(out)
    removed: list[str] = []
    if not out.parent.is_dir():
        return removed
    for p in out.parent.iterdir():
        parsed = parse_temp_name(p.name)
        if parsed is None or parsed[0] != out.name or not is_stale_temp(p):
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                if parsed[2] == "old":
                    _remove_manifest_files(p, keep_rest=False)
                else:
                    shutil.rmtree(p)
            else:
                p.unlink()
        except OSError as e:  # another cleaner got there first, or a permission problem: never fatal
            log.debug("could not remove stale %s: %s", p, e)
            continue
        removed.append(p.name)
        log.info("removed stale temporary %s", p)
    return removed


def _remove_manifest_files(folder: Path, *, keep_rest: bool = True) -> None:
    """Remove what ``folder``'s manifest lists, the manifest, then its empty folders; anything else stays (and
    keeps ``folder``) unless ``keep_rest`` is False and there is no manifest (then it was a featgraph temp)."""
    manifest = read_manifest(folder)
    if manifest is None:
        if not keep_rest:
            shutil.rmtree(folder)
        return
    for rel in manifest["files"]:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (folder / rel).unlink()
    with contextlib.suppress(FileNotFoundError):
        (folder / MANIFEST_FILE).unlink()
    for root, _dirs, _files in sorted(os.walk(folder, topdown=False), key=lambda t: -len(t[0])):
        with contextlib.suppress(OSError):  # not empty: something featgraph did not write, which stays
            os.rmdir(root)
    if folder.exists():
        log.warning("%s: kept files featgraph did not write", folder)


# -- writing -----------------------------------------------------------------------------------------------------
def _list_files(folder: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(root, f), folder)
        for root, _dirs, files in os.walk(folder)
        for f in files
        if not (root == str(folder) and f == MANIFEST_FILE)
    )


def write_manifest(folder: Path, command: str, extra: dict[str, Any] | None = None) -> None:
    """List every file under ``folder`` in its manifest (deterministic: no time, no pid)."""
    from featgraph import __version__

    obj = {"command": command, "featgraph_version": __version__, "files": _list_files(folder), **(extra or {})}
    write_json_into(folder / MANIFEST_FILE, obj)


_held: set[str] = set()  # folders this process holds flocked: a second flock on them here would deadlock


def _lock_fd(path: Path) -> int | None:
    """An exclusive ``flock`` on a folder (released when the fd closes or the process dies); None when this
    process already holds it (a nested write into our own temporary: nobody else writes there)."""
    key = os.path.realpath(path)
    if key in _held:
        return None
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held.add(key)
    return fd


def _unlock_fd(path: Path, fd: int | None) -> None:
    if fd is not None:
        _held.discard(os.path.realpath(path))
        os.close(fd)


@contextlib.contextmanager
def open_output(
    out: PathLike, *, command: str, inputs: Iterable[PathLike | None] = (), label: str = "--out"
) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out``; if the block succeeds it replaces ``out`` atomically.

    Checks as :func:`check_output` (again: something may have changed since the command started), removes
    stale temporaries of ``out``, and on success writes the manifest and swaps. On any failure the temporary
    and any parent folders made for it are removed; ``out`` is left as it was.
    """
    inputs = list(inputs)
    target = Path(check_no_overlap(out, inputs, out_label=label))
    check_replaceable(target, command, label=label)
    made: list[Path] = []
    p = target.parent
    while not p.exists():
        made.append(p)
        p = p.parent
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        tmp = target.parent / featgraph_temp_name(target.name, "tmp")
        tmp.mkdir()
    except OSError as e:
        _remove_empty(made)
        raise ConfigError(f"{label} {out}: cannot write in {target.parent} ({e.strerror or e})") from e
    tmp_fd = _lock_fd(tmp)  # held until the end: the temporary is in use while this process lives
    tmp_key = os.path.realpath(tmp)
    try:
        fault_point("temp-created")
        yield tmp
        fault_point("results-written")
        write_manifest(tmp, command)
        public_mode(tmp, is_dir=True)
        _swap(tmp, target, command, label)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        raise
    finally:
        if tmp_fd is not None:
            _held.discard(tmp_key)
            os.close(tmp_fd)


def _remove_empty(folders: list[Path]) -> None:
    for f in folders:  # deepest first
        with contextlib.suppress(OSError):
            f.rmdir()


def _swap(tmp: Path, target: Path, command: str, label: str) -> None:
    """Replace ``target`` by ``tmp`` under a lock on the parent folder (concurrent runs swap in turn)."""
    parent_fd = _lock_fd(target.parent)
    try:
        check_replaceable(target, command, label=label)  # a user may have put files there during the run
        fault_point("before-swap")
        if os.path.lexists(target) and any(target.iterdir()):
            old = target.parent / featgraph_temp_name(target.name, "old")
            os.replace(target, old)
            fault_point("mid-swap")
            os.replace(tmp, target)
            fault_point("after-swap")
            _remove_manifest_files(old)
        else:
            os.replace(tmp, target)  # rename(2) replaces an empty folder
            fault_point("after-swap")
    finally:
        _unlock_fd(target.parent, parent_fd)


@contextlib.contextmanager
def atomic_dir(target: PathLike, *, command: str = "sae") -> Iterator[Path]:
    """A folder written as a whole (an SAE, an index): :func:`open_output` with no inputs to compare against.

    Replaces an earlier folder of the same kind; refuses one holding files featgraph did not write.
    """
    with open_output(target, command=command, label="output folder") as tmp:
        yield tmp


# -- activation stores (written in place, resumable) ---------------------------------------------------------------
# a store's own files, and the config.json that `featgraph collect` writes beside them (house rule: every output
# folder holds its resolved config)
_STORE_FILE = re.compile(r"^(meta\.json|config\.json|tokens\.npy|acts_[0-9]{5}\.npy)$")


def check_store_output(
    store_dir: PathLike, *, inputs: Iterable[PathLike | None] = (), label: str = "--out"
) -> Path:
    """Checks for an activation store that a run creates or resumes in place (``featgraph collect``, and
    ``train``'s store): never overlapping an input, a folder holding nothing but a store's own files
    (``meta.json``, ``tokens.npy``, ``acts_NNNNN.npy``, collect's ``config.json``, featgraph temporaries), and
    writable. Removes stale temporaries inside it (a killed run's half-written shard). Returns the resolved path."""
    real = Path(check_no_overlap(store_dir, inputs, out_label=label))
    if os.path.lexists(real):
        if not real.is_dir():
            raise ConfigError(f"{label} {store_dir}: exists and is not a folder")
        foreign = sorted(
            p.name for p in real.iterdir() if not _STORE_FILE.match(p.name) and parse_temp_name(p.name) is None
        )
        if foreign:
            raise ConfigError(
                f"{label} {store_dir}: holds {real / foreign[0]}, which is not part of an activation store; "
                "refusing to write a store there (choose a new or empty folder)"
            )
        _probe_writable(real / ".probe", label)  # the store is written inside the folder itself
        remove_stale_inside(real)
    else:
        _probe_writable(real, label)
    return real


def remove_stale_inside(folder: PathLike) -> list[str]:
    """Remove every stale featgraph single-file temporary directly inside ``folder``."""
    removed = []
    for p in Path(folder).iterdir():
        parsed = parse_temp_name(p.name)
        if parsed and parsed[2] == "tmp" and not p.is_dir() and is_stale_temp(p):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p.name)
    return removed
