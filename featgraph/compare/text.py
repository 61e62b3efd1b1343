"""Plain-text renderings of compare and neighbors results, for the terminal (the CLI prints these)."""

from __future__ import annotations

from typing import Any

import polars as pl


def _f(v: Any, spec: str = ".4f") -> str:
    return "n/a" if v is None else format(v, spec)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def format_summary(summary: dict[str, Any]) -> str:
    """The headline numbers of a compare run's ``summary.json``."""
    r = summary["results"]
    a, b = (s["name"] for s in summary["saes"])
    asg, ab, ba = r["assignment"], r["a_to_b"], r["b_to_a"]
    kinds = ", ".join(f"{k} {n}" for k, n in r["families_by_kind"].items())
    lines = [
        f"{a} ({r['n_a']} features) vs {b} ({r['n_b']} features), tau {r['tau']:g}",
        f"  {a} -> {b}: {ab['shared']} shared, {ab['lost']} lost ({_pct(ab['lost_share'])}), "
        f"mean max cos {_f(ab['mean_max_cos'])}",
        f"  {b} -> {a}: {ba['shared']} shared, {ba['novel']} novel ({_pct(ba['novel_share'])}), "
        f"mean max cos {_f(ba['mean_max_cos'])}",
        f"  one-to-one: {asg['pairs']} pairs, PW-MCC {_f(asg['pw_mcc'])}, shared share {_pct(asg['shared_share'])} "
        f"({asg['shared_pairs']} pairs > tau), certified gap <= {_f(asg['gap_bound'], '.2g')}",
        f"  families: {r['families']} ({kinds}) over {r['edges']} edges",
    ]
    act = r.get("activations")
    if act:
        sp, sa = act["spearman_decoder_cos_vs"], act["spearman_assigned_pairs"]
        m = act["assigned_pairs_mean"]
        lines += [
            f"  activations ({act['n_tokens']} tokens): assigned pairs mean Jaccard {_f(m['jaccard'])}, Pearson "
            f"{_f(m['pearson'])}, masked cos {_f(m['masked_cos'])}",
            f"  decoder cos vs activation, Spearman over the assigned pairs: Jaccard "
            f"{_f(sa['jaccard'])}, Pearson {_f(sa['pearson'])}, masked cos {_f(sa['masked_cos'])}",
            f"  decoder cos vs activation, Spearman over all {act['coactive_pairs']} co-active pairs: Jaccard "
            f"{_f(sp['jaccard'])}, Pearson {_f(sp['pearson'])}, masked cos {_f(sp['masked_cos'])}",
            f"  decoder edges (cos > tau) vs activation edges ({act['act_metric']} > {act['act_threshold']:g}): "
            f"precision {_f(act['precision'])}, recall {_f(act['recall'])}",
        ]
    return "\n".join(lines)


def format_neighbors(table: pl.DataFrame) -> str:
    """The neighbors table: rank, SAE, feature, cos (one line each)."""
    if table.height == 0:
        return "no neighbors (every candidate feature was excluded)"
    w = max(3, *(len(s) for s in table["sae"].to_list()))
    lines = [f"{'rank':>4}  {'sae':<{w}}  {'feature':>7}  {'cos':>9}"]
    for rank, sae, feature, cos in table.select("rank", "sae", "feature", "cos").iter_rows():
        lines.append(f"{rank:>4}  {sae:<{w}}  {feature:>7}  {cos:>9.6f}")
    return "\n".join(lines)
