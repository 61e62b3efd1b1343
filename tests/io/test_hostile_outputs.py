"""Hostile ``--out`` values for every command (featgraph.io.output), through the console entry point.

Every refusal exits 1 (2 for click usage errors) with at most 3 lines and no traceback, names the paths at fault,
and leaves every input and ``--out`` byte-identical with nothing new beside ``--out`` (tests/hostile.py). The
rule under test: an output folder is never, never contains and never lies inside an input, compared on real
paths (symlinks, ``..``, trailing slashes); an existing non-empty ``--out`` is replaced only when featgraph wrote
all of it for the same command; the place must be writable. ``eval`` and ``collect`` load a model: the model
loader is replaced by one that fails the test, which proves the checks run before it.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featgraph.activations.store import ActivationStore
from featgraph.errors import ConfigError
from featgraph.io.output import MANIFEST_FILE, check_output, open_output, remove_stale
from featgraph.synthetic import planted_ladder
from tests.conftest import run_main, write_ladder
from tests.hostile import assert_refused, tree_digest


@pytest.fixture
def work(tmp_path, monkeypatch):
    """tmp/work/{ladder/{sae16,sae40}, acts/, idx/, notes.txt}; cwd = tmp; the model loader must not run."""
    work = tmp_path / "work"
    decoders, _ = planted_ladder([16, 40], 8, seed=3)
    ladder = write_ladder(work, decoders)
    store = ActivationStore.create(work / "acts", model="synthetic", hook_name="blocks.0.hook_resid_pre", d_in=8,
                                   tokens=np.zeros((4, 11), np.int32), exclude_bos=False, dtype="float32")
    store.write(np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32))
    store.mark_complete()
    assert run_main("index", ladder, "--out", work / "idx", "-q", "--device", "cpu")[0] == 0
    (work / "notes.txt").write_text("a user's corpus\n")

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr("featgraph.activations.load_model", no_model)
    monkeypatch.setattr("featgraph.activations.model.load_model", no_model)
    monkeypatch.chdir(tmp_path)
    return work


def command(name: str, work: Path, out) -> list:
    """The argument list of each command with its inputs from ``work`` and ``--out out``."""
    ladder, acts = work / "ladder", work / "acts"
    return {
        "index": ["index", ladder, "--device", "cpu"],
        "families": ["families", ladder, "--index", work / "idx"],
        "stitch": ["stitch", ladder / "sae16", ladder / "sae40", "--acts", acts],
        "frankenstein": ["frankenstein", ladder, "--acts", acts],
        "report": ["report", ladder, "--acts", acts],
        "eval": ["eval", ladder, "--text", work / "notes.txt"],
        "collect": ["collect", "--text", work / "notes.txt", "--tokens", 20],
        "train": ["train", "--widths", "8", "--acts", acts],
    }[name] + ["--out", out, "-q"]


ALL = ["index", "families", "stitch", "frankenstein", "report", "eval", "collect", "train"]
WITH_LADDER = ["index", "families", "frankenstein", "report", "eval"]
WITH_ACTS = ["stitch", "frankenstein", "report", "train"]


def refused(name: str, work: Path, out, *needles, code: int = 1) -> str:
    inputs = [work / "ladder", work / "acts", work / "idx", work / "notes.txt"]
    return assert_refused(command(name, work, out), inputs=inputs, out=out, code=code, needles=needles)


# -- --out overlaps an input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["stitch"])
def test_out_is_an_input_sae_folder(work, name):
    refused(name, work, work / "ladder" / "sae16", "is the input", "sae16")


@pytest.mark.parametrize("name", WITH_LADDER)
def test_out_is_the_ladder_folder(work, name):
    refused(name, work, work / "ladder", "is the input", str(work / "ladder"))


@pytest.mark.parametrize("name", WITH_LADDER)
def test_out_is_an_sae_folder_inside_the_ladder(work, name):
    refused(name, work, work / "ladder" / "sae40", "lies inside the input", str(work / "ladder"))


@pytest.mark.parametrize("name", WITH_ACTS)
def test_out_is_the_activation_store(work, name):
    refused(name, work, work / "acts", "is the input", str(work / "acts"))


def test_out_is_the_index_folder(work):
    refused("families", work, work / "idx", "is the input", str(work / "idx"))


@pytest.mark.parametrize("name", ["eval", "collect"])
def test_out_is_a_text_file_input(work, name):
    # click refuses an existing file as --out (usage error, exit 2) before featgraph's own check
    refused(name, work, work / "notes.txt", "notes.txt", code=2)


@pytest.mark.parametrize("name", ALL)
def test_out_contains_an_input(work, name):
    refused(name, work, work, "contains the input")


@pytest.mark.parametrize("name", ALL)
def test_out_lies_inside_an_input(work, name):
    inside = {"collect": work / "notes.txt", "train": work / "acts", "stitch": work / "ladder" / "sae16"}
    inside = inside.get(name, work / "ladder") / "x"
    refused(name, work, inside, "lies inside the input")


@pytest.mark.parametrize("name", ["families", "stitch", "train"])
def test_out_through_a_symlink(work, tmp_path, name):
    link = tmp_path / "link"
    link.symlink_to(work / ("acts" if name in ("stitch", "train") else "ladder"))
    refused(name, work, link, "is the input", str(link))
    inner = tmp_path / "innerlink"
    inner.symlink_to(work / "acts" if name in ("stitch", "train") else work / "ladder" / "sae16")
    refused(name, work, inner / "out", "lies inside the input")


def test_an_input_through_a_symlink(work, tmp_path):
    """The input given through a link, --out the real folder: still the same folder."""
    link = tmp_path / "ladderlink"
    link.symlink_to(work / "ladder")
    args = ["families", link, "--out", work / "ladder", "-q"]
    assert_refused(args, inputs=[work / "ladder"], out=work / "ladder", needles=("is the input",))


@pytest.mark.parametrize("name", ["index", "families", "report", "eval"])
def test_out_through_relative_dotdot_and_trailing_slash(work, name):
    # cwd is tmp_path: "work/idx/../ladder" is the ladder, "work/ladder/" too
    refused(name, work, "work/idx/../ladder", "is the input")
    refused(name, work, "work/ladder/", "is the input")
    refused(name, work, "work/ladder/sae16/../sae40/./sub", "lies inside the input")


# -- --out a file, a foreign folder, an unwritable place ----------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_out_is_an_existing_file(work, tmp_path, name):
    f = tmp_path / "result.txt"
    f.write_text("not a folder")
    refused(name, work, f, "result.txt", code=2)


@pytest.mark.parametrize("name", ALL)
def test_out_is_a_non_empty_foreign_folder(work, tmp_path, name):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    needle = "thesis.tex"
    refused(name, work, mine, needle)


@pytest.mark.parametrize("name", ALL)
def test_out_below_a_file(work, tmp_path, name):
    (tmp_path / "plain").write_text("x")
    refused(name, work, tmp_path / "plain" / "out", "is not a folder")


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs sysfs")
@pytest.mark.parametrize("name", ALL)
def test_out_in_an_unwritable_place(work, name):
    """Tests run as root, for whom chmod proves nothing; sysfs refuses mkdir even to root (EPERM)."""
    if os.access("/sys", os.W_OK) and _can_mkdir("/sys"):
        pytest.skip("/sys is writable here")
    refused(name, work, "/sys/featgraph-out", "cannot write in /sys")


def _can_mkdir(folder: str) -> bool:
    try:
        os.mkdir(os.path.join(folder, ".featgraph-probe"))
    except OSError:
        return False
    os.rmdir(os.path.join(folder, ".featgraph-probe"))
    return True


# -- replacing an earlier result ----------------------------------------------------------------------------------
def test_rerun_replaces_an_earlier_result_of_the_same_command(work, tmp_path):
    out = tmp_path / "fam"
    assert run_main("families", work / "ladder", "--out", out, "-q")[0] == 0
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["command"] == "families"
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    assert manifest["files"] == on_disk  # the manifest lists exactly what was written
    assert run_main("families", work / "ladder", "--out", out, "--tau", "0.9", "-q")[0] == 0
    assert json.loads((out / "config.json").read_text())["tau"] == 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fam", "work"]  # no temporary, no old copy left


def test_a_users_file_in_an_earlier_result_is_named_not_deleted(work, tmp_path):
    out = tmp_path / "fam"
    assert run_main("families", work / "ladder", "--out", out, "-q")[0] == 0
    (out / "my_notes.md").write_text("mine")
    args = ["families", work / "ladder", "--out", out, "-q"]
    assert_refused(args, inputs=[work / "ladder"], out=out, needles=("my_notes.md", "featgraph did not write"))
    (out / "my_notes.md").unlink()
    (out / "sub").mkdir()  # a user's empty folder counts too
    assert_refused(args, inputs=[work / "ladder"], out=out, needles=("sub", "featgraph did not write"))


def test_an_earlier_result_of_another_command_is_not_replaced(work, tmp_path):
    args = ["families", work / "ladder", "--out", work / "idx", "-q"]
    # idx is also an input here; give the index result a copy that is not one
    other = tmp_path / "idx2"
    assert run_main("index", work / "ladder", "--out", other, "-q", "--device", "cpu")[0] == 0
    args = ["families", work / "ladder", "--out", other, "-q"]
    assert_refused(args, inputs=[work / "ladder"], out=other, needles=("'index' result", "not a 'families'"))


def test_a_file_added_during_the_run_stops_the_swap(tmp_path):
    """The swap re-checks under its lock: a file a user adds while the run computes is kept, the run fails."""
    out = tmp_path / "out"
    with open_output(out, command="demo") as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(ConfigError, match="late.txt, which featgraph did not write"):
        with open_output(out, command="demo") as tmp:
            (tmp / "a.txt").write_text("2")
            (out / "late.txt").write_text("user")
    assert (out / "a.txt").read_text() == "1" and (out / "late.txt").read_text() == "user"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_run_leaves_no_parent_folders_it_made(tmp_path):
    with pytest.raises(RuntimeError):
        with open_output(tmp_path / "a" / "b" / "out", command="demo") as tmp:
            (tmp / "x").write_text("1")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


# -- stale temporaries --------------------------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_dead_owners_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / f".out.featgraph-{_dead_pid()}-00aa.tmp"
    dead.mkdir()
    (dead / "half.parquet").write_text("half")
    old = tmp_path / f".out.featgraph-{_dead_pid()}-00bb.old"
    old.mkdir()
    (old / "f").write_text("x")
    (old / MANIFEST_FILE).write_text(json.dumps({"command": "demo", "files": ["f"]}))
    live = tmp_path / f".out.featgraph-{os.getpid()}-00cc.tmp"  # "ours", locked: in use
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    other = tmp_path / f".other.featgraph-{_dead_pid()}-00dd.tmp"  # another output's: not ours to remove
    other.mkdir()
    user = tmp_path / ".out.backup.tmp"  # not a featgraph name
    user.mkdir()
    try:
        with open_output(out, command="demo") as t:
            (t / "r").write_text("r")
    finally:
        os.close(fd)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["out", live.name, other.name, user.name])
    # once its owner is gone (here: lock released and a dead pid in the name) the next run removes it
    gone = tmp_path / f".out.featgraph-{_dead_pid()}-00cc.tmp"
    live.rename(gone)
    assert remove_stale(out) == [gone.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", other.name, user.name])


def test_single_file_temporaries_are_recognisable_and_cleaned(tmp_path):
    from featgraph.io.files import write_json

    stale = tmp_path / f".meta.json.featgraph-{_dead_pid()}-0a0a.tmp"
    stale.write_text("{half")
    write_json(tmp_path / "meta.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_check_output_has_no_side_effects(work, tmp_path):
    before = tree_digest(tmp_path)
    for out in (tmp_path / "new" / "deeper", tmp_path / "fresh"):
        assert check_output(out, command="demo", inputs=[work / "ladder"]) == out.resolve()
    assert tree_digest(tmp_path) == before


def test_collect_resumes_a_store_in_place_and_removes_its_stale_temporaries(work, tmp_path):
    """collect writes its store in place (resumable by design): a store, or a folder a killed run left with only
    tokens.npy, is accepted and its half-written shard's temporary removed; anything else is refused."""
    from featgraph.io.output import check_store_output

    store = work / "acts"
    stale = store / f".acts_00001.npy.featgraph-{_dead_pid()}-0b0b.tmp"
    stale.write_bytes(b"half a shard")
    assert check_store_output(store) == store.resolve()
    assert not stale.exists() and (store / "meta.json").exists()
    early = tmp_path / "early"  # killed between writing tokens.npy and meta.json
    early.mkdir()
    (early / "tokens.npy").write_bytes(b"")
    assert check_store_output(early) == early.resolve()
    (early / "README").write_text("mine")
    with pytest.raises(ConfigError, match="README, which is not part of an activation store"):
        check_store_output(early)


@pytest.mark.parametrize("name", ["stitch", "frankenstein", "report", "eval", "collect"])
def test_out_inside_a_local_model_folder(work, tmp_path, name):
    """A local --model folder is an input too (a hub name such as "gpt2" is not a path and is not compared)."""
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    args = command(name, work, model / "out")
    args[-3:-3] = ["--model", model] + (["--ce-contexts", 1] if name in ("stitch", "frankenstein", "report") else [])
    assert_refused(args, inputs=[work / "ladder", model], out=model / "out", needles=("lies inside the input",))
    from featgraph.cli.common import local_paths

    # cwd is tmp_path: "--model gpt2 --out ." must not read as --out containing ./gpt2
    assert local_paths("gpt2", None) == [] and local_paths(str(model)) == [str(model)]
