"""What one atlas task computes, and how a pair's task results become the pair's result.

:func:`pair_task` is the module-level (picklable) function every engine maps over the plan's tasks: it reads the
two SAEs' unit rows (shared arrays named by their fingerprints) and returns a dict of numpy arrays. Families and
flow tasks run :func:`featgraph.matching.match_pair` on a row block of ``b`` against all of ``a`` (the exact
matcher: the same edges and argmax as a float64 brute force, whatever the block split); compare tasks run the
certified assignment :func:`featgraph.compare.assign`. :func:`merge_blocks` concatenates a pair's blocks in row
order, so a split pair gives exactly the arrays of an unsplit one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from featgraph.atlas.engines import Task
from featgraph.atlas.plan import Pair, row_blocks

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
    """The tasks of one pair: one per row block of ``b`` (:func:`featgraph.atlas.plan.row_blocks`)."""
    n_a, d = shapes[fp_a]
    n_b = shapes[fp_b][0]
    block_bytes = max(1 << 20, min(1 << 30, budget_bytes // 4))  # the matcher's similarity block within the budget
    tasks = []
    for r0, r1 in row_blocks(pair.kind, n_a, n_b, d, budget_bytes):
        params = {"kind": pair.kind, "pair": pair.name, "tau": tau, "rows": (r0, r1), "method": method,
                  "device": device, "block_bytes": block_bytes}
        # zero-padded row numbers: sorting the keys sorts the blocks
        tasks.append(Task(f"{pair.kind}/{pair.name}/rows{r0:012d}-{r1:012d}", (fp_a, fp_b), params))
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
    m = match_pair(a_unit, b_unit[r0:r1], p["tau"], method=p["method"], device=p["device"],
                   block_bytes=p["block_bytes"], progress=False)
    out = {"max_cos": m.max_cos, "argmax": m.argmax}
    if p["kind"] == "families":  # flow keeps only each feature's best predecessor
        out |= {"edge_a": m.edge_small, "edge_b": m.edge_large + r0, "edge_cos": m.edge_cos}
    return out


def merge_blocks(kind: str, blocks: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A pair's result from its tasks' results (sorted here by task key, i.e. by row block)."""
    parts = [r for _, r in sorted(blocks, key=lambda kr: kr[0])]
    if kind == "compare":
        assert len(parts) == 1, "a compare pair is one task"
        return parts[0]
    return {k: np.concatenate([np.asarray(r[k]) for r in parts]) for k in parts[0]}
