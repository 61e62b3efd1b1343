"""``AtlasConfig``: the ``featgraph atlas`` command's one config (CLI options = Python API argument = config.json)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from featgraph.atlas.engines import ENGINES
from featgraph.atlas.plan import PARTS, parse_only
from featgraph.config import CommandConfig, check_device, check_int, check_path, check_tau, run_only
from featgraph.errors import ConfigError

METHODS = ("auto", "fp32", "bf16")  # the exact GEMM paths both the matcher and the assignment take


@dataclasses.dataclass
class AtlasConfig(CommandConfig):
    """``featgraph atlas MANIFEST``: every pair of a collection's plan (families, flow, compare) through an engine.

    ``manifest``: a ``.toml`` / ``.json`` manifest or a ``<site>/<sae>`` folder tree
    (:mod:`featgraph.atlas.collection`). ``only``: the parts of the plan to run (``"families,flow"`` or a tuple);
    ``sites``: keep only pairs whose SAEs lie at these sites. ``engine``: ``"local"`` (in-process, default) or
    ``"ray"`` (``address``: an existing cluster; default: a local one). ``memory_budget``: bytes one task may hold;
    a families/flow pair above it is split into row blocks of its second SAE. ``acts``: activation stores, each
    explained for the SAEs at its hook into ``<out>/examples/<site>/``; ``examples``: ``featgraph explain`` folders;
    both put feature labels on the graph's nodes (:mod:`featgraph.atlas.labels`). ``tokenizer``: as explain's.
    """

    command: ClassVar[str] = "atlas"
    path_fields: ClassVar[tuple[str, ...]] = ("manifest", "acts", "examples", "tokenizer")
    manifest: str = ""
    out: str = ""
    tau: float = 0.7
    only: tuple[str, ...] = PARTS
    sites: tuple[str, ...] = ()
    engine: str = "local"
    address: str | None = None
    memory_budget: int = 4 << 30
    method: str = "auto"
    device: str = "auto"
    acts: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    tokenizer: str | None = None
    progress: bool = run_only(True)

    def __post_init__(self) -> None:
        self.manifest = check_path("manifest", self.manifest)
        self.out = check_path("out", self.out)
        self.tau = check_tau(self.tau)
        self.only = parse_only(self.only)
        if isinstance(self.sites, str):
            self.sites = (self.sites,)
        if not all(isinstance(s, str) and s for s in self.sites):
            raise ConfigError(f"sites must be non-empty strings, got {self.sites!r}")
        self.sites = tuple(self.sites)
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.address is not None and self.engine != "ray":
            raise ConfigError(f"--address {self.address!r} only applies to --engine ray")
        self.memory_budget = check_int("memory_budget", self.memory_budget, minimum=1 << 10)
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {METHODS}, got {self.method!r}")
        self.device = check_device(self.device)
        for field in ("acts", "examples"):
            v = getattr(self, field)
            v = (v,) if isinstance(v, str) else tuple(v)
            setattr(self, field, tuple(check_path(field, p) for p in v))
        if self.tokenizer is not None and (not isinstance(self.tokenizer, str) or not self.tokenizer):
            raise ConfigError(f"tokenizer must be a model name, a folder or 'ids', got {self.tokenizer!r}")
        if self.tokenizer is not None and not self.acts:
            raise ConfigError(f"--tokenizer {self.tokenizer} only applies with --acts")

    def inputs(self) -> list[str]:
        """Every local input path; ``"ids"`` names no tokenizer folder even where a folder of that name exists."""
        return [p for p in super().inputs() if not (self.tokenizer == "ids" and p == "ids")]
