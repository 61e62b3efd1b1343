"""Assertions shared by the hostile-input and fault tests: what a refused command must (not) leave behind.

A refused command exits 1 (2 for click usage errors) with at most 3 lines on stderr and no traceback, leaves every
input byte-identical and writes nothing at ``--out``, not even a temporary folder beside it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .conftest import run_main


def tree_digest(*paths: str | os.PathLike[str]) -> dict[str, str]:
    """``{path: sha256}`` of every file under ``paths`` (files or folders; symlinks listed by target), plus each
    folder's entry list, so that an added, removed or changed file anywhere shows up as a difference."""
    digest: dict[str, str] = {}
    for root in map(Path, paths):
        if not os.path.lexists(root):
            digest[str(root)] = "<absent>"
            continue
        items = [root] if not root.is_dir() or root.is_symlink() else [root, *sorted(root.rglob("*"))]
        for p in items:
            if p.is_symlink():
                digest[str(p)] = "link->" + os.readlink(p)
            elif p.is_dir():
                digest[str(p)] = "dir:" + ",".join(sorted(c.name for c in p.iterdir()))
            else:
                digest[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return digest


def assert_refused(
    args: list, *, inputs: list, out: str | os.PathLike[str] | None = None, code: int = 1, needles: tuple = ()
) -> str:
    """Run ``featgraph *args``; assert it is refused cleanly and return the stderr text.

    ``inputs``: paths that must be byte-identical afterwards. ``out``: the ``--out`` folder, which must look as it
    did before (absent stays absent) with no featgraph temporary left beside it. ``needles``: substrings the
    message must contain (file names, shapes, values).
    """
    watched = [*inputs, *([out] if out is not None else [])]
    before = tree_digest(*watched)
    siblings_before = _siblings(out)
    rc, stdout, stderr = run_main(*args)
    assert rc == code, f"exit {rc} (want {code})\nstdout: {stdout}\nstderr: {stderr}"
    assert "Traceback" not in stdout + stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 3, f"{len(lines)} stderr lines:\n{stderr}"
    for needle in needles:
        assert str(needle) in stderr, f"{needle!r} not in: {stderr}"
    assert tree_digest(*watched) == before, "an input or --out changed"
    assert _siblings(out) == siblings_before, "something was left beside --out"
    return stderr


def _siblings(out: str | os.PathLike[str] | None) -> list[str]:
    if out is None:
        return []
    parent = Path(out).parent
    return sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []
