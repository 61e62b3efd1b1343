"""Re-measure every finding of docs/findings.md on a ladder, in one resumable command, and write a digest.

    nice -n 19 env OMP_NUM_THREADS=1 python examples/findings_smollm2.py --ladder ladders/smollm2-135m \\
        --heldout HELDOUT_STORE --train TRAIN_STORE --out /tmp/findings

Every step is a featgraph command run as a subprocess (the exact command line is in the digest and in
``--out/steps.json``, with its wall time); a step whose output already exists is skipped, so a killed run resumes
at the step it was in (featgraph writes every ``--out`` atomically: an output that exists is complete).

1. ``report/``: ``featgraph report`` on the ladder's widths: every adjacent pair as ``featgraph stitch`` (2x2 table,
   add-all-novel, best prefix, swaps, interpolation path, bootstrap 95% intervals over held-out contexts) and the
   Frankenstein SAE (exact ridge least-squares decoders, the ladder's own SAEs refitted the same way as the
   control, paired bootstrap intervals of every MSE difference), CE loss recovered on ``--ce-contexts`` contexts.
2. ``compare-seed/``, ``compare-adjacent/``: ``featgraph compare`` of the seed-control pair and of the adjacent pair
   at the seed control's width (with ``--acts``: activation similarity), and the other adjacent pairs decoder-only.
3. ``families/``, ``explain/``, ``explorer/<name>.html``: the family explorer, made as docs/explorer/README.md says
   (explain over the first 100,000 training-split tokens, ``-k 5``, the same title).
4. ``FINDINGS_NUMBERS.md``: every number that docs/findings.md sections 1-3 and "Comparing SAEs" quote, read from
   the files above (never typed), each with its 95% interval where the output has one; the weights' sha256, the
   stores' token hashes and each SAE's training health (``health.json`` beside it, from featgraph train/eval).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

EXPLORER_TITLE = "featgraph explorer: SmolLM2-135M layer 3, widths {lo}-{hi}"  # docs/explorer/README.md's title
FEATGRAPH = [sys.executable, "-c", "import sys; from featgraph.cli.main import main; main(sys.argv[1:])"]


# -- the ladder's layout ----------------------------------------------------------------------------------------------
def ladder_saes(ladder: Path) -> list[tuple[str, Path, int]]:
    """(name, folder, width) of the ladder's SAEs (its direct subfolders holding an SAE), narrowest first; the
    seed control (a subfolder of ``seed-control/``) is not one of them, as for featgraph's own ladder loading."""
    from featgraph.ladder import load_ladder

    return [(e.name, Path(e.path), e.width) for e in load_ladder([ladder])]


def seed_control(ladder: Path, saes: list[tuple[str, Path, int]]) -> tuple[tuple[str, Path], tuple[str, Path]]:
    """(ladder SAE, seed control) of the same width: ``seed-control/<name>`` must name a width of the ladder."""
    from featgraph.ladder import load_ladder

    controls = sorted(p for p in (ladder / "seed-control").glob("*") if p.is_dir())
    if not controls:
        raise SystemExit(f"{ladder}/seed-control holds no SAE folder")
    ctrl = load_ladder([controls[0]])[0]
    same = [s for s in saes if s[2] == ctrl.width]
    if not same:
        raise SystemExit(f"seed control {controls[0]} has width {ctrl.width}, which no SAE of {ladder} has")
    return (same[0][0], same[0][1]), (ctrl.name, Path(ctrl.path))


# -- running the steps ------------------------------------------------------------------------------------------------
def _child_cpu() -> float:
    """CPU seconds (user + system) of finished child processes: on a shared machine the wall time says more about
    the load than about the step, its CPU time (one thread) predicts the wall time on a quiet core."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def invoke(argv: list[str]) -> int:
    """``featgraph ARGV`` in a fresh process (each step's memory is returned when it ends); its exit code."""
    return subprocess.run(FEATGRAPH + argv, check=False).returncode


def run_step(name: str, out: Path, argv: list[str], log: dict[str, Any]) -> None:
    """Run ``featgraph ARGV`` unless ``out`` exists; record the command and its wall time in ``log``."""
    cmd = "featgraph " + shlex.join(argv)
    if out.exists():  # made by an earlier run: its record (command, wall time) stays, marked as reused
        log.setdefault(name, {"command": cmd, "wall_s": None})["reused"] = True
        print(f"[{name}] {out} exists: skipped", flush=True)
        return
    print(f"[{name}] {cmd}", flush=True)
    t0, c0 = time.perf_counter(), _child_cpu()
    rc = invoke(argv)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - c0
    if rc != 0:
        raise SystemExit(f"[{name}] failed (exit {rc}) after {wall:.0f} s: {cmd}")
    log[name] = {"command": cmd, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "reused": False,
                 "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
    print(f"[{name}] done in {wall:.0f} s", flush=True)


def steps(args: argparse.Namespace, saes: list[tuple[str, Path, int]]) -> list[tuple[str, Path, list[str]]]:
    out, q = args.out, ["--quiet"] if args.quiet else []
    (base, base_p), (ctrl, ctrl_p) = seed_control(args.ladder, saes)
    i = next(k for k, s in enumerate(saes) if s[0] == base)
    nxt = saes[i + 1] if i + 1 < len(saes) else saes[i - 1]
    toks = ["--n-tokens", str(args.report_tokens)] if args.report_tokens else []
    ctoks = ["--tokens", str(args.compare_tokens)] if args.compare_tokens else []
    tok = ["--tokenizer", args.tokenizer] if args.tokenizer else []
    run = [
        ("report", out / "report", ["report", *[str(p) for _, p, _ in saes], "--acts", str(args.heldout),
                                    "--train-acts", str(args.train), *toks, "--ce-contexts", str(args.ce_contexts),
                                    "--retrain-tokens", str(args.retrain_tokens), "--out", str(out / "report"), *q]),
        ("compare-seed", out / "compare-seed", ["compare", str(base_p), str(ctrl_p), "--acts", str(args.heldout),
                                                *ctoks, "--name-a", base, "--name-b", ctrl,
                                                "--out", str(out / "compare-seed"), *q]),
        ("compare-adjacent", out / "compare-adjacent", ["compare", str(base_p), str(nxt[1]), "--acts",
                                                        str(args.heldout), *ctoks, "--out",
                                                        str(out / "compare-adjacent"), *q]),
    ]
    for (a, ap, _), (b, bp, _) in zip(saes[:-1], saes[1:], strict=True):  # the rest, decoder side only (cheap)
        if {a, b} != {base, nxt[0]}:
            run.append((f"compare-{a}__{b}", out / f"compare-{a}__{b}",
                        ["compare", str(ap), str(bp), "--out", str(out / f"compare-{a}__{b}"), "--no-plots", *q]))
    page = out / "explorer" / args.page_name
    title = EXPLORER_TITLE.format(lo=saes[0][2], hi=saes[-1][2])
    run += [
        ("families", out / "families", ["families", str(args.ladder), "--out", str(out / "families"), *q]),
        ("explain", out / "explain", ["explain", str(args.ladder), "--acts", str(args.train), "--n-tokens",
                                      str(args.explain_tokens), "-k", "5", *tok, "--out", str(out / "explain"), *q]),
        ("explore", page, ["explore", str(out / "families"), "--examples", str(out / "explain"), "--out", str(page),
                           "--title", title, *q]),
    ]
    return run


# -- the digest: every number read back from the outputs ----------------------------------------------------------
def num(v: Any, nd: int = 1) -> str:
    """A number as the findings print it (ints with thousands separators; '-' for a missing one)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}"
    return f"{float(v):,.{nd}f}"


def ci(v: Any, interval: Any, nd: int = 1, scale: float = 1.0) -> str:
    """``value [lo, hi]`` (the 95% interval where the output has one); ``(!)`` marks an interval that does not
    hold its own value (a percentile interval of a count of signs can miss it: see the note at the end)."""
    s = num(v * scale if v is not None else None, nd)
    if interval:
        s += f" [{num(interval[0] * scale, nd)}, {num(interval[1] * scale, nd)}]"
        if v is not None and not interval[0] <= v <= interval[1]:
            s += " (!)"
    return s


def pct(v: Any, interval: Any = None, nd: int = 1) -> str:
    if v is None:
        return "-"
    s = ci(v, interval, nd, 100.0)
    return s[:-4] + "% (!)" if s.endswith(" (!)") else s + "%"


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in r) + " |" for r in rows), ""]


def inputs_section(args: argparse.Namespace, saes: list, control: tuple, log: dict[str, Any]) -> list[str]:
    lines = ["## Inputs", "", f"Ladder `{args.ladder.resolve()}`; weights (sha256 of `sae.safetensors`) and the "
             "training health written beside each SAE (`health.json`: featgraph train / eval, on the tokens it names):",
             ""]
    rows = []
    width_of = {n: w for n, _, w in saes}
    for name, path, width in [*saes, (control[1][0], control[1][1], width_of[control[0][0]])]:
        h = read_json(path / "health.json")
        rows.append([name, num(width), f"`{sha256_file(path / 'sae.safetensors')}`", pct(h.get("moved_share")),
                     pct(h.get("useless_share")), pct(h.get("harmful_share")), pct(h.get("dead_share")),
                     pct(h.get("rare_share")), pct(h.get("dense_share")), ", ".join(h.get("undertrained", [])) or "-",
                     h.get("eval_set", "-")])
    lines += table(["SAE", "width", "sha256", "moved", "useless", "harmful", "dead", "rare", "dense",
                    "under-trained flags", "health measured on"], rows)
    rows = []
    for role, store in (("held-out", args.heldout), ("train", args.train)):
        m = read_json(store / "meta.json")
        prov = (m.get("extra") or {}).get("provenance") or {}
        rows.append([role, f"`{store.resolve()}`", (m.get("extra") or {}).get("corpus", "-"), num(m.get("n_tokens")),
                     num(m.get("n_contexts")), f"`{m.get('tokens_sha256')}`", f"`{prov.get('token_ids_sha256', '-')}`"])
    lines += table(["store", "path", "corpus", "tokens", "contexts", "tokens_sha256", "token_ids_sha256 (provenance)"],
                   rows)
    lines += ["Steps (featgraph commands; wall time of the run that made the output, the 1-min load average after "
              "it; CPU s: user + system of the step's process; reused: the last driver run found the output and "
              "skipped the step):", ""]
    lines += table(["step", "wall s", "CPU s", "load after", "reused", "command"],
                   [[k, num(v.get("wall_s")), num(v.get("cpu_s")), v.get("load_avg_after", ["-"])[0],
                     "yes" if v.get("reused") else "no",
                     f"`{v['command']}`"] for k, v in log.items()])
    return lines


def pair_section(folder: Path) -> list[str]:
    s = read_json(folder / "summary.json")
    iv = s.get("intervals", {})
    t, ti = s["two_by_two"], iv.get("two_by_two", {})
    n_novel, width = t["novel"]["total"], s["width_large"]
    lines = [f"### {s['small']} -> {s['large']}", "",
             f"{num(s['n_tokens'])} held-out tokens, {num(iv.get('n_contexts'))} contexts "
             f"({iv.get('method', 'no intervals')}).",
             ""]
    rows = [[f"delta-MSE {op}", *(ci(t[c][k], ti.get(c, {}).get(k), 0) for c in ("novel", "reconstruction"))]
            for op, k in (("< 0", "dmse_lt_0"), ("> 0", "dmse_gt_0"), ("= 0", "dmse_eq_0"))
            if t["novel"].get(k) or t["reconstruction"].get(k)]
    lines += table(["", f"novel (max cos <= {s['tau']})", f"reconstruction (> {s['tau']})"], rows)
    cum = pl.read_parquet(folder / "cumulative_mse.parquet")
    ncol = next(c for c in cum.columns if c.startswith("novel"))
    rcol = next(c for c in cum.columns if c.startswith("reconstruction"))
    nov = cum[ncol].drop_nans().drop_nulls().to_numpy()
    rec = cum[rcol].drop_nans().drop_nulls().to_numpy()
    a = s["add_all_novel"]
    path = pl.read_parquet(folder / "interpolation.parquet")
    pts = {r["name"]: r for r in pl.read_parquet(folder / "points.parquet").iter_rows(named=True)}
    ce = path["ce_recovered"].to_list()
    lines += [
        f"- novel share: {num(n_novel)} of {num(width)} = {pct(n_novel / width)} (decoders only: no interval)",
        f"- novel features lowering MSE alone: {pct(s['share_novel_lowering_mse'], iv.get('share_novel_lowering_mse'))}"
        f"; reconstruction features raising it: "
        f"{pct(s['share_reconstruction_raising_mse'], iv.get('share_reconstruction_raising_mse'))}",
        f"- MSE {s['small']} {ci(s['mse_small'], iv.get('mse_small'))} (L0 {num(s['l0_small'])}), {s['large']} "
        f"{ci(s['mse_large'], iv.get('mse_large'))} (L0 {num(s['l0_large'])}); large - small "
        f"{ci(s['mse_large'] - s['mse_small'], iv.get('mse_large_minus_small'))}",
        f"- add all {num(a['n_added'])} novel: MSE {num(a['mse'])}, change "
        f"{pct(a['relative_change'], iv.get('add_all_novel_relative_change'), 2)}, L0 {num(a['l0'])}; the sum of "
        f"their single delta-MSEs predicts {pct(a['sum_of_single_dmse'] / s['mse_small'], None, 1)}",
        f"- best prefix (novel features added in order of their own delta-MSE): MSE {num(a['best_prefix_mse'])} "
        f"({pct(a['best_prefix_mse'] / s['mse_small'] - 1, None, 2)}) after the best {num(int(np.argmin(nov)))}",
        f"- all {num(len(rec) - 1)} reconstruction features added: MSE {num(rec[-1])}",
        f"- CE recovered (zero abl.): {s['small']} {num(pts.get(s['small'], {}).get('ce_recovered_zero'), 3)}, "
        f"+ all novel {num(ce[1], 3)}, path end {num(ce[-1], 3)}, {s['large']} "
        f"{num(pts.get(s['large'], {}).get('ce_recovered_zero'), 3)}",
    ]
    for r in s["active_inactive_novel_mean"]:
        lines.append(f"- novel features, {r['sae']}: MSE where active {num(r['active'])}, inactive "
                     f"{num(r['inactive'])}, gap {num(r['difference'])}")
    w = s["swaps"]
    sw = pl.read_parquet(folder / "swaps.parquet")
    kinds = ", ".join(f"{num(n)} {k}" for k, n in sorted(w["kinds"].items()))
    per_kind = "; ".join(f"{k}: {pct(float((g['dl0'] < 0).mean()))} lower L0, median dMSE "
                         f"{pct(float(g['dmse_relative'].median()), None, 2)}"
                         for (k,), g in sorted(sw.group_by("kind"), key=lambda x: x[0][0]))
    mse = path["mse"].to_numpy()
    peak = int(np.argmax(mse[2:])) + 2 if mse.size > 2 else 0

    def step(i: int) -> str:
        r = path.row(i, named=True)
        return (f"{num(r['n_features'])} features, L0 {num(r['l0'])}, MSE {num(r['mse'])}, CE rec. "
                f"{num(r['ce_recovered'], 3)}")
    lines += ["", f"Swaps: {num(w['n_families'])} families ({kinds}); swapped alone {pct(w['share_raising_mse'])} "
              f"raise MSE, {pct(w['share_lowering_l0'])} lower L0 ({per_kind}). No bootstrap interval in the output.",
              "", f"Interpolation path ({s.get('swap_order')}): start {step(0)}; after the novel features {step(1)}; "
              f"end {step(len(path) - 1)}; MSE peak {num(mse[peak])} at step {peak} of {len(path) - 1}.", ""]
    return lines


def _at_ridge(fit: dict[str, Any]) -> Any:
    """The validation MSE at the chosen ridge (``val_mse`` maps every ridge tried to its validation MSE)."""
    v = fit["val_mse"]
    return v.get(str(float(fit["ridge"])), min(v.values())) if isinstance(v, dict) else v


def frankenstein_section(folder: Path) -> list[str]:
    cmp = pl.read_parquet(folder / "comparison.parquet")
    summ, met = read_json(folder / "summary.json"), read_json(folder / "metrics.json")
    iv = summ.get("intervals", {})
    lines = ["## 3. Frankenstein's SAE", "", f"Stage widths {met.get('stage_widths')} from {met.get('sources')}; "
             f"decoder fit: {met.get('decoder_fit')}; intervals: {iv.get('method', 'none')} "
             f"({num(iv.get('n_contexts'))} contexts).", ""]
    grid = [float(k) for k in (met.get("exact_fits") or [{}])[0].get("val_mse", {})]
    edge = [f for f in met.get("exact_fits", []) if grid and f["ridge"] == max(grid)]
    if edge:  # the validation MSE may still fall beyond the grid: the fit is then not the ridge optimum
        lines += [f"**Ridge at the top of the grid** ({max(grid):g}) for {len(edge)} of "
                  f"{len(met['exact_fits'])} fits (widths {', '.join(num(f['width']) for f in edge)}): the "
                  "validation MSE may still fall at larger ridges, so these decoders are not the ridge optimum.", ""]
    if met.get("exact_fits"):
        lines += table(["refitted width", "ridge", "fit MSE", "validation MSE at it", "fit tokens", "val tokens"],
                       [[num(f["width"]), f"{f['ridge']:g}", num(f["train_mse"]), num(_at_ridge(f)),
                         num(f["n_fit"]), num(f["n_val"])] for f in met["exact_fits"]])
    lines += table(["kind", "model", "features", "L0", "MSE [95%]", "expl. var.", "CE rec. (zero)"],
                   [[r["kind"], r["name"], num(r["width"]), num(r["l0"]),
                     ci(r["mse"], iv.get("mse", {}).get(r["name"])), num(r["explained_variance"], 3),
                     num(r["ce_recovered_zero"], 3)]
                    for r in cmp.iter_rows(named=True)])
    by = {r["name"]: r for r in cmp.iter_rows(named=True)}
    lad = cmp.filter(pl.col("kind") == "ladder")["name"].to_list()
    lines += ["Decoder refit alone (ladder SAEs): " + ", ".join(
        f"{n} {pct(by[n + '-retrained']['mse'] / by[n]['mse'] - 1, None, 1)}" for n in lad if n + "-retrained" in by),
        "", "Retrained Frankenstein stage minus refitted ladder SAE (MSE; < 0: Frankenstein better):", ""]
    lines += table(["Frankenstein", "ladder", "L0 F / ladder", "MSE difference [95%]", "replicates F better"],
                   [[d["frankenstein"], d["ladder"], f"{num(d['l0_frankenstein'])} / {num(d['l0_ladder'])}",
                     ci(d["mse_difference"], d["mse_difference_interval"]), pct(d["share_frankenstein_better"])]
                    for d in iv.get("frankenstein_vs_ladder", [])])
    return lines


def compare_section(out: Path) -> list[str]:
    lines = ["## Comparing SAEs", ""]
    cols, heads = [], []
    for sub in ("compare-seed", "compare-adjacent"):
        s = read_json(out / sub / "summary.json")
        if not s:
            continue
        pairs = pl.read_parquet(out / sub / "pairs.parquet")
        r, act = s["results"], s["results"].get("activations") or {}
        asg, fam = r["assignment"], r["families_by_kind"]
        heads.append(f"{sub[8:]}: {s['saes'][0]['name']} vs {s['saes'][1]['name']}")
        sp, spa = act.get("spearman_assigned_pairs", {}), act.get("spearman_decoder_cos_vs", {})
        am = act.get("assigned_pairs_mean", {})
        cols.append([
            f"{num(asg['pairs'])} pairs (gap {asg['gap_bound']:.1e})", num(asg["pw_mcc"], 3),
            f"{pct(asg['shared_share'])} ({num(asg['shared_pairs'])})",
            f"{pct(float((pairs['cos'] > 0.5).mean()))} / {pct(float((pairs['cos'] > 0.9).mean()))}",
            f"{num(r['a_to_b']['lost'])} ({pct(r['a_to_b']['lost_share'])})",
            f"{num(r['b_to_a']['novel'])} ({pct(r['b_to_a']['novel_share'])})",
            f"{num(r['families'])} ({' / '.join(num(fam.get(k, 0)) for k in ('copy', 'split', 'merge', 'n:m'))})",
            " / ".join(num(am.get(k), 3) for k in ("jaccard", "pearson", "masked_cos")),
            f"{num(sp.get('masked_cos'), 3)} (Jaccard {num(sp.get('jaccard'), 3)}, "
            f"Pearson {num(sp.get('pearson'), 3)})",
            f"{num(spa.get('masked_cos'), 3)} over {num(act.get('coactive_pairs'))} pairs",
            f"{num(act.get('precision'), 3)} ({num(act.get('both'))} of {num(act.get('decoder_edges'))})",
            f"{num(act.get('recall'), 3)} ({num(act.get('both'))} of {num(act.get('activation_edges'))})",
            f"{num(act.get('n_tokens'))} tokens, store `{(s.get('store') or {}).get('tokens_sha256')}`",
        ])
    labels = ["one-to-one assignment (gap bound)", "PW-MCC", "shared share (assigned cos > tau)",
              "shared share at 0.5 / 0.9", "A lost", "B novel", "families (copy / split / merge / n:m)",
              "assigned pairs mean Jaccard / Pearson / masked cos", "Spearman(decoder cos, act.), assigned pairs",
              "Spearman(decoder cos, masked cos), co-active pairs", "precision (decoder edges that are act. edges)",
              "recall (act. edges that are decoder edges)", "activations"]
    lines += table(["", *heads], [[lab, *(c[i] for c in cols)] for i, lab in enumerate(labels)])
    rows = []
    for sub in sorted(p for p in out.glob("compare-*__*") if p.is_dir()):
        r = read_json(sub / "summary.json")["results"]
        rows.append([sub.name[8:].replace("__", " vs "), num(r["assignment"]["pw_mcc"], 3),
                     pct(r["assignment"]["shared_share"]), pct(r["b_to_a"]["novel_share"])])
    if rows:
        lines += ["Other adjacent pairs, decoder side only:", ""] + table(["pair", "PW-MCC", "shared share",
                                                                          "B novel"], rows)
    return lines


def write_digest(args: argparse.Namespace, saes: list, log: dict[str, Any]) -> None:
    """``--out/FINDINGS_NUMBERS.md`` from the outputs that exist (a missing step's section is left out)."""
    from featgraph.io.files import atomic_write

    out = args.out
    lines = ["# Findings numbers (generated by examples/findings_smollm2.py; do not edit)", ""]
    lines += inputs_section(args, saes, seed_control(args.ladder, saes), log)
    rep = out / "report"
    if rep.exists():
        cfg = read_json(rep / "config.json")
        lines += ["## Ladder on held-out tokens (report)", "",
                  f"{num(cfg.get('n_tokens_eval'))} evaluation tokens, CE on {num(cfg.get('ce_contexts'))} contexts, "
                  f"exact decoder fits on {num(cfg.get('retrain_tokens'))} training tokens, tau {cfg.get('tau')}.", "",
                  "## 1-2. Adding and swapping features (every adjacent pair)", ""]
        for folder in sorted((rep / "pairs").iterdir(), key=lambda p: read_json(p / "summary.json")["width_small"]):
            lines += pair_section(folder)
        if (rep / "frankenstein").exists():
            lines += frankenstein_section(rep / "frankenstein")
    lines += compare_section(out)
    page = out / "explorer" / args.page_name
    fam = read_json(out / "families" / "summary.json")
    if page.exists() and fam:
        feats = pl.read_parquet(out / "families" / "features.parquet")
        n_fam, n_novel = sum(p["families"] for p in fam["pairs"]), int((feats["novel"] == True).sum())  # noqa: E712
        ex = read_json(out / "explain" / "config.json")
        lines += ["## Explorer (docs/explorer/README.md)", "",
                  f"`{page}` ({page.stat().st_size / 1e6:.1f} MB; copy to docs/explorer/): {num(n_fam)} families "
                  f"in {num(fam['trees']['count'])} splitting trees and {num(n_novel)} novel features "
                  f"({num(n_fam + n_novel)} list entries); explain over {num(ex.get('n_tokens'))} training tokens.",
                  ""]
        lines += table(["pair", "novel", "novel share", "edges", "families", "copy / split / merge / n:m"],
                       [[f"{p['small']} -> {p['large']}", num(p["novel"]), pct(p["novel_share"]), num(p["edges"]),
                         num(p["families"]), " / ".join(num(p["families_by_kind"].get(k, 0))
                                                        for k in ("copy", "split", "merge", "n:m"))]
                        for p in fam["pairs"]])
    lines += ["(!) = the 95% interval does not hold the value measured on all contexts: a percentile bootstrap "
              "of a count of signs (features whose delta-MSE is near 0 flip sign under resampling) is biased; "
              "read such an interval as the spread, not as a confidence interval of the count.", ""]
    atomic_write(out / "FINDINGS_NUMBERS.md", lambda p: p.write_text("\n".join(lines) + "\n", encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ladder", type=Path, default=Path("ladders/smollm2-135m"))
    p.add_argument("--heldout", type=Path, required=True, help="held-out store at the ladder's hook")
    p.add_argument("--train", type=Path, required=True, help="training-split store (decoder refits, explain)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ce-contexts", type=int, default=64, help="held-out contexts for CE (full model forwards)")
    p.add_argument("--retrain-tokens", type=int, default=200_000, help="training tokens per exact decoder fit")
    p.add_argument("--report-tokens", type=int, default=None, help="first N held-out tokens for report (default all)")
    p.add_argument("--compare-tokens", type=int, default=None, help="first N held-out tokens for compare --acts")
    p.add_argument("--explain-tokens", type=int, default=100_000, help="training tokens explain reads (explorer)")
    p.add_argument("--page-name", default="smollm2-135m.html", help="the explorer page's file name (docs/explorer/)")
    p.add_argument("--tokenizer", default=None, help="explain --tokenizer (default: the store's model)")
    p.add_argument("--only", default=None, help="comma-separated steps to run (default: all), e.g. report,explore")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "explorer").mkdir(exist_ok=True)
    saes = ladder_saes(args.ladder)
    log_file = args.out / "steps.json"
    log = json.loads(log_file.read_text()) if log_file.exists() else {}
    only = set(args.only.split(",")) if args.only else None
    for name, out, cmd in steps(args, saes):
        if only is None or name in only:
            run_step(name, out, cmd, log)
            log_file.write_text(json.dumps(log, indent=1) + "\n")
    write_digest(args, saes, log)
    print(f"digest: {args.out / 'FINDINGS_NUMBERS.md'}")


if __name__ == "__main__":
    main()
