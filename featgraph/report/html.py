"""One self-contained HTML page of stitching analyses (:mod:`featgraph.stitch`): every figure as a base64 PNG
data URI and every table as HTML, with no external resources, readable offline in a browser.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from featgraph.io.files import atomic_write
from featgraph.stitch.figures import pngs
from featgraph.stitch.frankenstein import FrankensteinAnalysis
from featgraph.stitch.pair import PairAnalysis


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/></figure>'


def table_html(df: pl.DataFrame, *, max_rows: int = 60, digits: int = 4, links: dict[str, str] | None = None) -> str:
    """A polars table as an HTML table (first ``max_rows`` rows; floats rounded for reading). ``links`` maps a
    column to a URL prefix: each of its cells links to prefix + value (a Neuronpedia feature page; a link, not a
    resource the page loads, so the page stays self-contained)."""
    links = links or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = []
    for row in df.head(max_rows).iter_rows():
        cells = []
        for col, v in zip(df.columns, row, strict=True):
            if isinstance(v, float):
                v = "" if v != v else f"{v:.{digits}g}"
            text = html.escape(str(v))
            if col in links and v is not None and v != "":
                text = f'<a href="{html.escape(links[col] + str(v))}">{text}</a>'
            cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class=note>{df.height - max_rows} more rows in the Parquet file.</p>" if df.height > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def with_interval(text: str, iv: Sequence[float] | None, fmt: str) -> str:
    """``value [lo, hi]``: ``text`` (the number as shown) and its bootstrap interval formatted with ``fmt``; the
    bare value where there is no interval (``n_boot`` 0) or it is undefined (NaN: e.g. no novel features)."""
    if iv is None or any(v != v for v in iv):
        return text
    return f"{text} [{format(iv[0], fmt)}, {format(iv[1], fmt)}]"


def _two_by_two_html(t: dict[str, dict[str, int]], iv: dict[str, dict[str, list[float]]] | None = None) -> str:
    rows = ("dmse_lt_0", "dmse_gt_0", "dmse_eq_0")
    cols = {k: [with_interval(str(t[k][r]), iv[k][r] if iv else None, ".0f") for r in rows]
            for k in ("novel", "reconstruction")}
    df = pl.DataFrame({"": ["dMSE < 0", "dMSE > 0", "dMSE = 0 (never fires)"], **cols})
    return table_html(df)


CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.6em 0;font-size:13px}th,td{border:1px solid #ccc;padding:2px 7px;
text-align:right}th{background:#f2f2f2}img{max-width:100%}figure{margin:0.6em
0}.note{color:#666;font-size:12px}
h2{border-bottom:1px solid #ddd;margin-top:2em}"""


def _pair_section(a: PairAnalysis, neuronpedia: dict[str, str]) -> str:
    s = a.summary
    figs = pngs(a)
    an = s["add_all_novel"]
    sw = s["swaps"]
    iv = s.get("intervals") or {}
    facts = pl.DataFrame(
        {
            "quantity": [
                "tokens",
                f"MSE {a.small_name}",
                f"MSE {a.large_name}",
                "novel features lowering MSE (share)",
                "reconstruction features raising MSE (share)",
                "MSE after adding all novel features",
                "relative MSE change from adding all novel features",
                "L0 after adding all novel features",
                "families",
                "swaps raising MSE (share)",
                "swaps lowering L0 (share)",
            ],
            "value": [
                str(s["n_tokens"]),
                with_interval(f"{s['mse_small']:.4g}", iv.get("mse_small"), ".4g"),
                with_interval(f"{s['mse_large']:.4g}", iv.get("mse_large"), ".4g"),
                with_interval(f"{s['share_novel_lowering_mse']:.3f}", iv.get("share_novel_lowering_mse"), ".3f"),
                with_interval(f"{s['share_reconstruction_raising_mse']:.3f}",
                              iv.get("share_reconstruction_raising_mse"), ".3f"),
                f"{an['mse']:.4g}",
                with_interval(f"{an['relative_change']:+.2%}", iv.get("add_all_novel_relative_change"), "+.2%"),
                f"{an['l0']:.1f}",
                str(sw["n_families"]),
                f"{sw['share_raising_mse']:.3f}",
                f"{sw['share_lowering_l0']:.3f}",
            ],
        }
    )
    top = a.features.sort("dmse").select("large_feature", "max_cos", "category", "dmse_relative", "active_frac")
    ce_rows = a.path.filter(pl.col("ce_recovered").is_not_null())
    return "".join(
        [
            f"<h2>Pair {html.escape(a.title)} (tau = {a.tau:g})</h2>",
            table_html(facts),
            _interval_note(iv),
            "<h3>Can we add features? The 2x2 table</h3>",
            _two_by_two_html(s["two_by_two"], iv.get("two_by_two")),
            _img(figs["two_by_two"], "2x2 table"),
            _img(figs["dmse_vs_max_cos"], "delta-MSE vs max cos"),
            _img(figs["cumulative_mse"], "cumulative MSE"),
            "<h3>Most helpful single features</h3>",
            table_html(top, max_rows=15, links={"large_feature": neuronpedia[a.large_name]}
                       if a.large_name in neuronpedia else None),
            "<h3>Novel features: MSE where they fire vs not (mean over novel features)</h3>",
            table_html(a.active_inactive),
            _img(figs["active_inactive"], "active vs inactive"),
            "<h3>Can we swap features? Interpolation path</h3>",
            f"<p class=note>Order: {html.escape(s['swap_order'])}.</p>",
            _img(figs["interpolation"], "interpolation path"),
            table_html(a.points),
            "<h4>Path steps with CE recovered</h4>" + table_html(ce_rows) if ce_rows.height else "",
            "<h4>Families swapped alone</h4>",
            table_html(a.swaps.sort("swap_rank"), max_rows=25),
        ]
    )


def _interval_note(iv: dict[str, Any]) -> str:
    if not iv:
        return ""
    # the interval is BCa (featgraph.stitch.bootstrap); like the percentile interval it replaced, its ends are
    # percentiles of the replicates, so a count of signs biased by resampling can still miss its own value
    outside = iv.get("estimate_outside_interval") or []
    return (f"<p class=note>[lo, hi]: {iv['level']:.0%} interval, {html.escape(iv.get('description', iv['method']))} "
            f"({iv['n_contexts']} units: {html.escape(str(iv['unit']))})."
            + (" An interval of a count or share of signs may not contain the value itself: features whose delta-MSE "
               "is near 0 change sign when the contexts are resampled, which biases the replicates; BCa corrects "
               "for that bias but cannot reach past the replicates." if "two_by_two" in iv else "")
            + (f" Not containing their value here: {html.escape(', '.join(outside))}." if outside else "")
            + ("".join(f" {k}: {v['undecided']} features whose own delta-MSE interval holds 0 (sign within noise)."
                       for k, v in iv["two_by_two_decided"].items()) if "two_by_two_decided" in iv else "") + "</p>")


def _frankenstein_tables(frank: FrankensteinAnalysis) -> str:
    """The comparison table with each row's MSE as ``value [lo, hi]``, then every retrained Frankenstein stage
    against every retrained ladder SAE (MSE difference with its interval; share of replicates it is better)."""
    iv = frank.intervals
    if not iv:
        return table_html(frank.table)
    mse = iv["mse"]
    table = frank.table.with_columns(pl.Series("mse", [with_interval(f"{v:.4g}", mse.get(n), ".4g") for n, v in
                                                       zip(frank.table["name"], frank.table["mse"], strict=True)]))
    vs = pl.DataFrame([{"Frankenstein": r["frankenstein"], "ladder": r["ladder"],
                        "width": f"{r['width_frankenstein']} vs {r['width_ladder']}",
                        "L0": f"{r['l0_frankenstein']:.1f} vs {r['l0_ladder']:.1f}",
                        "MSE difference (Frankenstein - ladder)": with_interval(
                            f"{r['mse_difference']:+.4g}", r["mse_difference_interval"], "+.4g"),
                        "share of replicates Frankenstein better": f"{r['share_frankenstein_better']:.3f}"}
                       for r in iv["frankenstein_vs_ladder"]])
    parts = [table_html(table), _interval_note(iv)]
    if vs.height:
        parts += ["<h4>Retrained Frankenstein stages vs retrained ladder SAEs</h4>", table_html(vs)]
    return "".join(parts)


def render_html(
    title: str,
    pairs: Sequence[PairAnalysis],
    frank: FrankensteinAnalysis | None = None,
    ladder_table: pl.DataFrame | None = None,
    config: dict[str, Any] | None = None,
    neuronpedia: dict[str, str] | None = None,
    explained: dict[str, Any] | None = None,
) -> str:
    """One self-contained page: every figure embedded as a data URI, every table inline, no external
    resource. ``neuronpedia`` maps an SAE name to its Neuronpedia URL prefix (``.../MODEL/SAE_ID/``): the
    feature ids the page lists for that SAE link to their Neuronpedia pages. ``explained`` (a report given
    examples): ``{png, page, families}``, the weekday-style panel and the explorer page's file name beside it."""
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        "<p class=note>featgraph report. Reproduces the sections 'Can we add "
        "features', 'Can we swap features' and 'Frankenstein's SAE' of <i>Stitching SAEs of different "
        "sizes</i>. MSE: per token, sum over d of the squared error, averaged over tokens.</p>",
    ]
    if ladder_table is not None:
        parts += ["<h2>The ladder</h2>", table_html(ladder_table)]
    if explained is not None:
        parts += [
            "<h2>What split features mean</h2>",
            f"<p class=note>The {len(explained['families'])} largest split families "
            f"({html.escape(', '.join(explained['families']))}): each parent's top tokens beside its children's. "
            f"Every family, splitting tree and novel feature with its top contexts: "
            f"<a href=\"{html.escape(explained['page'])}\">{html.escape(explained['page'])}</a> "
            "(a page beside this one, works offline).</p>",
            _img(explained["png"], "largest split families: parent and children top tokens"),
        ]
    parts += [_pair_section(p, neuronpedia or {}) for p in pairs]
    if frank is not None:
        parts += [
            "<h2>Frankenstein's SAE</h2>",
            f"<p class=note>Stage widths: {[s.n_features for s in frank.assembly.stages]} from "
            f"{html.escape(', '.join(frank.assembly.names))}; "
            "decoders retrained with the encoder frozen.</p>",
            _frankenstein_tables(frank),
            _img(pngs(frank)["frankenstein"], "Frankenstein comparison"),
        ]
    if config is not None:
        parts += [
            "<h2>Configuration</h2>",
            f"<pre>{html.escape(json.dumps(config, indent=2, sort_keys=True, default=str))}</pre>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
