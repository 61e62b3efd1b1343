"""What one atlas task computes, and how a pair's task results become the pair's result.

:func:`pair_task` is the module-level (picklable) function every engine maps over the plan's tasks: it reads the
two SAEs' unit rows (shared arrays named by their fingerprints) and returns a dict of numpy arrays. Families and
flow tasks run :func:`featgraph.matching.match_pair` on a tile: a row block of ``b`` against all of ``a``, or
against a row block of ``a`` when ``a`` alone exceeds half the memory budget (the exact matcher: the same edges
and argmax as a float64 brute force, whatever the split); compare tasks run the certified assignment
:func:`featgraph.compare.assign`. :func:`merge_blocks` puts a pair's tiles back together, so a split pair gives
exactly the arrays of an unsplit one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from featgraph.atlas.engines import Task
from featgraph.atlas.plan import Pair, tiles

# Bumped whenever what a task computes or how its tables are written changes: part of every reuse key, so an
# older --out's results are recomputed rather than reused.
RESULT_VERSION = 1


def pair_key(pair: Pair, fp_a: str, fp_b: str, tau: float) -> str:
    """The reuse key of a pair's result: both SAEs' fingerprints, the kind, tau and the code version."""
    from featgraph import __version__

    ident = {"kind": pair.kind, "a": fp_a, "b": fp_b, "tau": tau, "result_version": RESULT_VERSION,
             "featgraph_version": __version__}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def make_tasks(
    pair: Pair, fp_a: str, fp_b: str, shapes: Mapping[str, tuple[int, int]], *, tau: float, method: str,
    device: str, budget_bytes: int,
) -> list[Task]:
    """The tasks of one pair: one per tile of row blocks of ``b`` and ``a`` (:func:`featgraph.atlas.plan.tiles`)."""
    n_a, d = shapes[fp_a]
    n_b = shapes[fp_b][0]
    block_bytes = max(1 << 20, min(1 << 30, budget_bytes // 4))  # the matcher's similarity block within the budget
    tasks = []
    for (r0, r1), (c0, c1) in tiles(pair.kind, n_a, n_b, d, budget_bytes):
        params = {"kind": pair.kind, "pair": pair.name, "tau": tau, "rows": (r0, r1), "cols": (c0, c1),
                  "method": method, "device": device, "block_bytes": block_bytes,
                  # GEMM multiply-adds: an engine may start the largest tasks first (no effect on results)
                  "cost": float(r1 - r0) * (c1 - c0) * d}
        # zero-padded row numbers: sorting the keys sorts the tiles by b's rows, then a's
        key = f"{pair.kind}/{pair.name}/rows{r0:012d}-{r1:012d}"
        if (c0, c1) != (0, n_a):
            key += f"/cols{c0:012d}-{c1:012d}"
        tasks.append(Task(key, (fp_a, fp_b), params))
    return tasks


def pair_task(task: Task, a_unit: np.ndarray, b_unit: np.ndarray) -> dict[str, Any]:
    """One task's result (module docstring); ``a_unit`` / ``b_unit``: unit decoder rows of the pair's SAEs."""
    p = task.params
    if p["kind"] == "compare":
        from featgraph.compare import assign

        asg = assign(a_unit, b_unit, method=p["method"], device=p["device"], block_bytes=p["block_bytes"])
        return {"rows": asg.rows, "cols": asg.cols, "cos": asg.cos, "gap_bound": float(asg.gap_bound)}
    from featgraph.matching import match_pair

    r0, r1 = p["rows"]
    c0, c1 = p.get("cols", (0, a_unit.shape[0]))
    m = match_pair(a_unit[c0:c1], b_unit[r0:r1], p["tau"], method=p["method"], device=p["device"],
                   block_bytes=p["block_bytes"], progress=False)
    out = {"max_cos": m.max_cos, "argmax": m.argmax + c0}
    if p["kind"] == "families":  # flow keeps only each feature's best predecessor
        out |= {"edge_a": m.edge_small + c0, "edge_b": m.edge_large + r0, "edge_cos": m.edge_cos}
    return out


def merge_blocks(kind: str, blocks: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A pair's result from its tasks' results: tiles sorted by key (b's rows, then a's); over the tiles of one
    block of ``b`` each row keeps its largest cos (the first tile reaching it: the lowest index of ``a`` on ties, as
    the unsplit matcher) and the edges are united; the blocks of ``b`` are then concatenated in row order."""
    ordered = sorted(blocks, key=lambda kr: kr[0])
    if kind == "compare":
        assert len(ordered) == 1, "a compare pair is one task"
        return ordered[0][1]
    by_rows: dict[str, list[dict[str, Any]]] = {}
    for key, r in ordered:
        by_rows.setdefault(key.split("/cols")[0], []).append(r)
    parts = [_over_a(kind, tiles_) for tiles_ in by_rows.values()]
    return {k: np.concatenate([np.asarray(r[k]) for r in parts]) for k in parts[0]}


def _over_a(kind: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One block of ``b`` from its tiles over ``a``'s row blocks (ascending)."""
    if len(parts) == 1:
        return parts[0]
    cos = np.stack([np.asarray(r["max_cos"], np.float64) for r in parts])
    best = np.argmax(cos, axis=0)  # the first tile on exact ties: the lowest index of a
    rows = np.arange(cos.shape[1])
    out = {"max_cos": cos[best, rows], "argmax": np.stack([np.asarray(r["argmax"]) for r in parts])[best, rows]}
    if kind == "families":
        ea, eb, ec = (np.concatenate([np.asarray(r[k]) for r in parts]) for k in ("edge_a", "edge_b", "edge_cos"))
        order = np.lexsort((ea, eb))  # the matcher's order: by b's feature, then a's
        out |= {"edge_a": ea[order], "edge_b": eb[order], "edge_cos": ec[order]}
    return out
