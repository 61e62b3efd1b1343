"""The explorer page in a real headless browser (Debian's chromium): the list renders, the URL fragment selects a
tree, family, feature or search and the tree's nodes and contexts render, rows follow widths, and no JavaScript
error is logged (the page records window.onerror / console.error into #fg-errors, which --dump-dom shows; the
console is also read from chromium's stderr). Skips, saying why, where no chromium is installed."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from featgraph.explorer.data import page_data
from featgraph.explorer.page import render_page

from ..conftest import run_main

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (apt-get install -y chromium)")


class Dom(HTMLParser):
    """What the tests read from a dumped DOM: attributes of the body, the list entries, the cards and their
    text, the recorded errors."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.entries: list[dict[str, str]] = []
        self.cards: dict[str, dict[str, str]] = {}
        self.card_text: dict[str, str] = {}
        self.errors: list[str] = []
        self.text_of: dict[str, str] = {}
        self._stack: list[tuple[str, str | None]] = []  # (tag, card id or error or id being collected)
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if tag == "li" and "entry" in a.get("class", ""):
            self.entries.append(a)
        collect = None
        if "card" in a.get("class", "").split():
            self.cards[a["data-node"]] = a
            collect = "card:" + a["data-node"]
        elif tag == "li" and a.get("class") == "fg-error":
            collect = "error"
        elif a.get("id") in ("count", "sel", "msg", "rows"):
            collect = "id:" + a["id"]
        if tag not in ("br", "meta", "input", "img"):
            self._stack.append((tag, collect))

    def handle_endtag(self, tag):
        while self._stack:
            t, _ = self._stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _, c in self._stack:
            if c is None:
                continue
            if c.startswith("card:"):
                self.card_text[c[5:]] = self.card_text.get(c[5:], "") + data
            elif c == "error":
                self.errors.append(data)
            else:
                self.text_of[c[3:]] = self.text_of.get(c[3:], "") + data


def load(page: Path, fragment: str, tmp_path: Path) -> tuple[Dom, str]:
    """Open ``page#fragment`` headless; return the DOM after 5 s of virtual time and chromium's stderr."""
    profile = tmp_path / f"profile-{abs(hash(fragment))}"
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
           "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom",
           f"{page.resolve().as_uri()}#{fragment}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return Dom(res.stdout), res.stderr


def console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "Error" in ln)]


@pytest.fixture(scope="module")
def page(explorer_inputs, tmp_path_factory) -> tuple[Path, dict]:
    fam, ex = explorer_inputs
    out = tmp_path_factory.mktemp("page") / "page.html"
    rc, _, stderr = run_main("explore", fam, "--examples", ex, "--out", out, "--quiet")
    assert rc == 0, stderr
    return out, page_data(fam, ex)


def assert_clean(dom: Dom, stderr: str) -> None:
    assert dom.body.get("data-ready") == "1", "the page's script did not finish"
    assert dom.errors == [], dom.errors
    assert console_errors(stderr) == [], console_errors(stderr)


def test_family_list_renders(page, tmp_path):
    out, data = page
    dom, stderr = load(out, "", tmp_path)
    assert_clean(dom, stderr)
    n_novel = sum(v == 1 for f in data["features"] for v in f["novel"])
    total = len(data["families"]) + n_novel
    assert len(dom.entries) == min(300, total) and dom.text_of["count"].startswith(f"{total} of {total} match")
    assert dom.cards == {} and not dom.body.get("data-selected")


def test_family_fragment_draws_its_tree_in_width_rows_with_contexts(page, explorer_inputs, tmp_path):
    out, data = page
    fam, ex = explorer_inputs
    split = next(r for r in data["families"] if r[2] == "split" and r[0] == 0)
    key = f"a48:{split[1]}"
    dom, stderr = load(out, f"family={key}", tmp_path)
    assert_clean(dom, stderr)
    assert dom.body["data-selected"] == f"family={key}"
    feats = pl.read_parquet(fam / "features.parquet")
    tree = feats.filter((pl.col("sae") == "a48") & (pl.col("feature") == split[3][0]))["tree"].item()
    members = {f"{r['sae']}:{r['feature']}" for r in feats.filter(pl.col("tree") == tree).iter_rows(named=True)}
    assert set(dom.cards) == members and len(members) >= 3
    # rows = widths: every node of a narrower SAE lies above every node of a wider one (dagre's ranks)
    order = {"a48": 0, "b96": 1, "c192": 2}
    ys = {}
    for node, a in dom.cards.items():
        ys.setdefault(order[node.split(":")[0]], set()).add(float(a["data-y"]))
    assert all(len(v) == 1 for v in ys.values()), ys
    rows = [ys[k].pop() for k in sorted(ys)]
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    # each node's card shows its label and its top contexts' tokens (as the page displays them)
    for node in members:
        sae, f = node.split(":")
        si = order[sae]
        for _act, _ctx, _c, toks, _d in data["examples"][si].get(f, []):
            assert "".join(data["vocab"][t].replace("\n", "\u21b5") for t in toks) in dom.card_text[node]
        assert data["features"][si]["label"][int(f)] in dom.card_text[node]
    assert html.unescape("</script>") in "".join(dom.card_text.values())  # a token that looks like markup, shown


def test_search_fragment_drives_the_list_and_opens_the_first_match(page, tmp_path):
    out, data = page
    dom, stderr = load(out, "search=tuesday&kind=split&min=3", tmp_path)
    assert_clean(dom, stderr)
    assert dom.entries and all(e["data-key"].startswith("family=") for e in dom.entries)
    first = dom.entries[0]["data-key"]
    assert "sel" in dom.entries[0]["class"] and dom.body["data-selected"] == first
    assert len(dom.cards) >= 3 and "tuesday" in "".join(dom.card_text.values()).lower()
    want = sum(1 for r in data["families"] if r[2] == "split" and len(r[3]) + len(r[4]) >= 3)
    assert dom.text_of["count"].split(" of ")[0] != "0" and int(dom.text_of["count"].split(" of ")[0]) <= want


def test_kind_and_cos_filters_count_what_python_counts(page, tmp_path):
    out, data = page
    dom, stderr = load(out, "kind=novel&maxcos=0.35", tmp_path)
    assert_clean(dom, stderr)
    want = sum(1 for f in data["features"] for nv, c in zip(f["novel"], f["max_cos"], strict=True)
               if nv == 1 and c <= 0.35)
    assert 0 < want < sum(v == 1 for f in data["features"] for v in f["novel"])
    assert dom.text_of["count"].startswith(f"{want} of ") and len(dom.entries) == min(want, 300)
    assert all(e["data-key"].startswith("feature=") for e in dom.entries)
    assert dom.body["data-selected"] == dom.entries[0]["data-key"] and len(dom.cards) == 2


def test_novel_feature_shows_itself_beside_its_nearest_smaller_feature(page, tmp_path):
    out, data = page
    f = next(i for i, v in enumerate(data["features"][1]["novel"]) if v == 1 and data["features"][1]["tree"][i] is None)
    dom, stderr = load(out, f"feature=b96:{f}", tmp_path)
    assert_clean(dom, stderr)
    assert set(dom.cards) == {f"b96:{f}", f"a48:{data['features'][1]['parent'][f]}"}
    assert "novel" in dom.text_of["sel"] and float(dom.cards[f"b96:{f}"]["data-y"]) > float(
        dom.cards[f"a48:{data['features'][1]['parent'][f]}"]["data-y"])


def test_unknown_selection_is_a_message_not_an_error(page, tmp_path):
    out, _ = page
    dom, stderr = load(out, "tree=999999", tmp_path)
    assert_clean(dom, stderr)
    assert dom.text_of["msg"] == "no splitting tree 999999" and dom.cards == {}
    dom, stderr = load(out, "feature=zzz:1", tmp_path)
    assert_clean(dom, stderr)
    assert dom.text_of["msg"] == "no feature zzz:1" and dom.cards == {}


def test_a_smallest_feature_in_no_tree_is_shown_alone(page, tmp_path):
    out, data = page
    f = data["features"][0]["tree"].index(None)
    dom, stderr = load(out, f"feature=a48:{f}", tmp_path)
    assert_clean(dom, stderr)
    assert set(dom.cards) == {f"a48:{f}"} and dom.text_of["sel"] == f"a48:{f}: in no splitting tree"


def test_a_javascript_error_is_caught_and_shown(page, tmp_path, explorer_inputs):
    """The error list is not vacuous: a page whose script throws shows the error in #fg-errors."""
    fam, ex = explorer_inputs
    text = render_page(page_data(fam, ex)).replace("</body>", "<script>undefinedFunction()</script></body>")
    broken = tmp_path / "broken.html"
    broken.write_text(text, encoding="utf-8")
    dom, stderr = load(broken, "", tmp_path)
    assert any("undefinedFunction" in e for e in dom.errors), dom.errors
    assert any("undefinedFunction" in ln for ln in console_errors(stderr))


DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "explorer" / "smollm2-135m.html"
DATA_OPEN = '<script id="fg-data" type="application/json">'


def embedded_data(page: Path) -> dict:
    """The data a rendered page carries (render_page embeds page_data as JSON; its ``\\u003c`` escapes are JSON)."""
    text = page.read_text(encoding="utf-8")
    start = text.index(DATA_OPEN) + len(DATA_OPEN)
    return json.loads(text[start:text.index("</script>", start)])


def largest_split(data: dict) -> tuple[str, set[str], set[str]]:
    """The split family with the most children (ties: narrowest pair, then family id): its fragment key, its
    members and every feature of its splitting tree, as ``"sae:feature"`` ids read from the page's own data."""
    pair, fam, _kind, small, large = min((r for r in data["families"] if r[2] == "split"),
                                         key=lambda r: (-len(r[4]), r[0], r[1]))[:5]
    names = [s["name"] for s in data["saes"]]
    members = {f"{names[pair]}:{f}" for f in small} | {f"{names[pair + 1]}:{f}" for f in large}
    tree = data["features"][pair]["tree"][small[0]]
    in_tree = {f"{n}:{i}" for n, f in zip(names, data["features"], strict=True)
               for i, t in enumerate(f["tree"]) if t == tree}
    return f"{names[pair]}:{fam}", members, in_tree


@pytest.mark.skipif(not DOCS_PAGE.exists(), reason="docs/explorer/smollm2-135m.html is not in this checkout")
def test_the_bundled_ladders_page_opens_its_largest_split(tmp_path):
    """The committed page of the bundled ladder: its largest split family (found in the page's own embedded data,
    so the test follows the ladder when it is retrained) renders without errors, with every member's card, only
    cards of its splitting tree, and each child's label on its card."""
    data = embedded_data(DOCS_PAGE)
    key, members, in_tree = largest_split(data)
    assert len(members) >= 3 and members <= in_tree
    dom, stderr = load(DOCS_PAGE, f"family={key}", tmp_path)
    assert_clean(dom, stderr)
    assert dom.body["data-selected"] == f"family={key}"
    assert members <= set(dom.cards) <= in_tree
    names = [s["name"] for s in data["saes"]]
    for node in members:
        sae, f = node.split(":")
        label = data["features"][names.index(sae)]["label"][int(f)]
        assert label in dom.card_text[node], (node, label)
    n_novel = sum(v == 1 for f in data["features"] for v in f["novel"])
    assert len(dom.entries) == min(300, len(data["families"]) + n_novel)


def test_embedded_data_is_what_page_data_gives(page):
    """embedded_data (what the bundled-page test reads) returns exactly the data the page was rendered from (plus
    the command's resolved config, which explore adds)."""
    out, data = page
    embedded = embedded_data(out)
    assert embedded.pop("config")["command"] == "explore"
    assert embedded == json.loads(json.dumps(data))
    key, members, in_tree = largest_split(data)
    assert key.startswith(("a48:", "b96:")) and len(members) >= 3 and members <= in_tree
