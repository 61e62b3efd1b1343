"""The engine contract without Ray: LocalEngine runs tasks in order in-process, and the local path never imports Ray."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest

from featgraph.atlas.engines import EngineError, LocalEngine, Task, check_reachable, get_engine, largest_first
from featgraph.errors import ConfigError


def weighted_sum(task: Task, *arrays: np.ndarray) -> dict:
    return {"sum": float(sum(a.sum() for a in arrays) * task.params["w"]), "n": len(arrays)}


def test_local_engine_runs_every_task_in_order_with_its_named_arrays():
    arrays = {"a": np.arange(4.0), "b": np.ones((2, 3))}
    tasks = [Task("t2", ("a", "b"), {"w": 2}), Task("t1", ("b",), {"w": 1}), Task("t0", (), {"w": 5})]
    got = list(get_engine("local").map(weighted_sum, tasks, arrays))
    assert got == [("t2", {"sum": 24.0, "n": 2}), ("t1", {"sum": 6.0, "n": 1}), ("t0", {"sum": 0.0, "n": 0})]


def test_local_engine_passes_the_callers_arrays_without_copies():
    a = np.zeros(3)
    seen = list(LocalEngine().map(lambda task, x: x, [Task("k", ("a",))], {"a": a}))
    assert seen[0][1] is a


def test_duplicate_keys_and_missing_arrays_are_refused_before_any_task_runs():
    calls = []

    def record(task, *arrays):
        calls.append(task.key)

    with pytest.raises(ValueError, match="duplicate task key 'x'"):
        list(LocalEngine().map(record, [Task("x"), Task("x")], {}))
    with pytest.raises(KeyError, match="'y' reads arrays \\['nope'\\]"):
        list(LocalEngine().map(record, [Task("x"), Task("y", ("nope",))], {}))
    assert calls == []


def test_get_engine_refuses_unknown_names_and_an_address_for_the_local_engine():
    with pytest.raises(ConfigError, match="unknown engine 'spark'.*local, ray"):
        get_engine("spark")
    with pytest.raises(ConfigError, match="--address '10.0.0.1:6379' only applies to --engine ray"):
        get_engine("local", address="10.0.0.1:6379")


def test_the_local_path_imports_no_ray():
    # a fresh interpreter: this test session may have imported Ray for the Ray tests
    code = (
        "import sys, numpy as np\n"
        "import featgraph.atlas\n"
        "from featgraph.atlas.engines import Task, get_engine\n"
        "out = list(get_engine('local').map(lambda t, a: a.sum(), [Task('k', ('a',))], {'a': np.ones(3)}))\n"
        "assert out == [('k', 3.0)], out\n"
        "print('ray' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


def test_the_ray_engine_without_ray_installed_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(EngineError, match=r"--engine ray needs Ray.*pip install 'featgraph\[ray\]'"):
        get_engine("ray")


def test_an_address_nobody_answers_is_refused_at_once_naming_it():
    # ray.init would retry a dead address for minutes; the engine checks it first (no Ray needed for the check)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(EngineError, match=f"no Ray cluster answers at --address '{address}'"):
            check_reachable(address, timeout=2)
    with pytest.raises(ConfigError, match="--address 'headnode' is not host:port"):
        check_reachable("headnode")
    check_reachable("auto")  # Ray finds the cluster itself: nothing to check here


def test_ray_submits_the_largest_tasks_first_and_keeps_the_callers_order_on_ties():
    arrays = {"s": np.zeros((4, 2)), "m": np.zeros((8, 2)), "l": np.zeros((16, 2))}
    tasks = [Task("sm", ("s", "m")), Task("ml/rows0", ("m", "l")), Task("none"), Task("ml/rows1", ("m", "l")),
             Task("ss", ("s", "s")), Task("given", ("s",), {"cost": 1e9})]
    order = [t.key for t in largest_first(tasks, arrays)]
    assert order == ["given", "ml/rows0", "ml/rows1", "sm", "ss", "none"]
