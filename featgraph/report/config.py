"""``featgraph report``'s config with the explorer's input: :class:`featgraph.config.ReportConfig` (kept where it
is: ``featgraph/config.py`` is full) plus ``examples``, a ``featgraph explain`` output folder, or ``explain``.

With ``examples`` the report also runs ``featgraph families`` on its ladder (into ``families/``), writes the family
explorer (``explorer.html``, :mod:`featgraph.explorer`) and puts the weekday-style panel of the largest split
families on ``report.html``. With ``explain`` (instead of ``examples``) the report first runs
:func:`featgraph.explain.run_explain` over its own store (``acts``) into ``<out>/examples/`` and uses that folder.

``explain`` is off by default: explain costs about 1.4 encode passes per SAE and loads the store's tokenizer,
about half again a report's own stitching passes (two encodes per adjacent pair plus CE and Frankenstein's
retraining), so a user asks for it; its inputs (token ids in the store, the SAEs' d_in, the tokenizer) are checked
before the stitching passes, so a bad one costs seconds. ``n_tokens`` limits explain too: it reads the whole
contexts holding the first ``n_tokens`` rows (``featgraph explain --n-tokens``), not the whole store.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from featgraph.config import ReportConfig, check_path
from featgraph.errors import ConfigError

IDS_TOKENIZER = "ids"  # as featgraph.explain.config (not imported: the config must load without the explain room)


@dataclasses.dataclass
class ReportExamplesConfig(ReportConfig):
    """:class:`featgraph.config.ReportConfig` + ``examples`` (an input: ``--out`` may never touch it), or
    ``explain`` (run explain over ``acts`` into ``<out>/examples/``; ``tokenizer`` as ``featgraph explain``'s)."""

    path_fields: ClassVar[tuple[str, ...]] = (*ReportConfig.path_fields, "examples", "tokenizer")
    examples: str | None = None
    explain: bool = False
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.examples = check_path("examples", self.examples, optional=True)
        if not isinstance(self.explain, bool):
            raise ConfigError(f"explain must be true or false, got {self.explain!r}")
        if self.explain and self.examples is not None:
            raise ConfigError(f"--explain and --examples {self.examples} both given: --examples uses an explain "
                              "folder as it is, --explain makes one from --acts; pass one")
        if self.tokenizer is not None and (not isinstance(self.tokenizer, str) or not self.tokenizer):
            raise ConfigError(f"tokenizer must be a model name, a folder or {IDS_TOKENIZER!r}, got {self.tokenizer!r}")
        if self.tokenizer is not None and not self.explain:
            raise ConfigError(f"--tokenizer {self.tokenizer} only applies with --explain")

    def inputs(self) -> list[str]:
        """Every local input path; ``"ids"`` names no tokenizer folder."""
        return [p for p in super().inputs() if not (self.tokenizer == IDS_TOKENIZER and p == IDS_TOKENIZER)]
