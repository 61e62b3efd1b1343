"""Atomic writes: every output goes to a temporary name in the same folder and is renamed into place.

A failed or killed run therefore never leaves a half-written file behind. Temporary names are featgraph's own,
``.<target name>.featgraph-<pid>-<hex>.tmp``, and their owner holds an ``fcntl.flock`` on them while it lives,
so the next write of the same target can tell a killed run's leftover (lock free, pid dead) from one in use and
removes only the former. Whole folders: :mod:`featgraph.io.output`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _public_mode(path: Path, *, is_dir: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries; give the final output the mode a plain open()/mkdir() would."""
    path.chmod((0o777 if is_dir else 0o666) & ~_umask())


public_mode = _public_mode

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.featgraph-(?P<pid>[0-9]+)-(?P<rand>[0-9a-f]+)\.(?P<kind>tmp|old)$")


def featgraph_temp_name(target_name: str, kind: str = "tmp") -> str:
    """``.<target_name>.featgraph-<pid>-<hex>.<kind>``: recognisably featgraph's, and naming its owner."""
    return f".{target_name}.featgraph-{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def parse_temp_name(name: str) -> tuple[str, int, str] | None:
    """(target name, owner pid, kind) of a featgraph temporary name, else None."""
    m = _TEMP_RE.match(name)
    return (m["name"], int(m["pid"]), m["kind"]) if m else None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def is_stale_temp(path: str | os.PathLike[str]) -> bool:
    """True when a featgraph temporary's owner is gone: its pid is dead and nobody holds its ``flock``.

    Both are needed: the lock is free for an instant after the owner creates the entry, and a pid may be reused
    by an unrelated process (then the leftover waits for a later run: never removing a live one matters more).
    """
    parsed = parse_temp_name(Path(path).name)
    if parsed is None or _pid_alive(parsed[1]):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return os.path.islink(path)  # a link under our name: nothing of anyone's in use
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def remove_stale_temps(target: str | os.PathLike[str]) -> None:
    """Remove stale single-file temporaries of ``target`` (see :func:`is_stale_temp`) from its folder."""
    target = Path(target)
    with contextlib.suppress(OSError):
        for p in target.parent.iterdir():
            parsed = parse_temp_name(p.name)
            if parsed and parsed[0] == target.name and parsed[2] == "tmp" and not p.is_dir() and is_stale_temp(p):
                with contextlib.suppress(OSError):
                    p.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp_path = target.parent / featgraph_temp_name(target.name)
    fd = os.open(tmp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # in use while this process lives; the writer may reopen the path freely
    try:
        yield tmp_path
        _public_mode(tmp_path, is_dir=False)
        os.replace(tmp_path, target)
    finally:
        os.close(fd)
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(target: str | os.PathLike[str], write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def read_json(path: str | os.PathLike[str], *, required: bool = True) -> dict[str, Any]:
    """A JSON object from ``path`` (``{}`` when absent and not ``required``); errors name the file.

    The checked reader lives in :func:`featgraph.io.readers.read_json` (size, depth, number and key guards); this
    name stays for the modules that import it from here.
    """
    from featgraph.io.readers import read_json as checked

    return checked(path, required=required)


def json_text(obj: Any) -> str:
    """The one JSON serialisation featgraph writes: sorted keys, indent 2, trailing newline (byte-identical across
    runs); values JSON lacks (paths) as their ``str``."""
    return json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"


def write_json(target: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as :func:`json_text` atomically (a temporary renamed into place)."""
    text = json_text(obj)
    return atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))


def write_json_into(path: str | os.PathLike[str], obj: Any) -> None:
    """Write :func:`json_text` straight to ``path``: for files inside a folder that is itself renamed into place
    whole (``featgraph.io.output.atomic_dir`` / ``open_output``), where a second rename would be wasted."""
    Path(path).write_text(json_text(obj), encoding="utf-8")
