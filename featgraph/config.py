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
def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not all(isinstance(n, str) and n for n in value):
        raise ConfigError(f"names must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _saes(command: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, os.PathLike)):
        value = (value,)
    if not value:
        raise ConfigError(f"{command} needs at least one SAE")
    return tuple(check_path("saes", s) for s in value)  # type: ignore[misc]


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
    return str(value)


@dataclasses.dataclass
class FamiliesConfig(CommandConfig):
    """``featgraph families SAE...``: match every adjacent pair of a ladder, novel features, families, trees.

    ``config.json`` beside the result is the summary's ``config`` (resolved paths, names, d_in, the method and
    device "auto" became, version), written by :func:`featgraph.families.run_families`."""

    command: ClassVar[str] = "families"
    path_fields: ClassVar[tuple[str, ...]] = ("saes", "index")
    saes: tuple[str, ...] = ()
    out: str = ""
    tau: float = 0.7
    names: tuple[str, ...] | None = None  #: SAE names in the order found (default: folder names)
    index: str | None = None  #: a saved similarity index to take the unit rows from
    plots: bool = False
    method: str = "auto"
    device: str = "auto"
    progress: bool = run_only(True)

    def __post_init__(self) -> None:
        from featgraph.matching.core import METHODS  # numpy only: the matcher's own list of methods

        self.tau = check_tau(self.tau)
        self.saes = _saes(self.command, self.saes)
        self.out = check_path("out", self.out)
        self.names = None if self.names is None else _names(self.names)
        self.index = check_path("index", self.index, optional=True)
        self.plots = bool(self.plots)
        self.method = _choice("method", self.method, METHODS)
        self.device = check_device(self.device)


@dataclasses.dataclass
class IndexConfig(CommandConfig):
    """``featgraph index SAE...``: one persisted similarity index per SAE (``featgraph families --index``)."""

    command: ClassVar[str] = "index"
    path_fields: ClassVar[tuple[str, ...]] = ("saes",)
    saes: tuple[str, ...] = ()
    out: str = ""
    names: tuple[str, ...] | None = None
    format: str = "auto"
    device: str = "auto"
    progress: bool = run_only(True)

    def __post_init__(self) -> None:
        from featgraph.formats.dispatch import FORMATS  # numpy only

        self.saes = _saes(self.command, self.saes)
        self.out = check_path("out", self.out)
        self.names = None if self.names is None else _names(self.names)
        if self.format not in ("auto", *FORMATS):
            raise ConfigError(f"unknown SAE format {self.format!r}; expected 'auto' or one of {FORMATS}")
        self.device = check_device(self.device)


@dataclasses.dataclass
class _ModelTextOptions(CommandConfig):
    """Fields the commands that run a model share: which model, which text, context size, seed."""

    model: str | None = None  #: hub name or local folder (default: the bundled SmolLM2-135M)
    text: tuple[str, ...] = ()  #: text files or folders (default: the pinned offline corpus)
    context_size: int = 128
    seed: int = 0
    progress: bool = run_only(True)
    corpus: str = "default"  #: pinned offline corpus when no text is given (featgraph.activations.text.CORPORA)

    def __post_init__(self) -> None:
        self.corpus = _choice("corpus", self.corpus, ("default", "stdlib"))
        self.model = check_path("model", self.model, optional=True)
        self.text = tuple(check_path("text", t) for t in self.text)  # type: ignore[misc]
        self.seed = check_seed(self.seed)

    def _check_counts(self, n_tokens: Any) -> int:
        """``n_tokens >= 1`` and ``context_size >= 2`` (a context gives ``context_size - 1`` rows without BOS)."""
        ok = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (n_tokens, self.context_size))
        if not ok or n_tokens < 1 or self.context_size < 2:
            raise ConfigError(f"n_tokens must be >= 1 and context_size >= 2, got {n_tokens!r} and "
                              f"{self.context_size!r}")
        self.context_size = int(self.context_size)
        return int(n_tokens)


@dataclasses.dataclass
class EvalConfig(_ModelTextOptions):
    """``featgraph eval SAE...``: the post's metrics table on held-out text (``metrics.parquet``, ``metrics.md``)."""

    command: ClassVar[str] = "eval"
    path_fields: ClassVar[tuple[str, ...]] = ("saes", "text", "model")
    saes: tuple[str, ...] = ()
    out: str = ""
    n_tokens: int = 20_000
    hook: str | None = None  #: model site (default: the SAEs' own hook_name)
    batch_size: int = 8  #: contexts per model forward
    ce: bool = True  #: CE loss recovered (spliced forwards); False: reconstruction metrics only

    def __post_init__(self) -> None:
        super().__post_init__()
        self.saes = _saes(self.command, self.saes)
        self.out = check_path("out", self.out)
        self.n_tokens = self._check_counts(self.n_tokens)
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)
        self.ce = bool(self.ce)


@dataclasses.dataclass
class CollectConfig(_ModelTextOptions):
    """``featgraph collect``: a model's activations at one hook into an on-disk store (its ``meta.json`` records
    the run: model, hook, split, token provenance)."""

    command: ClassVar[str] = "collect"
    path_fields: ClassVar[tuple[str, ...]] = ("text", "model")
    out: str = ""
    hook: str = "blocks.3.hook_resid_pre"
    split: str = "heldout"
    n_tokens: int = 100_000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.out = check_path("out", self.out)
        self.split = _choice("split", self.split, ("train", "heldout"))
        self.n_tokens = self._check_counts(self.n_tokens)


@dataclasses.dataclass
class TrainRunConfig(_ModelTextOptions):
    """``featgraph train``: collect a training store if needed, then one SAE per width on the same batches.

    The hyperparameters are :class:`featgraph.training.TrainConfig` (``train``); this is the command around them."""

    command: ClassVar[str] = "train"
    path_fields: ClassVar[tuple[str, ...]] = ("acts", "eval_acts", "text", "model")
    widths: tuple[int, ...] = ()
    acts: str = ""
    out: str = ""
    hook: str = "blocks.3.hook_resid_pre"
    collect_tokens: int = 1_000_000
    train: Any = None  #: a featgraph.training.TrainConfig (default: its defaults)
    name_prefix: str = "sae"
    fp16: bool = False
    saelens: str | None = None  #: also write SAELens-format copies under this folder
    eval_acts: str | None = None  #: held-out store for health.json (default: the training store's first tokens)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.widths, str):
            try:
                self.widths = tuple(int(w) for w in self.widths.split(",") if w.strip())
            except ValueError as e:
                raise ConfigError(f"--widths must be comma-separated integers, got {self.widths!r}") from e
        self.widths = tuple(check_int("widths", w, minimum=1) for w in self.widths)  # type: ignore[misc]
        self.acts = check_path("acts", self.acts)
        self.out = check_path("out", self.out)
        self.collect_tokens = self._check_counts(self.collect_tokens)
        if not isinstance(self.name_prefix, str) or not self.name_prefix:
            raise ConfigError(f"name_prefix must be a non-empty string, got {self.name_prefix!r}")
        self.fp16 = bool(self.fp16)
        self.saelens = check_path("saelens", self.saelens, optional=True)
        self.eval_acts = check_path("eval_acts", self.eval_acts, optional=True)
