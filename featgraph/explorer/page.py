"""The explorer page: one self-contained HTML file (no server, no network: double-click it).

Everything is inlined: the CSS and script in ``assets/``, the vendored Cytoscape.js + dagre in ``vendor/`` (MIT,
see ``vendor/README.md``) and the data of :func:`featgraph.explorer.data.page_data` as JSON in a
``<script type="application/json">`` element. The first script records every JavaScript error (``window.onerror``,
unhandled rejections, ``console.error``) into ``<ul id="fg-errors">``, so a headless browser's ``--dump-dom``
shows them: the browser tests assert that list is empty.

:func:`write_page` writes the file atomically (a temporary beside it, renamed into place). ``--out`` is a file,
so the folder machinery of :mod:`featgraph.io.output` does not apply; the same rules are kept here: never an
input (compared on real paths), never a folder, and an existing file is replaced only when it is an earlier
explorer page (its ``generator`` meta tag), never a user's file.
"""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from featgraph.errors import ConfigError
from featgraph.io.checks import check_no_overlap
from featgraph.io.files import atomic_write

GENERATOR = '<meta name="generator" content="featgraph explore">'
VENDOR = ("cytoscape.min.js", "dagre.min.js", "cytoscape-dagre.js")

ERRORS_JS = """window.FG_ERRORS = [];
(function () {
  function record(msg) {
    window.FG_ERRORS.push(String(msg));
    var ul = document.getElementById("fg-errors"), li = document.createElement("li");
    li.className = "fg-error"; li.textContent = String(msg); ul.appendChild(li); ul.hidden = false;
  }
  window.onerror = function (msg, src, line, col) { record(msg + " (" + src + ":" + line + ":" + col + ")"); };
  window.addEventListener("unhandledrejection", function (e) { record("unhandled rejection: " + e.reason); });
  var ce = console.error;
  console.error = function () { record(Array.prototype.join.call(arguments, " ")); ce.apply(console, arguments); };
})();"""

BODY = """<header><h1>{title}</h1><span id="status"></span><span id="msg"></span></header>
<ul id="fg-errors" hidden></ul>
<div id="app">
<aside id="side">
<input id="search" type="search" placeholder="search labels, tokens, ids (l3-576:202), kinds">
<div class="controls">
<select id="kind" title="kind"><option value="">all kinds</option><option value="split">split</option>
<option value="merge">merge</option><option value="n:m">n:m</option><option value="copy">copy</option>
<option value="novel">novel features</option></select>
<label>min size <input id="minsize" type="number" min="1" value="1"></label>
<label title="a family's lowest edge cos; a novel feature's max cos">cos &le; <input id="maxcos" type="number"
min="0" max="1" step="0.05" value="1"></label>
<select id="sort" title="order"><option value="size">largest first</option>
<option value="cos">lowest cos first</option><option value="id">by pair and id</option></select>
</div>
<div id="count"></div>
<ol id="list"></ol>
</aside>
<main>
<div id="graphbox"><div id="sel">Pick a family or a novel feature on the left.</div><div id="rows"></div>
<div id="graph"></div></div>
<div id="contexts"></div>
</main>
</div>"""


def _asset(folder: str, name: str) -> str:
    return resources.files("featgraph.explorer").joinpath(folder, name).read_text(encoding="utf-8")


def _script(code: str) -> str:
    # "</script" inside code would end the element early; "<\\/" is the same string to JavaScript
    return "<script>" + code.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT") + "</script>"


def data_json(data: dict[str, Any]) -> str:
    """The data as embedded: compact JSON with ``<`` escaped (``\\u003c`` is ``<`` to JSON.parse), so no token
    text can close the script element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(data: dict[str, Any]) -> str:
    """The whole page as one string (deterministic: the same data gives the same bytes)."""
    title = html.escape(str(data.get("title") or "featgraph explorer"))
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', GENERATOR,
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}</title>", "<style>" + _asset("assets", "explorer.css") + "</style>",
        _script(ERRORS_JS), "</head><body>", BODY.format(title=title),
        '<script id="fg-data" type="application/json">' + data_json(data) + "</script>",
        *(_script(_asset("vendor", v)) for v in VENDOR),
        _script(_asset("assets", "explorer.js")), "</body></html>", "",
    ]
    return "\n".join(parts)


def check_page_out(out: str | os.PathLike[str], inputs: list[str]) -> Path:
    """Refuse an ``--out`` page that overlaps an input, is a folder, or is an existing file that is not an earlier
    explorer page; prove the folder it goes in is writable (or creatable). Returns the resolved path."""
    real = Path(check_no_overlap(out, inputs))
    if real.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give the page's file name (e.g. {Path(out) / 'explorer.html'})")
    if os.path.lexists(real):
        try:
            with open(real, "rb") as fh:
                head = fh.read(4096).decode("utf-8", "replace")
        except OSError as e:
            raise ConfigError(f"--out {out}: exists and cannot be read ({e.strerror or e})") from e
        if GENERATOR not in head:
            raise ConfigError(f"--out {out}: exists and is not a featgraph explorer page; refusing to replace it")
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot write in {parent}")
    return real


def write_page(page: str, out: str | os.PathLike[str]) -> Path:
    """Write the page atomically (a featgraph temporary beside ``out``, renamed into place)."""
    try:
        return atomic_write(out, lambda p: p.write_text(page, encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot write ({e.strerror or e})") from e
