"""``run_atlas``: a collection in, every pair of its plan through an engine, one output folder out.

Steps: read the collection (:mod:`featgraph.atlas.collection`) and check ``--out`` against the manifest and every
SAE before loading anything; load the decoders (fingerprints, checks); make the plan (:mod:`featgraph.atlas.plan`);
read back from the previous ``--out`` every pair whose reuse key (both SAEs' fingerprints, kind, tau, code version:
:func:`featgraph.atlas.work.pair_key`) is unchanged (also from the stale ``.old`` folder a run killed mid-swap
leaves); run the other pairs' tasks through the engine (the SAEs' unit rows are the shared arrays, named by
fingerprint); sort the results by task key and write everything into a
temporary folder that replaces ``--out`` atomically (:func:`featgraph.io.output.open_output`), so tables are
byte-identical whatever the engine, the completion order or which pairs were reused.

Outputs: the per-pair tables (:mod:`featgraph.atlas.tables`), ``flow_chains.parquet``, ``flow_layers.parquet`` and
``flow.png`` (:mod:`featgraph.atlas.flow`, when the plan has flow pairs), ``graph.graphml`` + ``graph.json``
(:mod:`featgraph.atlas.network`), ``summary.json`` (resolved config, SAEs with fingerprints, the plan with each
pair's reuse key and counts, flow chains; ``run`` says how many pairs were reused and computed: the one part that
differs between a first run and a rerun) and ``config.json``. A rerun with a narrower ``--only`` or ``--site``
writes only the pairs it selects.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featgraph.atlas.collection import Collection, load_decoders, read_collection
from featgraph.atlas.config import AtlasConfig
from featgraph.atlas.plan import Pair, make_plan
from featgraph.atlas.tables import pair_tables, read_pair, write_pair
from featgraph.atlas.work import make_tasks, merge_blocks, pair_key, pair_task
from featgraph.errors import FeatgraphError

log = logging.getLogger(__name__)

COMMAND = "atlas"
SUMMARY_KIND = "featgraph atlas"


@dataclasses.dataclass
class AtlasResult:
    """What a run wrote: the folder, the plan, each pair's tables, the summary and the reuse counts."""

    out_dir: Path
    plan: list[Pair]
    tables: dict[str, dict[str, pl.DataFrame]]  # pair name -> file name -> frame
    summary: dict[str, Any]
    reused: int
    computed: int
    files: list[str]


def run_atlas(cfg: AtlasConfig) -> AtlasResult:
    """Run the whole plan of ``cfg.manifest`` into ``cfg.out`` (module docstring)."""
    from featgraph.io.output import check_output

    coll = read_collection(cfg.manifest)
    extra = [p for p in cfg.inputs() if p != cfg.manifest]  # stores, explain folders, a local tokenizer folder
    inputs: list[Any] = [cfg.manifest, *[s.path for s in coll.saes], *extra]
    out = check_output(cfg.out, command=COMMAND, inputs=inputs)  # a bad --out fails before any loading
    selected = [s.name for s in coll.saes if not cfg.sites or s.site in cfg.sites]
    entries, all_fps = load_decoders(coll, selected)
    widths = {n: e.width for n, e in entries.items()}
    plan = make_plan(coll, widths, parts=cfg.only, sites=cfg.sites)
    used = [n for n in selected if any(n in (p.a, p.b) for p in plan)]
    fps = {n: all_fps[n] for n in used}
    keys = {p.name: pair_key(p, fps[p.a], fps[p.b], cfg.tau) for p in plan}
    labelling = _check_labels(cfg, coll, entries, used)  # bad stores or folders fail before the matching work
    results, extras = _previous(out, plan, keys, widths)
    reused = len(results)
    todo = [p for p in plan if p.name not in results]
    computed = _compute(cfg, todo, entries, fps, results, extras)
    zero = {n: entries[n].zero_rows() for n in used}
    masks = {n: np.isin(np.arange(widths[n]), zero[n]) for n in used}
    tables = {p.name: pair_tables(p.kind, results[p.name], masks[p.b], cfg.tau) for p in plan}
    return _write(cfg, coll, out, inputs, plan, used, widths, fps, keys, tables, results, extras, masks,
                  reused, computed, labelling)


def _check_labels(cfg: AtlasConfig, coll: Collection, entries: dict, used: list[str]):
    """``(stores, given labels)`` for the node labels, or None without ``--acts``/``--examples``."""
    if not cfg.acts and not cfg.examples:
        return None
    from featgraph.atlas.labels import check_stores, read_folders

    specs = {s.name: s for s in coll.saes}
    given = read_folders(cfg.examples)
    stores = check_stores(cfg.acts, cfg.tokenizer, specs, entries, used)
    for s in stores:
        twice = sorted(set(s.names) & set(given))
        if twice:
            raise FeatgraphError(f"{s.folder}: SAEs {', '.join(twice)} are labelled by an --examples folder too; "
                                 "give each SAE's labels once")
    return stores, given


def _compute(cfg: AtlasConfig, todo: list[Pair], entries: dict, fps: dict[str, str],
             results: dict[str, dict], extras: dict[str, dict]) -> int:
    """Run the tasks of the pairs in ``todo`` through the engine; their merged results go into ``results``."""
    if not todo:
        return 0
    from tqdm.auto import tqdm

    from featgraph.atlas.engines import get_engine
    from featgraph.matching import normalize_rows

    names = sorted({n for p in todo for n in (p.a, p.b)})
    arrays = {fps[n]: normalize_rows(entries[n].W_dec)[0] for n in names}
    shapes = {fp: a.shape for fp, a in arrays.items()}
    tasks, pair_of = [], {}
    for p in todo:
        for t in make_tasks(p, fps[p.a], fps[p.b], shapes, tau=cfg.tau, method=cfg.method, device=cfg.device,
                            budget_bytes=cfg.memory_budget):
            tasks.append(t)
            pair_of[t.key] = p
    engine = get_engine(cfg.engine, cfg.address)
    blocks: dict[str, list] = {p.name: [] for p in todo}
    try:
        with tqdm(total=len(tasks), disable=not cfg.progress, desc=f"atlas ({cfg.engine})", unit="task") as bar:
            for key, res in engine.map(pair_task, tasks, arrays):
                blocks[pair_of[key].name].append((key, res))
                bar.update(1)
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    for p in todo:
        results[p.name] = merge_blocks(p.kind, blocks[p.name])
        if p.kind == "compare":
            extras[p.name] = {"gap_bound": results[p.name]["gap_bound"]}
    log.info("computed %d pairs in %d tasks", len(todo), len(tasks))
    return len(todo)


def _previous(out: Path, plan: list[Pair], keys: dict[str, str], widths: dict[str, int]):
    """Results of the previous run in ``out`` whose reuse key is unchanged (read now, before ``out`` is replaced)."""
    from featgraph.io.readers import read_json

    results: dict[str, dict] = {}
    extras: dict[str, dict] = {}
    out = _earlier_result(out)
    path = out / "summary.json"
    if not path.is_file():
        return results, extras
    try:
        old = read_json(path)
        entries = {e["pair"]: e for e in old.get("plan", []) if old.get("kind") == SUMMARY_KIND}
    except (FeatgraphError, TypeError, KeyError) as e:
        log.warning("%s: not reusing the previous results (%s)", path, e)
        return results, extras
    for p in plan:
        e = entries.get(p.name)
        if not isinstance(e, dict) or e.get("key") != keys[p.name] or e.get("kind") != p.kind:
            continue
        try:
            extra = {"gap_bound": e["stats"]["gap_bound"]} if p.kind == "compare" else {}
            n_rows = min(widths[p.a], widths[p.b]) if p.kind == "compare" else widths[p.b]
            results[p.name] = read_pair(out / p.folder, p.kind, n_rows, extra)
            extras[p.name] = extra
        except (FeatgraphError, TypeError, KeyError) as err:
            log.warning("%s: recomputing %s (%s)", out, p.name, err)
    return results, extras


def _earlier_result(out: Path) -> Path:
    """Where the previous result is: ``out``, or, when a run was killed between the two renames of its swap (``out``
    absent), the earlier result waiting under its stale ``.old`` name (:mod:`featgraph.io.output`), which this run
    reads before removing it."""
    if out.exists() or not out.parent.is_dir():
        return out
    from featgraph.io.files import is_stale_temp, parse_temp_name

    for p in sorted(out.parent.iterdir()):
        parsed = parse_temp_name(p.name)
        if parsed and parsed[0] == out.name and parsed[2] == "old" and p.is_dir() and is_stale_temp(p):
            return p
    return out


def _stats(p: Pair, t: dict[str, pl.DataFrame], extra: dict[str, Any]) -> dict[str, Any]:
    if p.kind == "families":
        f, fam = t["features.parquet"], t["families.parquet"]
        live = int((~f["zero_norm"]).sum())
        n_novel = int(f["novel"].sum() or 0)
        kinds = {k: int(n) for k, n in fam.group_by("kind").len().sort("kind").iter_rows()}
        return {"features": f.height, "novel": n_novel, "novel_share": round(n_novel / max(live, 1), 6),
                "edges": t["edges.parquet"].height, "families": fam.height, "families_by_kind": kinds}
    if p.kind == "flow":
        f = t["flow.parquet"]
        live = int((~f["zero_norm"]).sum())
        born = int(f["from_nowhere"].sum() or 0)
        return {"features": f.height, "from_nowhere": born, "born_share": round(born / max(live, 1), 6)}
    a = t["assignment.parquet"]
    return {"assigned": a.height, "shared": int(a["shared"].sum()),
            "shared_share": round(float(a["shared"].mean()), 6) if a.height else None,
            "pw_mcc": round(float(a["cos"].mean()), 9) if a.height else None, "gap_bound": extra["gap_bound"]}


def _write(cfg, coll: Collection, out: Path, inputs, plan, used, widths, fps, keys, tables, results, extras,
           masks, reused: int, computed: int, labelling=None) -> AtlasResult:
    from featgraph import __version__
    from featgraph.atlas.flow import chain_summary, flow_figure, flow_tables
    from featgraph.atlas.network import graph_tables, write_graph
    from featgraph.io.files import write_json
    from featgraph.io.output import open_output
    from featgraph.matching import resolve_method_device
    from featgraph.tables import write_parquet

    specs = {s.name: s for s in coll.saes}
    flow_pairs = [p for p in plan if p.kind == "flow"]
    chains, layers = flow_tables(flow_pairs, results, specs, masks, cfg.tau)
    # what "auto" became here (the local engine's; a Ray worker resolves its own device: the answers are the same)
    method, device = resolve_method_device(cfg.method, cfg.device)
    config = cfg.to_json(saes=len(used), pairs=len(plan), resolved={"method": method, "device": device},
                         featgraph_version=__version__)
    saes = [{**specs[n].to_json(), "width": widths[n], "fingerprint": fps[n],
             "zero_norm_rows": int(masks[n].sum())} for n in used]
    pairs = [{"kind": p.kind, "a": p.a, "b": p.b, "pair": p.name, "folder": p.folder, "key": keys[p.name],
              "stats": _stats(p, tables[p.name], extras.get(p.name, {}))} for p in plan]
    summary = {"kind": SUMMARY_KIND, "config": config, "saes": saes, "plan": pairs,
               "flow": {"chains": chain_summary(chains), "layers": layers.to_dicts()},
               "run": {"pairs": len(plan), "reused": reused, "computed": computed}}
    files: list[str] = []
    with open_output(out, command=COMMAND, inputs=inputs) as tmp:
        for p in plan:
            write_pair(tmp / p.folder, tables[p.name])
            files += [f"{p.folder}/{name}" for name in tables[p.name]]
        if flow_pairs:
            write_parquet(chains, tmp / "flow_chains.parquet")
            write_parquet(layers, tmp / "flow_layers.parquet")
            import matplotlib.pyplot as plt

            fig = flow_figure(layers)
            # no "Software" metadata: the PNG bytes then depend on the data, not the matplotlib version
            fig.savefig(tmp / "flow.png", dpi=100, metadata={"Software": None})
            plt.close(fig)
            files += ["flow_chains.parquet", "flow_layers.parquet", "flow.png"]
        labels = None
        if labelling is not None:
            from featgraph.atlas.labels import explain_stores, merge_labels

            folders, n_reused = explain_stores(labelling[0], cfg.tokenizer, specs, fps, _earlier_result(out), tmp,
                                               progress=cfg.progress)
            labels = merge_labels(labelling[1], folders)
            files += [f"examples/{f.name}/{n}" for f in folders for n in ("feature_stats.parquet", "examples.parquet")]
            summary["examples"] = {"stores": [str(s.folder) for s in labelling[0]], "folders": list(cfg.examples),
                                   "reused": n_reused, "labelled_saes": sorted(set(labels) & set(used))}
        nodes, edges = graph_tables(used, specs, widths, plan, tables, chains, labels)
        files += write_graph(nodes, edges, cfg.tau, tmp)
        write_json(tmp / "summary.json", summary)
        write_json(tmp / "config.json", config)
        files += ["summary.json", "config.json"]
    log.info("atlas: %d pairs (%d reused, %d computed) into %s", len(plan), reused, computed, out)
    return AtlasResult(out, plan, tables, summary, reused, computed, files)
