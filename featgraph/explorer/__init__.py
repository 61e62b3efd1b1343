"""The explorer room: the family explorer page (one self-contained HTML file) and the weekday-style panel.

- :mod:`featgraph.explorer.data`: :func:`page_data` joins a ``featgraph families`` folder with a ``featgraph
  explain`` folder into the page's compact data;
- :mod:`featgraph.explorer.page`: :func:`render_page` (Cytoscape.js + dagre and the data inlined), :func:`write_page`;
- :mod:`featgraph.explorer.panel`: :func:`split_panel`, the largest split families' top tokens side by side;
- :mod:`featgraph.explorer.run`: :func:`run_explore` (an :class:`ExploreConfig` in, ``page.html`` out).

Modules load on first use.
"""

from __future__ import annotations

from featgraph import lazy_getattr

_EXPORTS = {
    "ExploreConfig": "config", "page_data": "data", "read_families": "data", "read_examples": "data",
    "render_page": "page", "write_page": "page", "split_panel": "panel", "split_panel_png": "panel",
    "run_explore": "run", "ExploreResult": "run",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
