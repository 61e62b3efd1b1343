"""The configs of ``featgraph compare`` and ``featgraph neighbors``: validated once, the Python API's argument, what
the CLI builds from its options, and the ``config.json`` written beside the result (as every command's config in
:mod:`featgraph.config`, whose base class and check helpers they use).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from featgraph.config import (
    CommandConfig,
    check_device,
    check_int,
    check_path,
    check_tau,
    run_only,
)
from featgraph.errors import ConfigError


def _name(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{field} must be a non-empty string, got {value!r}")
    return value


@dataclasses.dataclass
class CompareConfig(CommandConfig):
    """``featgraph compare A B``: every feature of A against B and back, the exact one-to-one assignment, PW-MCC,
    shared share, split-aware families and, with ``acts``, the activation similarities of the pairs.

    ``a`` / ``b``: one SAE each (a path in any supported format, or a hub name), any widths, the same d_in.
    ``name_a`` / ``name_b``: the SAEs' names in tables and graphs (default: folder or file names, as
    :func:`featgraph.ladder.default_names`). ``acts``: an activation store (``featgraph collect``) for the
    activation similarities; ``n_tokens``: use only its first N tokens. ``examples``: a ``featgraph explain``
    output whose labels go on graph nodes and feature rows. ``act_threshold``: the masked-cos threshold above
    which a pair is an activation edge (precision/recall of decoder edges).
    """

    command: ClassVar[str] = "compare"
    path_fields: ClassVar[tuple[str, ...]] = ("a", "b", "acts", "examples")
    a: str = ""
    b: str = ""
    out: str = ""
    tau: float = 0.7
    acts: str | None = None
    n_tokens: int | None = None
    examples: str | None = None
    name_a: str | None = None
    name_b: str | None = None
    act_threshold: float = 0.5
    batch_size: int = 4096
    plots: bool = True  #: write the figures (matplotlib: about 2 s)
    method: str = "auto"  #: GEMM of the matcher and of the assignment's candidate pass (auto, fp32, bf16)
    device: str = "auto"
    progress: bool = run_only(True)

    def __post_init__(self) -> None:
        self.a = check_path("a", self.a)
        self.b = check_path("b", self.b)
        self.out = check_path("out", self.out)
        self.tau = check_tau(self.tau)
        self.acts = check_path("acts", self.acts, optional=True)
        self.n_tokens = check_int("n_tokens", self.n_tokens, minimum=1, optional=True)
        if self.n_tokens is not None and self.acts is None:
            raise ConfigError("n_tokens applies to --acts, which was not given")
        self.examples = check_path("examples", self.examples, optional=True)
        self.name_a = _name("name_a", self.name_a)
        self.name_b = _name("name_b", self.name_b)
        try:
            self.act_threshold = float(self.act_threshold)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"act_threshold must be a number in (0, 1), got {self.act_threshold!r}") from e
        if not 0 < self.act_threshold < 1:
            raise ConfigError(f"act_threshold must be a number in (0, 1), got {self.act_threshold!r}")
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)
        self.plots = bool(self.plots)
        if self.method not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"method must be one of ('auto', 'fp32', 'bf16'), got {self.method!r}")
        self.device = check_device(self.device)


@dataclasses.dataclass
class NeighborsConfig(CommandConfig):
    """``featgraph neighbors INDEX``: the exact top-``k`` features, over every SAE of a saved index, most similar
    (decoder cos) to one feature (``feature = "SAE:ID"``) or to a vector (``vector``: a .npy, .safetensors or .pt
    file holding one ``[d_in]`` vector).

    ``k`` has no cap: a ``k`` above the number of candidate features returns them all. The query feature itself
    is left out of its own results; zero decoder rows (no direction) are never results. Ties are broken by cos
    (descending), then SAE order in the index, then feature id.
    """

    command: ClassVar[str] = "neighbors"
    path_fields: ClassVar[tuple[str, ...]] = ("index", "vector")
    index: str = ""
    feature: str | None = None
    vector: str | None = None
    k: int = 20
    out: str | None = None
    progress: bool = run_only(True)

    def __post_init__(self) -> None:
        self.index = check_path("index", self.index)
        self.feature = _name("feature", self.feature)
        self.vector = check_path("vector", self.vector, optional=True)
        if (self.feature is None) == (self.vector is None):
            raise ConfigError("give exactly one query: --feature SAE:ID or --vector FILE")
        self.k = check_int("k", self.k, minimum=1)
        self.out = check_path("out", self.out, optional=True)
