"""The comparison plan of a collection: which pairs of SAEs are compared, how, and in which tasks.

Three kinds of pairs (``PARTS``):

- ``families``: adjacent widths within each ladder, i.e. each (model, site, layer, seed, tags) group sorted by width
  (two SAEs of one width in one group are refused: which one is "adjacent" would be a guess). ``a`` is the
  smaller SAE, ``b`` the larger; every feature of ``b`` gets its max cos / argmax in ``a`` and every edge > tau.
- ``flow``: adjacent layers of one stream, i.e. each (model, stream, seed, tags) group sorted by layer; every SAE
  at layer L+1 is paired with the SAE at layer L of equal width, or of the nearest width (ties: the smaller).
  ``a`` is the layer-L SAE, ``b`` the layer-(L+1) one: every feature of ``b`` gets its best predecessor in ``a``.
  SAEs with no layer (none stated, none in the site name) take no part in flow.
- ``compare``: equal-width SAEs of one (model, site, layer, tags) that differ only in seed, every pair (lower seed
  ``a``); the result is the exact one-to-one assignment (:func:`featgraph.compare.assign`).

A pair's name is ``<a>~<b>``; its results live in ``<out>/<kind>/pair=<a>~<b>/``. Each pair becomes one
:class:`featgraph.atlas.engines.Task`, or, for families and flow pairs whose working set exceeds the memory budget,
several tasks over tiles: row blocks of ``b`` (and of ``a`` when ``a`` alone exceeds half the budget); the tiles'
results are merged into exactly the unsplit answer (:func:`tiles`, :func:`featgraph.atlas.work.merge_blocks`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from featgraph.atlas.collection import Collection
from featgraph.errors import ConfigError

PARTS = ("families", "flow", "compare")
# bytes per (row x d_in) held by a task: the float32 unit rows plus the engine's prepared (bf16 or fp32) copy
_BYTES_PER_ELEMENT = 8
MIN_BLOCK_ROWS = 16  # fewer rows per task would be all overhead


@dataclasses.dataclass(frozen=True)
class Pair:
    """One comparison of the plan: ``kind`` between SAE ``a`` and SAE ``b`` (names in the collection)."""

    kind: str
    a: str
    b: str

    @property
    def name(self) -> str:
        return f"{self.a}~{self.b}"

    @property
    def folder(self) -> str:
        """Where its tables go under ``--out`` (hive-style: ``pl.scan_parquet(..., hive_partitioning=True)`` reads
        ``pair`` back as a column)."""
        return f"{self.kind}/pair={self.name}"


def parse_only(only: str | Iterable[str] | None) -> tuple[str, ...]:
    """``--only families,flow`` -> ("families", "flow"), in PARTS order; None or empty -> every part."""
    if only is None:
        return PARTS
    items = [s.strip() for s in (only.split(",") if isinstance(only, str) else only) if str(s).strip()]
    bad = [s for s in items if s not in PARTS]
    if bad:
        raise ConfigError(f"--only takes {', '.join(PARTS)} (comma-separated), got {bad[0]!r}")
    return tuple(p for p in PARTS if p in items) or PARTS


def make_plan(
    coll: Collection,
    widths: Mapping[str, int],
    *,
    parts: Sequence[str] = PARTS,
    sites: Sequence[str] = (),
) -> list[Pair]:
    """Every pair of the plan (module docstring): families, then flow, then compare; within a kind, groups in
    manifest order, then ascending width (families), layer (flow) or seed (compare). ``sites`` keeps only pairs
    whose two SAEs both lie at one of those sites (a site named there that the collection lacks is refused)."""
    known = {s.site for s in coll.saes}
    missing = [s for s in sites if s not in known]
    if missing:
        raise ConfigError(f"--site {missing[0]!r} is not a site of {coll.source} (sites: {', '.join(sorted(known))})")
    keep = [s for s in coll.saes if not sites or s.site in sites]
    pairs: list[Pair] = []
    if "families" in parts:
        pairs += _families(coll, keep, widths)
    if "flow" in parts:
        pairs += _flow(keep, widths)
    if "compare" in parts:
        pairs += _compare(keep, widths)
    # a pair's name keys its results: the kinds never share one (families: one layer, different widths; flow:
    # different layers; compare: one layer, one width)
    assert len({p.name for p in pairs}) == len(pairs), "two pairs of the plan share a name"
    return pairs


def _families(coll: Collection, saes: Sequence[Any], widths: Mapping[str, int]) -> list[Pair]:
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for s in saes:
        groups[s.group()].append(s)
    out = []
    for members in groups.values():
        members.sort(key=lambda s: (widths[s.name], s.name))
        for x, y in zip(members[:-1], members[1:], strict=True):
            if widths[x.name] == widths[y.name]:
                raise ConfigError(
                    f"{coll.source}: {x.name!r} and {y.name!r} are both width {widths[x.name]} at site {x.site!r}, "
                    f"seed {x.seed}, with the same tags: give them distinct seeds or tags"
                )
            out.append(Pair("families", x.name, y.name))
    return out


def _flow(saes: Sequence[Any], widths: Mapping[str, int]) -> list[Pair]:
    groups: dict[tuple, dict[int, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for s in saes:
        if s.layer is not None:
            groups[(s.model, s.stream, s.seed, s.tags)][s.layer].append(s)
    out = []
    for by_layer in groups.values():
        layers = sorted(by_layer)
        for lo, hi in zip(layers[:-1], layers[1:], strict=True):
            for upper in by_layer[hi]:
                w = widths[upper.name]
                lower = min(by_layer[lo], key=lambda s: (abs(widths[s.name] - w), widths[s.name], s.name))
                out.append(Pair("flow", lower.name, upper.name))
    return out


def _compare(saes: Sequence[Any], widths: Mapping[str, int]) -> list[Pair]:
    groups: dict[tuple, list[Any]] = defaultdict(list)
    for s in saes:
        groups[(s.model, s.site, s.layer, s.tags, widths[s.name])].append(s)
    out = []
    for members in groups.values():
        members.sort(key=lambda s: (s.seed, s.name))
        for i, x in enumerate(members):
            out += [Pair("compare", x.name, y.name) for y in members[i + 1:] if y.seed != x.seed]
    return out


def tiles(kind: str, n_a: int, n_b: int, d: int, budget_bytes: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``((b0, b1), (a0, a1))`` row ranges of ``b`` and ``a`` for one pair's tasks, each fitting ``budget_bytes``.

    One tile when the whole pair fits. Otherwise ``b`` is split into equal row blocks against all of ``a`` while
    ``a`` takes at most half the budget; beyond that ``a`` is split too (each block of ``b`` against each block of
    ``a``; :func:`featgraph.atlas.work.merge_blocks` takes each row's max over ``a``'s blocks, lowest index on ties,
    and the union of the edges, which is exactly the unsplit answer). Compare pairs are one task whatever their
    size: an assignment is global.
    """
    per_row = _BYTES_PER_ELEMENT * d
    if kind == "compare" or per_row * (n_a + n_b) <= budget_bytes:
        return [((0, n_b), (0, n_a))]
    if budget_bytes < 2 * per_row * MIN_BLOCK_ROWS:
        raise ConfigError(
            f"memory budget {budget_bytes} bytes cannot hold a {kind} task: at d_in={d} one needs at least "
            f"{2 * per_row * MIN_BLOCK_ROWS} bytes ({MIN_BLOCK_ROWS} rows of each SAE); raise --memory-budget"
        )
    a_rows = min(n_a, budget_bytes // (2 * per_row)) if per_row * n_a > budget_bytes // 2 else n_a
    b_rows = (budget_bytes - per_row * a_rows) // per_row
    return [(b, a) for b in _even(n_b, b_rows) for a in _even(n_a, a_rows)]


def _even(n: int, most: int) -> list[tuple[int, int]]:
    """``[0, n)`` cut into the fewest equal ranges of at most ``most`` rows."""
    step = math.ceil(n / math.ceil(n / max(most, 1)))
    return [(r, min(r + step, n)) for r in range(0, n, step)]
