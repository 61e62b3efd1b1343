"""The report room: stitching analyses rendered as one self-contained HTML page (figures embedded, no external
resource), and ``featgraph report``'s entry point.

- :mod:`featgraph.report.html`: :func:`render_html`, :func:`table_html`, :func:`write_html`;
- :mod:`featgraph.report.run`: :func:`run_report` (a :class:`featgraph.config.ReportConfig` in, a folder out).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "render_html": "html", "table_html": "html", "write_html": "html",
    "run_report": "run", "ReportResult": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
