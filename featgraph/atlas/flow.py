"""Feature flow across layers (Laptev et al. 2025): each feature's best predecessor one layer down, chains of
predecessors through all layers, and the share of features born, carried and ending at each layer.

Input: the plan's flow pairs (lower SAE ``a``, upper SAE ``b``; each upper SAE has exactly one) and their results
(``max_cos`` and ``argmax`` of every upper feature against the lower SAE). A feature at layer L+1 is *carried* when
its max cos > tau (its predecessor is the argmax) and *from nowhere* (born) when max cos <= tau. Walking the SAEs
in layer order, a carried feature joins its predecessor's chain and a born one (or any feature of an SAE with no
predecessor SAE: the lowest layer) starts a new chain, so every feature of the flow SAEs is in exactly one chain;
chain ids are ``0, 1, ...`` in the order (layer, SAE name, feature): deterministic. A feature *ends* at its layer
when no feature of the next layer's SAEs that take it as predecessor SAE is carried from it (undefined at the top
layer). All-zero decoder rows have no direction: in no chain, neither born nor carried.

Tables: ``flow_chains.parquet`` (:data:`CHAINS_SCHEMA`, one row per feature of every flow SAE) and
``flow_layers.parquet`` (:data:`LAYERS_SCHEMA`, one row per flow SAE); figure ``flow.png``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from featgraph.matching.core import is_novel

CHAINS_SCHEMA = pl.Schema({
    "sae": pl.String, "layer": pl.Int64, "feature": pl.Int64,
    "from_nowhere": pl.Boolean,  # null: no predecessor SAE (the lowest layer) or a zero row
    "predecessor": pl.Int64,  # feature of the predecessor SAE it is carried from (null: born, or none)
    "chain": pl.Int64,  # chain id (null: zero row)
    "depth": pl.Int64,  # layers the chain has been carried to reach this feature (0 where it starts)
    "ends": pl.Boolean,  # no feature of the next layer is carried from it (null: no next layer)
})
LAYERS_SCHEMA = pl.Schema({
    "model": pl.String, "stream": pl.String, "seed": pl.Int64, "sae": pl.String, "layer": pl.Int64,
    "width": pl.Int64, "predecessor_sae": pl.String, "features": pl.Int64,  # non-zero rows
    "born_share": pl.Float64, "carried_share": pl.Float64, "ending_share": pl.Float64,
})


def flow_tables(
    pairs: Sequence[Any], results: Mapping[str, dict[str, Any]], specs: Mapping[str, Any],
    zero: Mapping[str, np.ndarray], tau: float,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(chains, layers)`` for the flow pairs (``results`` keyed by pair name; ``specs``: SAE name -> SaeSpec;
    ``zero``: SAE name -> all-zero-row mask)."""
    pred_of = {p.b: p for p in pairs}
    saes = sorted({n for p in pairs for n in (p.a, p.b)}, key=lambda n: (specs[n].layer, n))
    chain: dict[str, np.ndarray] = {}
    depth: dict[str, np.ndarray] = {}
    carried_from: dict[str, np.ndarray] = {}  # per SAE: carried mask
    next_id = 0
    frames = {}
    for name in saes:
        z = zero[name]
        n = z.size
        c = np.full(n, -1, np.int64)
        dep = np.zeros(n, np.int64)
        born = np.ones(n, bool)
        pred = np.full(n, -1, np.int64)
        p = pred_of.get(name)
        if p is not None:
            r = results[p.name]
            born = is_novel(np.asarray(r["max_cos"], np.float64), tau)
            carried = ~born & ~z
            pred[carried] = np.asarray(r["argmax"], np.int64)[carried]
            c[carried] = chain[p.a][pred[carried]]
            dep[carried] = depth[p.a][pred[carried]] + 1
            carried_from[name] = carried
        start = born & ~z
        c[start] = np.arange(next_id, next_id + int(start.sum()))
        next_id += int(start.sum())
        chain[name], depth[name] = c, dep
        frames[name] = (born, pred, p is not None)
    rows, layer_rows = [], []
    for name in saes:
        spec, z = specs[name], zero[name]
        n = z.size
        born, pred, has_pred = frames[name]
        succ = [q for q in pairs if q.a == name]
        ends = None
        if succ:
            used = np.zeros(n, bool)
            for q in succ:
                used[np.asarray(pred_series(frames[q.b][1]))] = True
            ends = ~used & ~z
        rows.append(pl.DataFrame({
            "sae": [name] * n, "layer": np.full(n, spec.layer, np.int64), "feature": np.arange(n, dtype=np.int64),
            "from_nowhere": _masked(born, ~has_pred | z), "predecessor": _masked(pred, pred < 0),
            "chain": _masked(chain[name], z), "depth": depth[name],
            "ends": _masked(ends if ends is not None else np.zeros(n, bool), z | (ends is None)),
        }, schema=CHAINS_SCHEMA))
        live = int((~z).sum())
        layer_rows.append({
            "model": spec.model, "stream": spec.stream, "seed": spec.seed, "sae": name, "layer": spec.layer,
            "width": n, "predecessor_sae": pred_of[name].a if has_pred else None, "features": live,
            "born_share": _share(int((born & ~z).sum()), live) if has_pred else None,
            "carried_share": _share(int(carried_from[name].sum()), live) if has_pred else None,
            "ending_share": _share(int(ends.sum()), live) if ends is not None else None,
        })
    chains = pl.concat(rows) if rows else CHAINS_SCHEMA.to_frame()
    layers = pl.DataFrame(layer_rows, schema=LAYERS_SCHEMA) if layer_rows else LAYERS_SCHEMA.to_frame()
    return chains, layers


def _share(k: int, n: int) -> float | None:
    return round(k / n, 6) if n else None


def pred_series(pred: np.ndarray) -> np.ndarray:
    """The predecessor features actually carried from (the ``-1`` of born features dropped)."""
    return pred[pred >= 0]


def _masked(values: np.ndarray, null: np.ndarray | bool) -> pl.Series:
    null = np.broadcast_to(np.asarray(null, bool), np.shape(values))
    s = pl.Series(values)
    return s.scatter(np.flatnonzero(null), None) if null.any() else s


def chain_summary(chains: pl.DataFrame) -> dict[str, Any]:
    """How many chains, and how many span each number of layers (for summary.json)."""
    if chains.is_empty():
        return {"count": 0, "by_layers_spanned": {}}
    spans = (chains.filter(pl.col("chain").is_not_null()).group_by("chain")
             .agg(pl.col("layer").n_unique().alias("layers")).group_by("layers").len().sort("layers"))
    return {"count": int(chains["chain"].n_unique() - int(chains["chain"].null_count() > 0)),
            "by_layers_spanned": {str(k): int(v) for k, v in spans.iter_rows()}}


def flow_figure(layers: pl.DataFrame):
    """Share of features born, carried and ending at each layer, one line per (stream, seed, width) series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharex=True, sharey=True)
    series = layers.sort(["model", "stream", "seed", "width", "layer"]).partition_by(
        ["model", "stream", "seed", "width"], maintain_order=True)
    for ax, col, title in zip(axes, ("born_share", "carried_share", "ending_share"),
                              ("born (from nowhere)", "carried from layer below", "ending (no successor)"),
                              strict=True):
        for s in series:
            ok = s.filter(pl.col(col).is_not_null())
            if ok.height:
                r = s.row(0, named=True)
                label = f"{r['stream']} w{r['width']}" + (f" seed{r['seed']}" if r["seed"] else "")
                ax.plot(ok["layer"].to_list(), ok[col].to_list(), marker="o", label=label)
        ax.set_title(title)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("share of features")
    if series:
        axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def format_flow(layers: list[dict[str, Any]], most: int = 40) -> list[str]:
    """One line per flow SAE (``summary["flow"]["layers"]``): born / carried shares (from the layer below) and
    ending share (towards the layer above), ``-`` where there is no such layer; a collection with more than
    ``most`` flow SAEs gets one line pointing at the table instead."""
    rows = sorted(layers, key=lambda r: (r["stream"], r["seed"], r["width"], r["layer"], r["sae"]))
    if len(rows) > most:
        return [f"flow: {len(rows)} SAEs: born / carried / ending shares in flow_layers.parquet and flow.png"]

    def pct(v: float | None) -> str:
        return "  -  " if v is None else f"{100 * v:5.1f}%"

    return [f"flow {r['sae']} (layer {r['layer']}, from {r['predecessor_sae'] or '-'}): born "
            f"{pct(r['born_share'])}, carried {pct(r['carried_share'])}, ending {pct(r['ending_share'])}" for r in rows]
