"""Where the atlas's tasks run: in this process (``LocalEngine``, the default) or on a Ray cluster (``RayEngine``).

An engine maps a module-level function over small picklable :class:`Task` records. Each task names the shared arrays
it reads (``Task.inputs``, e.g. SAE fingerprints) instead of carrying them, so a distributed engine can ship every
array once and pass it by reference to all the tasks that need it. Results come back as ``(task.key, result)`` in
completion order; the caller sorts by key, so what it writes does not depend on the engine or on the order.

Nothing imports Ray until a :class:`RayEngine` is made (``get_engine("ray")``): the local path works without Ray.

How :class:`RayEngine` maps the contract onto Ray (``pip install featgraph[ray]``):

- every shared array (an SAE's unit rows) is ``ray.put`` into the object store ONCE per engine and passed to each
  task that reads it as a top-level ``ObjectRef`` argument: Ray resolves it before the task runs, as a zero-copy,
  read-only numpy view of the node's shared memory (a node fetches an array once, whatever the number of tasks on
  it). A task's own message is then only ``fn`` (by reference), its small :class:`Task` and the refs.
- tasks are ``ray.remote`` with ``max_retries``: a worker that dies (killed, OOM-killed, its node lost) has its task
  rerun by Ray; exceptions raised by the task's code are NOT retried (``retry_exceptions=False``): bad input fails
  the same way every time, and the first such error is raised in the driver as the original exception.
- tasks are submitted largest first (:func:`largest_first`), so that no worker idles while the last big task runs;
  results stream back in completion order through ``ray.wait``; the caller sorts by key, so what it writes is the
  same as with the local engine.
- per-worker device: a task whose ``params["device"]`` is ``"auto"`` gets ``"cuda"`` when Ray gave it a GPU
  (``gpus_per_task``: by default 1 when the cluster has GPUs, else 0) and ``"cpu"`` otherwise, so tasks never
  share a GPU Ray did not assign them; the function that runs is the same matching code as the local engine's.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import warnings
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


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an ``--address`` whose host does not answer within ``timeout`` seconds: ``ray.init`` itself retries a
    dead address for minutes. ``"auto"`` / ``"local"`` (Ray finds the cluster itself) are left to Ray."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise EngineError(f"no Ray cluster answers at --address {address!r}: {err}") from None


def largest_first(tasks: Sequence[Task], arrays: Mapping[str, np.ndarray]) -> list[Task]:
    """The tasks in submission order: largest first (``params["cost"]`` when given, else the product of the sizes
    of the arrays a task reads, e.g. n_a * n_b * d^2 for a pair), ties in the caller's order. Ray starts tasks
    roughly in submission order; with the large ones first, the last to finish are small and no worker idles long
    at the end (longest-processing-time-first). Results are keyed, so the order changes nothing else."""

    def cost(task: Task) -> float:
        if "cost" in task.params:
            return float(task.params["cost"])
        return float(np.prod([np.size(arrays[name]) for name in task.inputs])) if task.inputs else 0.0

    return sorted(tasks, key=cost, reverse=True)  # stable: equal costs keep the caller's order


def run_task(fn: TaskFn, task: Task, *arrays: np.ndarray) -> Any:
    """What each Ray worker runs: resolve ``device="auto"`` for this worker, then ``fn(task, *arrays)``."""
    import ray

    if task.params.get("device") == "auto":
        device = "cuda" if ray.get_gpu_ids() else "cpu"
        task = dataclasses.replace(task, params={**task.params, "device": device})
    with warnings.catch_warnings():
        # the arrays are read-only views of the object store; torch.from_numpy warns about that, matching only reads
        warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
        return fn(task, *arrays)


class RayEngine:
    """Runs tasks on Ray: joins ``address`` (an existing cluster, e.g. ``"ray://head:10001"`` or ``"auto"``) or,
    without one, starts a local Ray instance with ``num_cpus`` CPUs (all of them when None) that :meth:`close`
    shuts down. A Ray already initialised in this process (e.g. by a test) is used as it is and left running.

    ``cpus_per_task`` / ``gpus_per_task`` are each task's Ray resource request (how many tasks share a node;
    ``gpus_per_task=None``: one GPU per task when the cluster has any, else none);
    ``max_retries`` is how many times a task whose worker died is rerun.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_task: float = 1.0,
        gpus_per_task: float | None = None,
        max_retries: int = 3,
        log_to_driver: bool = False,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise EngineError("--engine ray needs Ray, which is not installed: pip install 'featgraph[ray]'") from None

        if cpus_per_task <= 0 or (gpus_per_task is not None and gpus_per_task < 0) or max_retries < 0:
            raise ConfigError(
                f"Ray task resources must be cpus_per_task > 0, gpus_per_task >= 0 and max_retries >= 0, got "
                f"{cpus_per_task}, {gpus_per_task}, {max_retries}"
            )
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(
                include_dashboard=False, logging_level=logging.WARNING, log_to_driver=log_to_driver
            )
            if address is None:
                kwargs["num_cpus"] = num_cpus
            elif num_cpus is not None:
                raise ConfigError("num_cpus only applies to a local Ray instance, not to --address " + address)
            else:
                check_reachable(address)
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
                where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
                hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token here)"
                raise EngineError(f"could not start or join {where}: {err}{hint if address else ''}") from None
            self._owns = True
        if gpus_per_task is None:
            gpus_per_task = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        self.gpus_per_task = gpus_per_task
        options = dict(num_cpus=cpus_per_task, max_retries=max_retries, retry_exceptions=False)
        self._remote = ray.remote(run_task).options(num_gpus=gpus_per_task, **options)
        self._remote_cpu = ray.remote(run_task).options(num_gpus=0, **options)  # tasks that asked for the CPU
        self._refs: dict[str, Any] = {}  # array name -> ObjectRef: each array is put once per engine
        self._shapes: dict[str, tuple] = {}
        self.puts = 0  # how many arrays went into the object store (the benchmark and tests read it)
        self.put_bytes = 0

    def _ref(self, name: str, array: np.ndarray) -> Any:
        ref = self._refs.get(name)
        if ref is None:
            array = np.ascontiguousarray(array)
            ref = self._refs[name] = self._ray.put(array)
            self._shapes[name] = (array.shape, array.dtype.str)
            self.puts += 1
            self.put_bytes += array.nbytes
        elif self._shapes[name] != (np.shape(array), np.asarray(array).dtype.str):
            # names are content keys (fingerprints): the same name with another shape is a caller bug
            raise ValueError(f"array {name!r} was put with shape/dtype {self._shapes[name]}, now {np.shape(array)}")
        return ref

    def map(self, fn: TaskFn, tasks: Sequence[Task], arrays: Mapping[str, np.ndarray]) -> Iterator[tuple[str, Any]]:
        check_tasks(tasks, arrays)
        ray = self._ray
        pending = {}
        for task in largest_first(tasks, arrays):
            refs = [self._ref(name, arrays[name]) for name in task.inputs]
            remote = self._remote_cpu if task.params.get("device") == "cpu" else self._remote
            pending[remote.remote(fn, task, *refs)] = task.key
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    key = pending.pop(ref)
                    yield key, self._get(ref, key)
        finally:
            for ref in pending:  # an error or a consumer that stopped early: do not leave work running
                ray.cancel(ref, force=False)

    def _get(self, ref: Any, key: str) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            if isinstance(err.cause, FeatgraphError):
                raise err.cause from None  # bad input: the same one-line error as the local engine raises
            raise  # a bug: Ray's error carries the worker's traceback (and is an instance of the original type)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.RaySystemError, ray.exceptions.NodeDiedError) as err:
            raise EngineError(f"Ray task {key!r} failed after its retries: {type(err).__name__}: {err}") from None

    def forget(self) -> None:
        """Drop this engine's references to the arrays it put (Ray frees them once no task holds them either)."""
        self._refs.clear()
        self._shapes.clear()

    def close(self) -> None:
        """Release the arrays; shut Ray down if this engine started it."""
        self.forget()
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get_engine(name: str = "local", address: str | None = None, **opts: Any) -> Engine:
    """The engine called ``name``: "local" (default, in-process) or "ray" (``address`` joins an existing cluster)."""
    if name == "local":
        if address is not None:
            raise ConfigError(f"--address {address!r} only applies to --engine ray, not --engine local")
        return LocalEngine()
    if name == "ray":
        return RayEngine(address=address, **opts)  # Ray is imported by RayEngine, never on the local path
    raise ConfigError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
