"""Where the atlas's tasks run: in this process (``LocalEngine``, the default) or on a Ray cluster (``RayEngine``).

An engine maps a module-level function over small picklable :class:`Task` records. Each task names the shared arrays
it reads (``Task.inputs``, e.g. SAE fingerprints) instead of carrying them, so a distributed engine can ship every
array once and pass it by reference to all the tasks that need it. Results come back as ``(task.key, result)`` in
completion order; the caller sorts by key, so what it writes does not depend on the engine or on the order.

Nothing here imports Ray unless ``get_engine("ray")`` is called: the local path must work without Ray installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from featgraph.errors import ConfigError, FeatgraphError

ENGINES = ("local", "ray")


class EngineError(FeatgraphError, RuntimeError):
    """The engine could not run a task (a Ray cluster unreachable, a task whose workers kept dying)."""


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(task, *[arrays[name] for name in inputs])``; small and picklable."""

    key: str  # unique and stable (e.g. "flow/<fpA>/<fpB>/rows0-4096"); results are keyed by it
    inputs: tuple[str, ...] = ()  # names of shared arrays the task reads
    params: dict = field(default_factory=dict)  # small picklable parameters (tau, row range, kind, ...)


TaskFn = Callable[..., Any]


class Engine(Protocol):
    """Runs ``fn`` over ``tasks``; yields ``(task.key, result)`` in completion order."""

    def map(self, fn: TaskFn, tasks: Sequence[Task], arrays: Mapping[str, np.ndarray]) -> Iterator[tuple[str, Any]]:
        ...

    def close(self) -> None:
        ...


def check_tasks(tasks: Sequence[Task], arrays: Mapping[str, np.ndarray]) -> None:
    """Refuse duplicate keys and inputs that name no array before any work starts (both are caller bugs)."""
    seen: set[str] = set()
    for task in tasks:
        if task.key in seen:
            raise ValueError(f"duplicate task key {task.key!r}")
        seen.add(task.key)
        missing = [name for name in task.inputs if name not in arrays]
        if missing:
            raise KeyError(f"task {task.key!r} reads arrays {missing} that were not given")


class LocalEngine:
    """Runs every task in this process, in the given order (no pickling, no copies)."""

    name = "local"

    def map(self, fn: TaskFn, tasks: Sequence[Task], arrays: Mapping[str, np.ndarray]) -> Iterator[tuple[str, Any]]:
        check_tasks(tasks, arrays)
        for task in tasks:
            yield task.key, fn(task, *[arrays[name] for name in task.inputs])

    def close(self) -> None:
        """Nothing to release; present so callers can close any engine."""


def get_engine(name: str = "local", address: str | None = None, **opts: Any) -> Engine:
    """The engine called ``name``: "local" (default, in-process) or "ray" (``address`` joins an existing cluster)."""
    if name == "local":
        if address is not None:
            raise ConfigError(f"--address {address!r} only applies to --engine ray, not --engine local")
        return LocalEngine()
    if name == "ray":
        from featgraph.atlas.ray_engine import RayEngine  # Ray is imported only here, never on the local path

        return RayEngine(address=address, **opts)
    raise ConfigError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
