"""One config object per command: validated once, the Python API's argument, what the CLI builds from its options,
and the ``config.json`` written beside the result (sparsify's pattern).

A config is a dataclass whose ``__post_init__`` checks every field with the helpers below, so a bad value fails in
one line naming it before any file is read; :meth:`CommandConfig.to_json` is what ``config.json`` holds (input paths
resolved, run-only fields such as ``progress`` left out, values the run resolved, e.g. the number of tokens used,
passed in). This module imports only :mod:`featgraph.errors`, so every layer may use it.

The shared base first, then the stitch room's configs (``StitchConfig``, ``FrankensteinConfig``, ``ReportConfig``);
the other commands' configs go at the end, below the marked spot.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from pathlib import Path
from typing import Any, ClassVar

from featgraph.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


# -- validation helpers (one definition each) ----------------------------------------------------------------------
def check_tau(tau: Any) -> float:
    """tau must be a number strictly between 0 and 1 (edges use a strict ``cos > tau``; novel is ``<= tau``)."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not math.isfinite(tau) or not 0 < tau < 1:
        raise ConfigError(f"tau must be a number in (0, 1), got {tau!r}")
    return float(tau)


def check_device(device: Any) -> str:
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {DEVICES}, got {device!r}")
    return str(device)


def check_int(name: str, value: Any, *, minimum: int = 0, optional: bool = False) -> int | None:
    """An integer ``>= minimum`` (bools refused: ``True`` is not a count); ``None`` passes when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_seed(seed: Any) -> int:
    return check_int("seed", seed, minimum=0)


def check_positive(name: str, value: Any) -> float:
    """A finite number ``> 0`` (a learning rate)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def check_path(name: str, value: Any, *, optional: bool = False) -> str | None:
    """A non-empty path or name, kept as given (names such as ``hf://...`` are resolved by the loaders)."""
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"{name} must be a path, got {value!r}")
    return str(value)


def json_path(value: str | None) -> str | None:
    """A path as ``config.json`` records it: resolved when it exists here, as given otherwise (a hub name)."""
    if value is None:
        return None
    return str(Path(value).resolve()) if os.path.exists(value) else str(value)


def local_paths(*names: str | None) -> list[str]:
    """The names that are existing paths: a local model folder is an input, a hub name like ``gpt2`` is not (and
    must not be compared with ``--out`` as if it were ``./gpt2``)."""
    return [n for n in names if n and os.path.exists(n)]


def run_only(default: Any) -> Any:
    """A field that changes how a run looks (progress bars), not its results: kept out of ``config.json``."""
    return dataclasses.field(default=default, metadata={"json": False})


@dataclasses.dataclass
class CommandConfig:
    """Base of every command's config: ``to_json`` and the inputs that ``--out`` may never touch."""

    command: ClassVar[str] = ""
    path_fields: ClassVar[tuple[str, ...]] = ()  #: fields holding input paths (resolved in config.json)

    def to_json(self, **resolved: Any) -> dict[str, Any]:
        """``config.json``: the command, every field (paths resolved), then ``resolved`` (values the run found)."""
        out: dict[str, Any] = {"command": self.command}
        for f in dataclasses.fields(self):
            if not f.metadata.get("json", True) or f.name == "out":
                continue
            v = getattr(self, f.name)
            if f.name in self.path_fields:
                v = [json_path(p) for p in v] if isinstance(v, (list, tuple)) else json_path(v)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out | resolved

    def inputs(self) -> list[str]:
        """Every input path (local ones only: a hub name is not a folder here)."""
        found: list[str] = []
        for name in self.path_fields:
            v = getattr(self, name)
            found += local_paths(*(v if isinstance(v, (list, tuple)) else [v]))
        return found


# -- the stitch room -------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _ActsOptions(CommandConfig):
    """Fields every stitch-room command shares: activations, tau and CE."""

    out: str = ""
    acts: str = ""
    n_tokens: int | None = None  #: use only the first N tokens of ``acts`` (all when None)
    tau: float = 0.7
    ce_contexts: int = 0  #: contexts of the store's tokens for CE loss recovered (0: no model is loaded)
    model: str | None = None  #: model for CE (default: the bundled SmolLM2-135M)
    batch_size: int = 4096  #: tokens per batch of the streaming pass (bounds memory with the SAE widths)
    progress: bool = run_only(True)

    def __post_init__(self) -> None:
        self.out = check_path("out", self.out)
        self.acts = check_path("acts", self.acts)
        self.n_tokens = check_int("n_tokens", self.n_tokens, minimum=1, optional=True)
        self.tau = check_tau(self.tau)
        self.ce_contexts = check_int("ce_contexts", self.ce_contexts)
        self.model = check_path("model", self.model, optional=True)
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)


@dataclasses.dataclass
class StitchConfig(_ActsOptions):
    """``featgraph stitch SMALL LARGE``: every analysis of one (small, large) pair, one pass over ``acts``."""

    command: ClassVar[str] = "stitch"
    path_fields: ClassVar[tuple[str, ...]] = ("small", "large", "acts", "model")
    small: str = ""
    large: str = ""
    ce_points: int = 6  #: interpolation-path steps with CE recovered (first, last, evenly between)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.small = check_path("small", self.small)
        self.large = check_path("large", self.large)
        self.ce_points = check_int("ce_points", self.ce_points, minimum=0)


@dataclasses.dataclass
class FrankensteinConfig(_ActsOptions):
    """``featgraph frankenstein SAE...``: assembly across a ladder, decoder retraining, comparison."""

    command: ClassVar[str] = "frankenstein"
    path_fields: ClassVar[tuple[str, ...]] = ("saes", "acts", "train_acts", "model")
    saes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  #: SAE names in the order found (default: folder names)
    train_acts: str | None = None  #: store for decoder retraining (default: the second half of ``acts``)
    retrain_tokens: int = 200_000
    lr: float = 1e-3
    retrain_batch_size: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.saes:
            raise ConfigError(f"{self.command} needs at least one SAE")
        self.saes = tuple(check_path("saes", s) for s in self.saes)
        self.names = tuple(str(n) for n in self.names)
        self.train_acts = check_path("train_acts", self.train_acts, optional=True)
        self.retrain_tokens = check_int("retrain_tokens", self.retrain_tokens, minimum=1)
        self.lr = check_positive("lr", self.lr)
        self.retrain_batch_size = check_int("retrain_batch_size", self.retrain_batch_size, minimum=1)
        self.seed = check_seed(self.seed)


@dataclasses.dataclass
class ReportConfig(FrankensteinConfig):
    """``featgraph report SAE...``: every adjacent pair (as stitch) and the Frankenstein SAE on one HTML page."""

    command: ClassVar[str] = "report"
    frankenstein: bool = True
    ce_points: int = 4
    title: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ce_points = check_int("ce_points", self.ce_points, minimum=0)


# -- the other commands' configs go below this line (engineer 7: families, index, eval, collect, train) -------------
