"""The explorer page's data: a families folder and an explain folder read through the checked readers and joined
into one compact JSON-able dict (the page embeds it as is; :func:`page_data` is its one definition).

Layout of the dict (``FORMAT`` names it; the page's script and the tests read the same keys):

- ``saes``: ``[{name, width}]`` in ladder order; ``tau``; ``title``; ``contexts``/``window`` (what was kept);
- ``features``: per SAE (same order), columns of equal length ``width``: ``max_cos`` (3 decimals), ``parent``,
  ``novel`` (1/0), ``family``, ``child_family``, ``tree`` (null where the families table has null), ``label``,
  ``freq`` (3 significant digits), ``top`` (up to 5 top tokens by count); label/freq/top are ""/null/[] for a
  feature the examples do not cover;
- ``edges``: per adjacent pair, a flat list ``[small_feature, large_feature, cos, ...]`` (cos to 3 decimals);
- ``families``: one list per family ``[pair, family, kind, small_features, large_features, cos_min, cos_max]``;
- ``vocab``: the distinct window tokens, sorted; ``examples``: per SAE, ``{feature: [[activation, context,
  center, [vocab index, ...], acts], ...]}`` with the contexts in rank order, each window cut to ``window`` tokens
  either side of its max token and ``acts`` the window's activations as a string of digits ``0``-``9`` (the
  token's activation / the window's max, rounded to tenths of the scale, negatives as 0): one byte per token
  instead of a float, enough for a background shade, and the exact max is kept beside it.

Why not every float: the bundled ladder has 8,640 features x 3 contexts x 13 tokens; JSON floats would triple the
page for shades nobody can tell apart.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

from featgraph.errors import ConfigError, SaeFormatError
from featgraph.explain.labels import STATS_FILE
from featgraph.families import EDGES_FILE, FAMILIES_FILE, FEATURES_FILE, SUMMARY_FILE
from featgraph.io.readers import read_json
from featgraph.tables import EDGES_SCHEMA, FAMILIES_SCHEMA, FEATURES_SCHEMA, read_table

FORMAT = "featgraph-explorer/1"
EXAMPLES_FILE = "examples.parquet"  # explain writes it under this literal name (featgraph/explain/run.py)
TOP_TOKENS = 5

# The columns of explain's tables that the page shows (the tables are read whole against explain's own schemas,
# the one definition: featgraph.explain.tables)
EXAMPLES_COLUMNS = ("sae", "feature", "rank", "activation", "context", "tokens", "acts", "center")
STATS_COLUMNS = ("sae", "feature", "frequency", "label", "top_tokens")


def _r3(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 3)


def _sig3(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(f"{x:.3g}")


def read_families(folder: str | Path) -> dict[str, Any]:
    """The three tables and the summary of a ``featgraph families`` folder (checked; errors name the file)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"families folder {folder}: not a folder (run `featgraph families ... --out DIR`)")
    summary = read_json(folder / SUMMARY_FILE)
    names = summary.get("config", {}).get("names") if isinstance(summary, dict) else None
    tau = summary.get("config", {}).get("tau") if isinstance(summary, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SaeFormatError(f"{folder / SUMMARY_FILE}: no config.names list (not a featgraph families summary)")
    return {
        "names": names, "tau": tau,
        "features": read_table(folder / FEATURES_FILE, FEATURES_SCHEMA),
        "edges": read_table(folder / EDGES_FILE, EDGES_SCHEMA),
        "families": read_table(folder / FAMILIES_FILE, FAMILIES_SCHEMA),
    }


def read_examples(folder: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``examples.parquet`` and ``feature_stats.parquet`` of a ``featgraph explain`` folder (checked)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"examples folder {folder}: not a folder (run `featgraph explain ... --out DIR`)")
    from featgraph.explain.tables import EXAMPLES_SCHEMA, STATS_SCHEMA

    examples = read_table(folder / EXAMPLES_FILE, EXAMPLES_SCHEMA).select(EXAMPLES_COLUMNS)
    stats = read_table(folder / STATS_FILE, STATS_SCHEMA).select(STATS_COLUMNS)
    return examples, stats


def _digits(acts: list[float], top: float) -> str:
    if not top > 0:
        return "0" * len(acts)
    return "".join(str(min(9, max(0, round(9 * a / top)))) if a == a else "0" for a in acts)


def _check_features(df: pl.DataFrame, widths: dict[str, int], path: str) -> None:
    bad = df.join(pl.DataFrame({"sae": list(widths), "width": list(widths.values())}), on="sae", how="inner")
    bad = bad.filter((pl.col("feature") < 0) | (pl.col("feature") >= pl.col("width")))
    if bad.height:
        r = bad.row(0, named=True)
        raise SaeFormatError(f"{path}: feature {r['feature']} of {r['sae']} is outside 0..{r['width'] - 1}")


def _window(row: dict[str, Any], window: int, path: str) -> tuple[list[str], list[float], int]:
    tokens, acts, center = row["tokens"], row["acts"], row["center"]
    if tokens is None or acts is None or len(tokens) != len(acts) or not 0 <= center < len(tokens):
        raise SaeFormatError(
            f"{path}: {row['sae']}:{row['feature']} rank {row['rank']}: tokens ({len(tokens or [])}), acts "
            f"({len(acts or [])}) and center ({center}) do not agree")
    lo, hi = max(0, center - window), min(len(tokens), center + window + 1)
    return [t if t is not None else "" for t in tokens[lo:hi]], list(acts[lo:hi]), center - lo


def page_data(families: str | Path, examples: str | Path, *, contexts: int = 3, window: int = 6,
              title: str | None = None) -> dict[str, Any]:
    """Read a families folder and an explain folder; return the page's data (see the module docstring)."""
    fam = read_families(families)
    ex, stats = read_examples(examples)
    names: list[str] = fam["names"]
    feats: pl.DataFrame = fam["features"]
    widths = {n: int(feats.filter(pl.col("sae") == n).height) for n in names}
    if feats.height != sum(widths.values()):
        raise SaeFormatError(f"{Path(families) / FEATURES_FILE}: SAEs other than the summary's {names}")
    ex_saes = set(ex["sae"].unique().to_list()) | set(stats["sae"].unique().to_list())
    if ex.height and not ex_saes & set(names):
        raise ConfigError(
            f"examples {examples}: its SAEs {sorted(ex_saes)[:4]} are none of the families run's {names} (the same "
            "SAE names must be given to both commands)")
    _check_features(ex, widths, str(Path(examples) / EXAMPLES_FILE))
    _check_features(stats, widths, str(Path(examples) / STATS_FILE))

    features = []
    for n in names:
        f = feats.filter(pl.col("sae") == n).sort("feature")
        if f["feature"].to_list() != list(range(widths[n])):
            raise SaeFormatError(f"{Path(families) / FEATURES_FILE}: {n}'s features are not 0..{widths[n] - 1}")
        s = stats.filter(pl.col("sae") == n)
        label, freq, top = [""] * widths[n], [None] * widths[n], [[] for _ in range(widths[n])]
        for r in s.iter_rows(named=True):
            i = r["feature"]
            label[i], freq[i] = r["label"] or "", _sig3(r["frequency"])
            top[i] = [t for t in (r["top_tokens"] or [])[:TOP_TOKENS] if t is not None]
        features.append({
            "max_cos": [_r3(x) for x in f["max_cos"].to_list()], "parent": f["parent"].to_list(),
            "novel": [None if x is None else int(x) for x in f["novel"].to_list()],
            "family": f["family"].to_list(), "child_family": f["child_family"].to_list(),
            "tree": f["tree"].to_list(), "label": label, "freq": freq, "top": top,
        })

    edges = []
    for a, b in zip(names[:-1], names[1:], strict=True):
        e = fam["edges"].filter((pl.col("small") == a) & (pl.col("large") == b)).sort("large_feature",
                                                                                       "small_feature")
        edges.append([v for s_, l_, c in e.select("small_feature", "large_feature", "cos").iter_rows()
                      for v in (s_, l_, _r3(c))])
    cos = fam["edges"].group_by("small", "family").agg(pl.col("cos").min().alias("lo"), pl.col("cos").max().alias("hi"))
    cos_of = {(r[0], r[1]): (r[2], r[3]) for r in cos.iter_rows()}
    pair_of = {n: i for i, n in enumerate(names[:-1])}
    families_rows = [
        [pair_of[r["small"]], r["family"], r["kind"], r["small_features"], r["large_features"],
         *(_r3(c) for c in cos_of.get((r["small"], r["family"]), (None, None)))]
        for r in fam["families"].sort("small", "family").iter_rows(named=True) if r["small"] in pair_of
    ]
    families_rows.sort(key=lambda r: (r[0], r[1]))

    path = str(Path(examples) / EXAMPLES_FILE)
    kept = ex.filter(pl.col("sae").is_in(names) & (pl.col("rank") < contexts)).sort("sae", "feature", "rank")
    windows = [(r, *_window(r, window, path)) for r in kept.iter_rows(named=True)]
    vocab = sorted({t for _, toks, _, _ in windows for t in toks})
    index = {t: i for i, t in enumerate(vocab)}
    per_sae: dict[str, dict[str, list[Any]]] = {n: {} for n in names}
    for r, toks, acts, center in windows:
        top_act = max((a for a in acts if a == a), default=0.0)
        per_sae[r["sae"]].setdefault(str(r["feature"]), []).append(
            [_sig3(r["activation"]), r["context"], center, [index[t] for t in toks], _digits(acts, top_act)])
    return {
        "format": FORMAT, "title": title or f"featgraph explorer: {', '.join(names)}",
        "saes": [{"name": n, "width": widths[n]} for n in names], "tau": fam["tau"],
        "contexts": contexts, "window": window, "features": features, "edges": edges,
        "families": families_rows, "vocab": vocab, "examples": [per_sae[n] for n in names],
    }
