"""RayEngine on a local Ray cluster started here (2 CPUs): the same results as LocalEngine, arrays put once and read
zero-copy, a killed worker's task retried, task errors raised as themselves and not retried. Skipped without Ray."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]  # the folder holding tests/ (the hook below lives in this module)

from featgraph.atlas.engines import EngineError, LocalEngine, RayEngine, Task, check_reachable, get_engine  # noqa: E402
from featgraph.errors import ConfigError  # noqa: E402
from featgraph.matching import match_pair, normalize_rows  # noqa: E402
from featgraph.synthetic import planted_ladder  # noqa: E402

from ..conftest import run_main  # noqa: E402
from .planted import build_collection  # noqa: E402


def install_kill_switch() -> None:
    """Ray's setup hook in every worker of this module's cluster: once ``<KILL_DIR>/armed`` exists, the first worker
    to run the atlas's ``pair_task`` claims ``<KILL_DIR>/killed`` and SIGKILLs itself (the driver's function is
    untouched: the worker resolves ``featgraph.atlas.work.pair_task`` by name, and gets this wrapper)."""
    import featgraph.atlas.work as work

    original = work.pair_task

    def pair_task(task, *arrays):
        kill_dir = Path(os.environ["FEATGRAPH_TEST_KILL_DIR"])
        if (kill_dir / "armed").exists():
            try:
                fd = os.open(kill_dir / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # one claimant only
            except FileExistsError:
                pass
            else:
                os.write(fd, task.key.encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return original(task, *arrays)

    work.pair_task = pair_task


@pytest.fixture(scope="module")
def kill_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kill-switch")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster(kill_dir):
    """One local Ray instance for the module (starting one takes seconds); engines made here join it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": install_kill_switch,
                          # the hook runs before Ray adds the driver's folder to the workers' path: name it here
                          "env_vars": {"FEATGRAPH_TEST_KILL_DIR": str(kill_dir), "PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()


def match_task(task: Task, small: np.ndarray, large: np.ndarray) -> dict:
    """One pair (or one row block of the larger SAE) through the matching engine, as the atlas runs it."""
    r0, r1 = task.params["rows"]
    m = match_pair(small, large[r0:r1], task.params["tau"], method="fp32", device=task.params["device"],
                   progress=False)
    return {"max_cos": m.max_cos, "argmax": m.argmax, "edges": np.stack([m.edge_small, m.edge_large + r0]),
            "edge_cos": m.edge_cos, "device": task.params["device"], "writeable": bool(large.flags.writeable)}


def die_once_then_match(task: Task, small: np.ndarray, large: np.ndarray) -> dict:
    """Kills its own worker process the first time (a marker file remembers), then matches like ``match_task``."""
    marker = Path(task.params["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return match_task(task, small, large)


def always_die(task: Task) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def refuse_and_count(task: Task) -> None:
    with open(task.params["log"], "a") as f:
        f.write("attempt\n")
    raise ConfigError(f"tau must be in (0, 1), got {task.params['tau']}")


@pytest.fixture(scope="module")
def collection():
    """Unit rows of a planted 3-width ladder and one pair task per adjacent pair, the largest split in 2 row blocks."""
    decoders, _ = planted_ladder([40, 80, 160], 16, seed=3, near_tau=0.7, n_near_tau=3)
    arrays = {f"fp{W.shape[0]}": normalize_rows(W)[0] for W in decoders}
    tasks = [Task("pair/40-80", ("fp40", "fp80"), {"rows": (0, 80), "tau": 0.7, "device": "auto"})]
    tasks += [Task(f"pair/80-160/rows{r0}", ("fp80", "fp160"), {"rows": (r0, r0 + 80), "tau": 0.7, "device": "auto"})
              for r0 in (0, 80)]
    return arrays, tasks


def same_results(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for name in ("max_cos", "argmax", "edges", "edge_cos"):
            np.testing.assert_array_equal(a[key][name], b[key][name], err_msg=f"{key} {name}")


def test_ray_gives_the_local_engines_results_with_each_array_put_once(collection):
    arrays, tasks = collection
    local = dict(LocalEngine().map(match_task, tasks, arrays))
    with get_engine("ray") as engine:
        assert isinstance(engine, RayEngine)
        assert engine.gpus_per_task == 0  # this cluster has no GPU: tasks ask for none
        got = dict(engine.map(match_task, tasks, arrays))
        assert engine.puts == 3 and engine.put_bytes == sum(a.nbytes for a in arrays.values())
        again = dict(engine.map(match_task, tasks[:1], arrays))  # a second map reuses the stored arrays
        assert engine.puts == 3
    same_results(local, got)
    same_results({"pair/40-80": local["pair/40-80"]}, again)
    assert sum(r["edges"].shape[1] for r in got.values()) > 0  # the planted copies and splits give edges
    # on the workers the arrays are read-only views of the object store (zero-copy), and "auto" became this
    # worker's device: no GPU was requested, so the CPU
    assert {r["writeable"] for r in got.values()} == {False}
    assert {r["device"] for r in got.values()} == {"cpu"}
    assert ray.is_initialized()  # an engine that joined a running Ray leaves it running


def test_a_killed_worker_is_retried_and_the_results_are_the_same(collection, tmp_path):
    arrays, tasks = collection
    marker = tmp_path / "killed"
    victim = Task(tasks[1].key, tasks[1].inputs, {**tasks[1].params, "marker": str(marker)})
    others = [Task(t.key, t.inputs, {**t.params, "marker": str(tmp_path / f"never{i}")}) for i, t in enumerate(tasks)]
    for task in others:
        Path(task.params["marker"]).write_text("present: do not die")
    run = [others[0], victim, others[2]]
    local = dict(LocalEngine().map(match_task, tasks, arrays))
    got = dict(RayEngine(max_retries=2).map(die_once_then_match, run, arrays))
    assert marker.exists()  # the victim's first attempt did kill its worker
    same_results(local, got)


def test_a_worker_that_keeps_dying_is_an_engine_error_naming_the_task():
    with pytest.raises(EngineError, match="Ray task 'doomed' failed after its retries"):
        list(RayEngine(max_retries=0).map(always_die, [Task("doomed")], {}))


def test_a_task_error_is_raised_as_itself_and_not_retried(tmp_path):
    log = tmp_path / "attempts"
    with pytest.raises(ConfigError, match=r"tau must be in \(0, 1\), got 1.5"):
        list(RayEngine(max_retries=3).map(refuse_and_count, [Task("bad", (), {"log": str(log), "tau": 1.5})], {}))
    assert log.read_text() == "attempt\n"


def test_ray_engine_refuses_bad_resources_and_duplicate_keys():
    with pytest.raises(ConfigError, match="cpus_per_task > 0"):
        RayEngine(cpus_per_task=0)
    with pytest.raises(ValueError, match="duplicate task key 'x'"):
        list(RayEngine().map(always_die, [Task("x"), Task("x")], {}))


def digests(out: Path) -> dict[str, str]:
    """Every file's sha256 but the two that record the resolved config (which names the engine)."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in ("config.json", "summary.json")}


def without_engine(path: Path, *nested: str) -> dict:
    doc = json.loads(path.read_text())
    cfg = doc[nested[0]] if nested else doc
    assert cfg.pop("engine") in ("local", "ray")
    cfg.pop("out", None)
    return doc


def test_featgraph_atlas_on_ray_writes_the_local_bytes_even_when_a_worker_is_killed(tmp_path, kill_dir):
    truth = build_collection(tmp_path)
    runs = {}
    for name, extra in (("local", ()), ("ray", ("--engine", "ray")), ("ray-killed", ("--engine", "ray"))):
        if name == "ray-killed":
            (kill_dir / "armed").touch()
        code, out, err = run_main("atlas", truth.manifest, "--out", tmp_path / name, "--quiet", *extra)
        assert code == 0, err
        runs[name] = digests(tmp_path / name)
    assert (kill_dir / "killed").read_text().startswith(("families/", "flow/", "compare/"))  # a task's worker died
    assert any(k.endswith(".parquet") for k in runs["local"]) and "graph.graphml" in runs["local"]
    assert runs["ray"] == runs["local"]  # every table, graph and figure: byte-identical
    assert runs["ray-killed"] == runs["local"]
    for name in ("ray", "ray-killed"):  # the summary and the config differ only in the engine they name
        assert without_engine(tmp_path / name / "summary.json", "config") == without_engine(
            tmp_path / "local" / "summary.json", "config")
        assert without_engine(tmp_path / name / "config.json") == without_engine(tmp_path / "local" / "config.json")


def test_featgraph_atlas_joins_a_running_cluster_given_its_address(tmp_path):
    """``ray start --head`` in its own process (its own temp dir), then ``featgraph atlas --engine ray --address``
    from another process: the same bytes as the local engine; the head is stopped by its own process id."""
    ray_cli = shutil.which("ray")
    if ray_cli is None:
        pytest.skip("the ray command is not on PATH")
    truth = build_collection(tmp_path)
    code, _, err = run_main("atlas", truth.manifest, "--out", tmp_path / "local", "--quiet")
    assert code == 0, err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_tmp = tempfile.mkdtemp(prefix="fgray")  # short: Ray's socket paths live under it
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", f"--temp-dir={ray_tmp}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                check_reachable(f"127.0.0.1:{port}", timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline or head.poll() is not None:
                    raise
                time.sleep(0.5)
        env = {**os.environ, "RAY_AUTH_MODE": "token"}  # Ray 2.60 starts clusters with token auth; the driver opts in
        res = subprocess.run([sys.executable, "-c", "from featgraph.cli.main import main; main()", "atlas",
                              str(truth.manifest), "--out", str(tmp_path / "joined"), "--quiet", "--engine", "ray",
                              "--address", f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    finally:
        head.terminate()  # `ray start --block` drains and stops the processes it started
        head.wait(timeout=90)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert digests(tmp_path / "joined") == digests(tmp_path / "local")
    joined, local = (without_engine(tmp_path / n / "config.json") for n in ("joined", "local"))
    assert (joined.pop("address"), local.pop("address")) == (f"127.0.0.1:{port}", None)
    assert joined == local


def test_featgraph_atlas_on_ray_without_address_starts_and_stops_its_own_ray(tmp_path):
    """The plain user path, in a fresh process with no Ray running: ``--engine ray`` starts a local instance for the
    run, writes the local engine's bytes and shuts it down (the process exits cleanly, no traceback)."""
    truth = build_collection(tmp_path)
    code, _, err = run_main("atlas", truth.manifest, "--out", tmp_path / "local", "--quiet")
    assert code == 0, err
    script = ("import ray, sys\n"
              "from featgraph.cli.main import main\n"
              "try:\n"
              "    main(sys.argv[1:])\n"
              "except SystemExit as e:\n"
              "    assert e.code in (0, None), e.code\n"
              "print('ray still up:', ray.is_initialized())\n")
    res = subprocess.run([sys.executable, "-c", script, "atlas", str(truth.manifest), "--out", str(tmp_path / "own"),
                          "--quiet", "--engine", "ray"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ray still up: False" in res.stdout and "Traceback" not in res.stderr
    assert digests(tmp_path / "own") == digests(tmp_path / "local")
