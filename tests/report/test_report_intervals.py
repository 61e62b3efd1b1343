"""``featgraph report`` shows the bootstrap 95% intervals that stitch and frankenstein write into their
``summary.json`` (``intervals``) as ``value [lo, hi]`` beside each number they cover: the 2x2 table, the two shares,
the add-all-novel MSE change, both MSEs and the Frankenstein comparison."""

from __future__ import annotations

import html
import json
import math

from ..conftest import run_main
from ..explorer.test_report_explorer import ladder_store_examples  # noqa: F401  (the module's fixture, reused)


def _iv(text: str, iv: list[float], fmt: str) -> str:
    return html.escape(f"{text} [{format(iv[0], fmt)}, {format(iv[1], fmt)}]")


def test_report_shows_every_interval_the_summaries_hold(ladder_store_examples, tmp_path):  # noqa: F811
    root, acts, _ = ladder_store_examples
    out = tmp_path / "report"
    rc, _, err = run_main("report", root, "--out", out, "--acts", acts, "--retrain-tokens", "400", "-q")
    assert rc == 0, err
    page = (out / "report.html").read_text()
    pairs = sorted((out / "pairs").iterdir())
    assert len(pairs) == 2
    shares_shown = 0
    for pair in pairs:
        s = json.loads((pair / "summary.json").read_text())
        iv = s["intervals"]
        assert iv["n_contexts"] >= 2 and iv["unit"] == "context"
        expected = [
            _iv(f"{s['mse_small']:.4g}", iv["mse_small"], ".4g"),
            _iv(f"{s['mse_large']:.4g}", iv["mse_large"], ".4g"),
            _iv(f"{s['add_all_novel']['relative_change']:+.2%}", iv["add_all_novel_relative_change"], "+.2%"),
        ]
        for share in ("share_novel_lowering_mse", "share_reconstruction_raising_mse"):
            if not any(math.isnan(v) for v in iv[share]):
                expected.append(_iv(f"{s[share]:.3f}", iv[share], ".3f"))
                shares_shown += 1
        for kind in ("novel", "reconstruction"):
            for cell, cell_iv in iv["two_by_two"][kind].items():
                expected.append(f"<td>{_iv(str(s['two_by_two'][kind][cell]), cell_iv, '.0f')}</td>")
        for text in expected:
            assert text in page, (pair.name, text)
    assert shares_shown >= 2, "the planted ladder has novel and reconstruction features"
    fr = json.loads((out / "frankenstein" / "summary.json").read_text())
    assert fr["intervals"]["frankenstein_vs_ladder"], "the report retrains the ladder: there is a comparison"
    for row in fr["comparison"]:
        cell = _iv(format(row["mse"], ".4g"), fr["intervals"]["mse"][row["name"]], ".4g")
        assert f"<td>{cell}</td>" in page, row
    for r in fr["intervals"]["frankenstein_vs_ladder"]:
        cell = _iv(f"{r['mse_difference']:+.4g}", r["mse_difference_interval"], "+.4g")
        assert f"<td>{html.escape(r['frankenstein'])}</td><td>{html.escape(r['ladder'])}</td>" in page
        assert f"<td>{cell}</td>" in page, r
    assert page.count("95% interval, BCa bootstrap over held-out contexts") == len(pairs) + 1


def test_report_without_intervals_shows_bare_values():
    from featgraph.report.html import with_interval

    assert with_interval("0.5", None, ".3f") == "0.5"
    assert with_interval("0.5", [float("nan"), float("nan")], ".3f") == "0.5"
    assert with_interval("+1.00%", [-0.01, 0.03], "+.2%") == "+1.00% [-1.00%, +3.00%]"
