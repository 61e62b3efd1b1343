"""``featgraph releases``: the SAELens releases featgraph resolves by name, one row per (release, site)."""

from __future__ import annotations

import click


@click.command("releases")
@click.option("--search", "search", default=None, metavar="WORD",
              help="Only rows whose release, model, repo or site contains WORD (case-insensitive).")
def releases(search: str | None) -> None:
    """List the SAELens releases in featgraph's registry: model, site, widths and number of SAEs.

    A row marked "ladder" holds SAEs of several widths at one site, one per width: pass it to any command as
    RELEASE (a release with one site) or RELEASE@SITE. One SAE is RELEASE/SAE_ID; any hub folder or file is
    hf://OWNER/REPO[@REVISION]/PATH. Files are fetched into the Hugging Face cache on first use.
    """
    from featgraph.hub import load_registry, release_sites

    reg = load_registry()
    rows = release_sites(search)
    src = reg.source
    click.echo(f"registry: {reg.path.name} from sae-lens {src.get('sae_lens_version', '?')} "
               f"({src.get('repo', '?')} {str(src.get('commit') or '?')[:12]})")
    if not rows:
        click.echo(f"no release matches {search!r}" if search else "the registry is empty")
        return
    table = [("release", "model", "site", "SAEs", "widths", "ladder", "neuronpedia", "reads as")]
    for r in rows:
        table.append((r.release, r.model or "-", r.site, str(len(r.widths)), format_widths(r.widths),
                      "ladder" if is_ladder(r.widths) else "-", "yes" if r.neuronpedia else "-",
                      r.format or "unsupported"))
    cols = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(cols[i]) for i, cell in enumerate(row)).rstrip())
    n_rel = len({r.release for r in rows})
    click.echo(f"{n_rel} releases, {len(rows)} sites, {sum(len(r.widths) for r in rows)} SAEs")


def format_widths(widths: tuple[int | None, ...]) -> str:
    """Distinct widths in order, ``xN`` where N SAEs share one width, ``?`` for widths the registry lacks."""
    counts: dict[int | None, int] = {}
    for w in widths:
        counts[w] = counts.get(w, 0) + 1
    return ",".join(("?" if w is None else str(w)) + (f"x{n}" if n > 1 else "") for w, n in counts.items())


def is_ladder(widths: tuple[int | None, ...]) -> bool:
    """Several SAEs, every width known and distinct: the site resolves as one ladder."""
    return len(widths) > 1 and None not in widths and len(set(widths)) == len(widths)
