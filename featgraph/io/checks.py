"""The checks every command runs on its output folder before anything slow: never an input or inside one (on
real paths), never a file, never a folder holding anything but an earlier run of the same command (its manifest),
and writable. :mod:`featgraph.io.output` writes the folder once these pass.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from featgraph.errors import ConfigError, FeatgraphError
from featgraph.io.files import featgraph_temp_name

MANIFEST_FILE = ".featgraph-manifest.json"
PathLike = str | os.PathLike[str]


# -- checks -----------------------------------------------------------------------------------------------------
def _ids_up(path: str) -> dict[tuple[int, int], str]:
    """``(st_dev, st_ino) -> path`` for ``path`` (if it exists) and every existing ancestor: equal ids are the
    same folder even when reached through a bind mount."""
    ids: dict[tuple[int, int], str] = {}
    p = path
    while True:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            ids.setdefault((st.st_dev, st.st_ino), p)
        parent = os.path.dirname(p)
        if parent == p:
            return ids
        p = parent


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def check_no_overlap(out: PathLike, inputs: Iterable[PathLike | None], *, out_label: str = "--out") -> str:
    """Refuse ``out`` being, containing or lying inside any input; returns ``out``'s real path."""
    real_out = os.path.realpath(out)
    out_ids = _ids_up(real_out)
    out_id = next(iter(out_ids), None) if os.path.lexists(real_out) else None
    for given in inputs:
        if given is None:
            continue
        real_in = os.path.realpath(given)
        in_ids = _ids_up(real_in)
        in_id = next(iter(in_ids), None) if os.path.lexists(real_in) else None
        if _inside(real_out, real_in) or (in_id is not None and in_id in out_ids):
            how = "is" if real_out == real_in or out_id == in_id else "lies inside"
        elif _inside(real_in, real_out) or (out_id is not None and out_id in in_ids):
            how = "contains"
        else:
            continue
        raise ConfigError(
            f"{out_label} {out} {how} the input {given} ({real_out} vs {real_in}); choose an output folder "
            "outside every input"
        )
    return real_out


def read_manifest(folder: PathLike) -> dict[str, Any] | None:
    """The manifest of a folder featgraph wrote, or None (absent, unreadable or not a manifest)."""
    from featgraph.io.readers import read_json  # checked: a 200,000-deep manifest must not recurse

    try:
        obj = read_json(Path(folder) / MANIFEST_FILE)
    except FeatgraphError:
        return None
    files = obj.get("files") if isinstance(obj, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return obj


def _foreign_entry(folder: Path, listed: set[str]) -> str | None:
    """The first entry under ``folder`` (relative path) that the manifest does not account for, else None."""
    needed_dirs = {str(Path(f).parent) for f in listed} | {"."}
    needed_dirs |= {str(p) for f in listed for p in Path(f).parents}
    for root, dirs, files in os.walk(folder):
        rel_root = os.path.relpath(root, folder)
        for d in sorted(dirs):
            rel = os.path.normpath(os.path.join(rel_root, d))
            if os.path.islink(os.path.join(root, d)) or rel not in needed_dirs:
                return rel
        for f in sorted(files):
            rel = os.path.normpath(os.path.join(rel_root, f))
            if rel not in listed and rel != MANIFEST_FILE:
                return rel
    return None


def check_replaceable(out: Path, command: str, *, label: str = "--out") -> None:
    """Refuse an existing ``out`` that is a file, or a non-empty folder holding anything but an earlier
    ``command`` result's own files."""
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise ConfigError(f"{label} {out}: exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    manifest = read_manifest(out)
    if manifest is None:
        raise ConfigError(
            f"{label} {out}: exists, is not empty (e.g. {entries[0]}) and was not written by featgraph (no "
            f"{MANIFEST_FILE}); refusing to replace it (choose a new or empty folder)"
        )
    if manifest.get("command") != command:
        raise ConfigError(
            f"{label} {out}: holds a featgraph {manifest.get('command')!r} result, not a {command!r} one; "
            "refusing to replace it (choose a new or empty folder)"
        )
    foreign = _foreign_entry(out, set(manifest["files"]))
    if foreign is not None:
        raise ConfigError(
            f"{label} {out}: holds {out / foreign}, which featgraph did not write (not in {MANIFEST_FILE}); "
            "refusing to replace it (move that file away or choose another folder)"
        )


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p.parent != p:
        p = p.parent
    return p


def _probe_writable(out: Path, label: str) -> None:
    """Create and remove a featgraph temporary where ``out``'s temporary will go (the nearest existing
    ancestor when the parents are still to be made): proof, even for root, that the place is writable."""
    base = _nearest_existing(out.parent)
    if not base.is_dir():
        raise ConfigError(f"{label} {out}: {base} is not a folder, so nothing can be written there")
    probe = base / featgraph_temp_name(out.name, "tmp")
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as e:
        raise ConfigError(f"{label} {out}: cannot write in {base} ({e.strerror or e})") from e


def check_output(
    out: PathLike, *, command: str, inputs: Iterable[PathLike | None] = (), label: str = "--out"
) -> Path:
    """Every check on an output folder, cheap and without side effects: run it before any heavy work.

    Refuses (:class:`ConfigError`, one line naming both paths) ``out`` overlapping an input, an existing file,
    a non-empty folder featgraph did not write for ``command`` (naming a foreign file) and an unwritable place.
    Returns ``out``'s resolved path.
    """
    real = Path(check_no_overlap(out, inputs, out_label=label))
    check_replaceable(real, command, label=label)
    _probe_writable(real, label)
    return real
