"""``featgraph report``'s config with the explorer's input: :class:`featgraph.config.ReportConfig` (kept where it
is: ``featgraph/config.py`` is full) plus ``examples``, a ``featgraph explain`` output folder.

With ``examples`` the report also runs ``featgraph families`` on its ladder (into ``families/``), writes the family
explorer (``explorer.html``, :mod:`featgraph.explorer`) and puts the weekday-style panel of the largest split
families on ``report.html``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from featgraph.config import ReportConfig, check_path


@dataclasses.dataclass
class ReportExamplesConfig(ReportConfig):
    """:class:`featgraph.config.ReportConfig` + ``examples`` (an input: ``--out`` may never touch it)."""

    path_fields: ClassVar[tuple[str, ...]] = (*ReportConfig.path_fields, "examples")
    examples: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.examples = check_path("examples", self.examples, optional=True)
