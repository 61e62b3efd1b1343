"""What the commands print: fixed-width tables and the families run's closing lines."""

from __future__ import annotations


def format_table(rows: list[tuple[str, ...]] | list[list[str]]) -> str:
    """Fixed-width columns: the first left-aligned, the others right-aligned (numbers)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    )


def format_trees(trees: dict, *, n_saes: int) -> str:
    """One line about the splitting trees across the whole ladder."""
    line = f"splitting trees: {trees['count']}, spanning all {n_saes} widths: "
    line += str(trees["by_widths_spanned"].get(str(n_saes), 0))
    if trees["largest"]:
        big = trees["largest"]
        line += f"; largest: tree {big['tree']}, {big['features']} features, from {big['first_feature']}"
    return line


def format_pair_table(pairs: list[dict], *, tau: float) -> str:
    """A fixed-width table of each pair's counts (what a user wants to see at the end of a run)."""
    head = ["pair", "features", "novel", "novel%", "edges", "families", "copy", "split", "merge", "n:m"]
    rows = [head]
    for p in pairs:
        k = p["families_by_kind"]
        rows.append(
            [
                f"{p['small']} -> {p['large']}",
                str(p["features"]),
                str(p["novel"]),
                f"{100 * p['novel_share']:.1f}",
                str(p["edges"]),
                str(p["families"]),
                str(k["copy"]),
                str(k["split"]),
                str(k["merge"]),
                str(k["n:m"]),
            ]
        )
    return f"tau = {tau:g} (edge: cos > tau; novel: max cos <= tau)\n" + format_table(rows)
