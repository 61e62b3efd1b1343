"""The config of ``featgraph explain``: validated once, the Python API's argument, what the CLI builds from its
options and the ``config.json`` written beside the result (as every command's config in :mod:`featgraph.config`,
whose base class and check helpers it uses).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from featgraph.config import CommandConfig, check_int, check_path, run_only
from featgraph.errors import ConfigError

#: ``tokenizer`` value that writes token ids (``<123>``) instead of decoded strings: for stores of models that ship
#: no tokenizer (tiny test bridges) or when the tokenizer is not available offline
IDS_TOKENIZER = "ids"


@dataclasses.dataclass
class ExplainConfig(CommandConfig):
    """``featgraph explain SAE... --acts STORE``: top-k activating contexts, firing statistics, top tokens and a
    short label for every feature of every SAE, from one streaming encode pass per SAE over ``acts``.

    ``saes``: SAE paths or names (a folder of SAE folders expands, as everywhere); SAEs of one width are allowed
    (a seed control beside its ladder). ``names``: their names (default: folder or file names, as
    :func:`featgraph.ladder.default_names`, the names ``featgraph families`` writes). ``k``: examples per feature
    (distinct contexts). ``window``: tokens shown before the max-activating token (``window // 4`` are shown after
    it). ``top_tokens``: tokens listed per feature by count and by summed activation. ``batch_size``: tokens per
    batch of the pass (rounded down to whole contexts, at least one): bounds memory with the SAE width.
    ``tokenizer``: where token strings come from: None = the model recorded in the store (the bundled SmolLM2 loads
    offline), a hub name or local folder, or ``"ids"`` for ``<id>`` strings without a tokenizer. ``n_tokens``:
    explain only the contexts that hold the store's first ``n_tokens`` rows (whole contexts, so the last one may
    add up to a context's rows beyond ``n_tokens``; the rows stitch and report read with the same limit all lie in
    them); None = the whole store.
    """

    command: ClassVar[str] = "explain"
    path_fields: ClassVar[tuple[str, ...]] = ("saes", "acts", "tokenizer")
    saes: tuple[str, ...] = ()
    out: str = ""
    acts: str = ""
    names: tuple[str, ...] = ()
    k: int = 20
    window: int = 16
    top_tokens: int = 10
    batch_size: int = 4096
    tokenizer: str | None = None
    n_tokens: int | None = None
    progress: bool = run_only(True)

    def __post_init__(self) -> None:
        if isinstance(self.saes, (str, bytes)) or not self.saes:
            raise ConfigError(f"explain needs at least one SAE, got {self.saes!r}")
        self.saes = tuple(check_path("saes", s) for s in self.saes)
        self.out = check_path("out", self.out)
        self.acts = check_path("acts", self.acts)
        if isinstance(self.names, (str, bytes)) or not all(isinstance(n, str) and n for n in self.names):
            raise ConfigError(f"names must be a list of non-empty strings, got {self.names!r}")
        self.names = tuple(self.names)
        self.k = check_int("k", self.k, minimum=1)
        self.window = check_int("window", self.window, minimum=0)
        self.top_tokens = check_int("top_tokens", self.top_tokens, minimum=1)
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)
        self.n_tokens = check_int("n_tokens", self.n_tokens, minimum=1, optional=True)
        if self.k > 32767:  # rank is int16 in examples.parquet
            raise ConfigError(f"k must be at most 32767, got {self.k}")
        if self.window > 4096:  # center is int16; a context longer than this is no "window"
            raise ConfigError(f"window must be at most 4096, got {self.window}")
        if self.tokenizer is not None and (not isinstance(self.tokenizer, str) or not self.tokenizer):
            raise ConfigError(f"tokenizer must be a model name, a folder or {IDS_TOKENIZER!r}, got {self.tokenizer!r}")

    def inputs(self) -> list[str]:
        """Every local input path; ``"ids"`` names no tokenizer folder even where a folder of that name exists."""
        found = super().inputs()
        if self.tokenizer == IDS_TOKENIZER:
            found = [p for p in found if p != IDS_TOKENIZER]
        return found
