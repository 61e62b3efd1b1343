"""Sizing note for `featgraph atlas` on Gemma Scope 2B residual (every layer, every width 16k ... 1M, every
sparsity): the plan's pairs and FLOPs, and the wall time on this CPU and projected on N GPUs.

    python benchmarks/sizing_gemmascope.py [--cpu-gflops G] [--gpu-tflops T]

The SAE list comes from featgraph's release registry (featgraph/hub/registry, release ``gemma-scope-2b-pt-res``,
sites ``layer_0`` ... ``layer_25``; the embedding SAEs are left out). The plan is featgraph.atlas.plan.make_plan's
own, on an in-memory collection: each SAE is tagged with its sparsity rank within its (layer, width) (``l0_rank``
0 = the lowest average L0), because Gemma Scope's L0 values differ between widths, so exact L0 tags would leave
every ladder one SAE long. Families then pair adjacent widths of one layer at one sparsity rank, and flow pairs
adjacent layers of one sparsity rank at equal or nearest width. As an upper bound the script also counts "every
sparsity against every sparsity" (all SAEs of adjacent widths of a layer, all SAEs of adjacent layers at one width).

FLOPs per pair: 2 * n_a * n_b * d (d = 2304), the GEMM that dominates matching. CPU time: at ``--cpu-gflops``,
the matching throughput measured by benchmarks/bench_families_e2e.py on this machine (the 8-width ladder's
9.90 TFLOP over its match_ladder seconds). GPU times are projections from FLOP counts alone, at an assumed
sustained ``--gpu-tflops`` per GPU (no GPU was measured for this note), with perfect scaling over N GPUs (the plan
has thousands of tasks, far more than N).
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

D = 2304
RELEASE = "gemma-scope-2b-pt-res"


def gemmascope_collection():
    """(collection, widths): every layer_* SAE of the release as an atlas SaeSpec with an ``l0_rank`` tag."""
    from featgraph.atlas.collection import Collection, SaeSpec, layer_of, stream_of
    from featgraph.hub.releases import load_registry

    rel = load_registry().releases[RELEASE]
    saes = [s for s in rel.saes if s.site.startswith("layer_")]
    by_group = defaultdict(list)
    for s in saes:
        l0 = int(re.search(r"average_l0_(\d+)", s.sae_id).group(1))
        by_group[s.site, s.width].append((l0, s))
    specs, widths = [], {}
    for (site, width), members in by_group.items():
        for rank, (_l0, s) in enumerate(sorted(members, key=lambda t: t[0])):
            name = s.sae_id.replace("/", "-")
            specs.append(SaeSpec(name, Path(s.path), site, layer_of(site), stream_of(site), 0, rel.model or "",
                                 width, (("l0_rank", rank),)))
            widths[name] = width
    return Collection(Path(RELEASE), specs), widths


def all_sparsity_pairs(coll, widths) -> dict[str, list[tuple[int, int]]]:
    """Upper bound: every SAE against every SAE of the adjacent width (same layer) / adjacent layer (same width)."""
    by = defaultdict(list)
    for s in coll.saes:
        by[s.layer, widths[s.name]].append(s)
    layers = sorted({s.layer for s in coll.saes})
    ws = sorted({widths[s.name] for s in coll.saes})
    fam, flow = [], []
    for la in layers:
        present = [w for w in ws if by[la, w]]
        for a, b in zip(present[:-1], present[1:], strict=True):
            fam += [(a, b)] * (len(by[la, a]) * len(by[la, b]))
    for lo, hi in zip(layers[:-1], layers[1:], strict=True):
        for w in ws:
            flow += [(w, w)] * (len(by[lo, w]) * len(by[hi, w]))
    return {"families": fam, "flow": flow}


def human_time(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def main() -> None:
    from featgraph.atlas.plan import make_plan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-gflops", type=float, required=True,
                    help="matching throughput measured on this CPU (benchmarks/results/families_e2e_cpu.txt)")
    ap.add_argument("--gpu-tflops", type=float, default=400.0,
                    help="ASSUMED sustained matching throughput per GPU (H100 bf16 dense peak ~989 TFLOP/s; "
                         "400 allows for the max/argmax and threshold passes)")
    ap.add_argument("--gpus", default="1,8,64")
    args = ap.parse_args()
    coll, widths = gemmascope_collection()
    n_layers = len({s.layer for s in coll.saes})
    print(f"# Gemma Scope 2B residual ({RELEASE}): {len(coll.saes)} SAEs at {n_layers} layers, widths "
          f"{sorted(set(widths.values()))}, d = {D}")
    print(f"# CPU throughput {args.cpu_gflops:.0f} GFLOP/s (--cpu-gflops, a matching measurement on this CPU); "
          f"GPU {args.gpu_tflops:.0f} TFLOP/s per GPU (assumed: GPU figures are projections from FLOP counts, "
          "no GPU was measured)")
    gpus = [int(g) for g in args.gpus.split(",")]
    plan = make_plan(coll, widths)
    rows = []
    for kind in ("families", "flow"):
        pairs = [(widths[p.a], widths[p.b]) for p in plan if p.kind == kind]
        rows.append((f"{kind} (atlas plan, by l0_rank)", pairs))
    upper = all_sparsity_pairs(coll, widths)
    rows.append(("plan total", [pr for _, prs in rows for pr in prs]))
    for kind in ("families", "flow"):
        rows.append((f"{kind} (every sparsity x every)", upper[kind]))
    rows.append(("upper-bound total", upper["families"] + upper["flow"]))
    head = f"{'part':<34}{'pairs':>7}{'PFLOP':>10}{'largest pair':>18}{'this CPU':>12}" + "".join(
        f"{f'{g} GPU':>11}" for g in gpus)
    print(head)
    for label, pairs in rows:
        flops = sum(2.0 * a * b * D for a, b in pairs)
        big = max(pairs, key=lambda p: p[0] * p[1]) if pairs else (0, 0)
        cpu = human_time(flops / (args.cpu_gflops * 1e9))
        gpu = "".join(f"{human_time(flops / (g * args.gpu_tflops * 1e12)):>11}" for g in gpus)
        print(f"{label:<34}{len(pairs):>7}{flops / 1e15:>10.1f}{f'{big[0]}x{big[1]}':>18}{cpu:>12}{gpu}")
    one = 2.0 * 1048576 * 524288 * D
    print(f"# one 1M x 524k pair: {one / 1e15:.2f} PFLOP = {human_time(one / args.cpu_gflops / 1e9)} on this CPU, "
          f"{human_time(one / args.gpu_tflops / 1e12)} on one GPU (projected)")


if __name__ == "__main__":
    main()
