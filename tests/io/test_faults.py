"""SIGKILL at several moments of ``families``, ``index`` and ``stitch`` runs, and concurrent runs into one --out.

Each run is a real process (``python -m featgraph.cli.main``). A killed run must leave ``--out`` absent or exactly
one complete earlier result (compared byte for byte with a reference run: these commands write byte-identical
files), and after the next successful run nothing stray is left beside ``--out``: no ``.<out>.featgraph-*.tmp``
nor ``.old`` folder and no half file. The moments: exactly at each named point of writing (the temporary made,
the results written, before, between and after the two renames of the swap: ``featgraph.io.output.fault_point``
stops the run there and the test kills it), and, as a timing-dependent extra, at seeded random delays after the
temporary appears and from the start (loading), with and without an earlier result in place.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featgraph.activations.store import ActivationStore
from featgraph.io.files import parse_temp_name
from featgraph.io.output import FAULT_POINTS
from featgraph.synthetic import planted_ladder
from tests.conftest import run_main, write_ladder


@pytest.fixture
def work(tmp_path):
    """tmp/in/{ladder/{sae16,sae40}, acts/} and tmp/outs/ (the parent of every --out, watched for strays)."""
    decoders, _ = planted_ladder([16, 40], 8, seed=3)
    ladder = write_ladder(tmp_path / "in", decoders)
    store = ActivationStore.create(tmp_path / "in" / "acts", model="synthetic", hook_name="blocks.0.hook_resid_pre",
                                   d_in=8, tokens=np.zeros((4, 11), np.int32), exclude_bos=False, dtype="float32")
    store.write(np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32))
    store.mark_complete()
    (tmp_path / "outs").mkdir()
    return ladder, tmp_path / "in" / "acts", tmp_path / "outs"


def args_for(name: str, ladder: Path, acts: Path, out: Path) -> list[str]:
    head = {
        "families": ["families", ladder],
        "index": ["index", ladder, "--device", "cpu"],
        "stitch": ["stitch", ladder / "sae16", ladder / "sae40", "--acts", acts],
    }[name]
    return [str(a) for a in [*head, "--out", out, "-q"]]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "featgraph.cli.main", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def writing(out: Path, pid: int) -> bool:
    """Process ``pid``'s temporary folder of ``out`` has something in it: the results are being written (the
    empty one that the writability check makes and removes at the start does not count, nor an earlier killed
    run's leftover)."""
    for n in os.listdir(out.parent):
        t = parse_temp_name(n)
        if t and t[:3] == (out.name, pid, "tmp"):
            try:
                if os.listdir(out.parent / n):
                    return True
            except OSError:  # renamed or removed meanwhile
                pass
    return False


def kill(proc: subprocess.Popen, out: Path, *, after_temp: float | None = None, after_start: float = 0.0) -> str:
    """SIGKILL ``proc`` ``after_temp`` seconds after a temporary of ``out`` appears (or ``after_start`` seconds
    after the start); returns when it was killed, or "finished" if it ended first."""
    t0 = time.monotonic()
    seen = None
    while proc.poll() is None:
        now = time.monotonic()
        if after_temp is None and now - t0 >= after_start:
            break
        if after_temp is not None and seen is None and writing(out, proc.pid):
            seen = now
        if seen is not None and now - seen >= after_temp:
            break
        time.sleep(0.0002)
    if proc.poll() is not None:
        return "finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return "killed"


def check_absent_or(out: Path, want: dict[str, bytes]) -> None:
    if os.path.lexists(out):
        assert files(out) == want, "--out holds neither nothing nor one complete result"


def check_clean_after_next_run(name: str, work, out: Path, want: dict[str, bytes]) -> None:
    ladder, acts, outs = work
    code, _, err = run_main(*args_for(name, ladder, acts, out))
    assert code == 0, err
    assert files(out) == want
    assert sorted(os.listdir(outs)) == sorted({out.name, "ref"}), "something stray beside --out"


COMMANDS = ["families", "index", "stitch"]


def kill_at(name: str, work, out: Path, point: str) -> None:
    """Run ``name`` with the fault point ``point`` armed: it stops exactly there (featgraph.io.output.fault_point)
    and is SIGKILLed once it says so."""
    ladder, acts, outs = work
    marker = outs.parent / f"marker-{point}"
    env = {**os.environ, "FEATGRAPH_FAULT_AT": point, "FEATGRAPH_FAULT_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "featgraph.cli.main", *args_for(name, ladder, acts, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, f"ended before reaching {point}: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    marker.unlink()


# every moment of writing, with an earlier result in place (the swap has something to replace), and the moments
# that exist without one; families at all of them, index and stitch at the ones that differ most
CASES = [("families", p, True) for p in FAULT_POINTS] + [("families", "temp-created", False),
                                                           ("families", "after-swap", False)]
CASES += [(n, p, True) for n in ("index", "stitch") for p in ("results-written", "mid-swap")]


@pytest.mark.parametrize(("name", "point", "earlier"), CASES)
def test_sigkill_at_each_moment_of_writing(work, name, point, earlier):
    ladder, acts, outs = work
    ref = outs / "ref"
    assert run_main(*args_for(name, ladder, acts, ref))[0] == 0
    want = files(ref)
    out = outs / "out"
    if earlier:
        assert run_main(*args_for(name, ladder, acts, out))[0] == 0
    kill_at(name, work, out, point)
    if earlier and point != "mid-swap":
        assert files(out) == want  # the earlier result, or the new one once it is in place
    else:
        check_absent_or(out, want)  # mid-swap: the earlier result waits under a stale .old name
    strays = sorted(set(os.listdir(outs)) - {"out", "ref"})
    assert all(parse_temp_name(n) for n in strays), strays  # whatever is left is recognisably featgraph's
    check_clean_after_next_run(name, work, out, want)


@pytest.mark.parametrize("name", COMMANDS)
def test_sigkill_at_random_moments(work, name):
    ladder, acts, outs = work
    ref = outs / "ref"
    assert run_main(*args_for(name, ladder, acts, ref))[0] == 0
    want = files(ref)
    out = outs / "out"
    rng = random.Random(f"faults-{name}")
    outcomes = []
    for after_temp in (rng.uniform(0, 0.004), rng.uniform(0.004, 0.02)):  # during the writes, then the swap
        outcomes.append(kill(start(args_for(name, ladder, acts, out)), out, after_temp=after_temp))
        check_absent_or(out, want)
    # from the start: while importing or loading (nothing written yet, at most the writability probe)
    outcomes.append(kill(start(args_for(name, ladder, acts, out)), out, after_start=rng.uniform(0.5, 1.5)))
    check_absent_or(out, want)
    # where the timers land depends on the machine's load (the deterministic kills are above); every outcome,
    # killed or finished, must leave --out absent or complete
    check_clean_after_next_run(name, work, out, want)


@pytest.mark.parametrize("name", ["families"])
def test_two_concurrent_runs_end_with_one_complete_result(work, name):
    ladder, acts, outs = work
    ref = outs / "ref"
    assert run_main(*args_for(name, ladder, acts, ref))[0] == 0
    want = files(ref)
    out = outs / "out"
    for earlier in (False, True):  # into a new --out, then over an earlier result
        procs = [start(args_for(name, ladder, acts, out)) for _ in range(2)]
        errs = [p.communicate(timeout=120)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errs
        assert files(out) == want, f"earlier result: {earlier}"
        assert sorted(os.listdir(outs)) == ["out", "ref"]
