"""The families pipeline: a ladder of SAEs in, tables + summary + GraphML (+ plots) out.

For every adjacent pair (small, large) of the ladder, every large feature gets its max decoder cosine to the
small SAE and its argmax (from :mod:`featgraph.matching`, or a saved :mod:`featgraph.index`); edges are the
pairs with cos > tau; novel features have max cos <= tau; families are the connected components with an edge,
and splitting trees the same across the whole ladder (:mod:`featgraph.graph`). ``out_dir`` is checked before
any matching (never an input, never a foreign folder, writable: :mod:`featgraph.io.output`), and everything is
written into a temporary folder that replaces ``out_dir`` only when the whole run succeeded, so a failed or
killed run leaves nothing behind. Outputs (see :mod:`featgraph.tables` and :mod:`featgraph.graph` for their
schemas): ``features.parquet``, ``edges.parquet``, ``families.parquet``, ``summary.json`` (per-pair counts and
the resolved config, no timestamps), ``config.json`` (the resolved config alone), ``graph.graphml`` and, with
``plots=True``, ``max_cos_hist.png``. Two runs on the same inputs give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import networkx as nx
import numpy as np
import polars as pl

from featgraph.config import FamiliesConfig, check_path, check_tau  # the one tau check, importable here
from featgraph.errors import ConfigError
from featgraph.graph import Family, families_from_edges, kind_counts, ladder_graph
from featgraph.graphml import LadderTables, write_graphml
from featgraph.io.files import write_json
from featgraph.ladder import Ladder, load_ladder
from featgraph.matching.core import is_novel  # the one definition of "novel"
from featgraph.tables import edges_table, families_table, features_table, write_parquet

log = logging.getLogger(__name__)

SUMMARY_KIND = "featgraph families"  # marks an output folder that a later run may replace
FEATURES_FILE, EDGES_FILE, FAMILIES_FILE = "features.parquet", "edges.parquet", "families.parquet"
SUMMARY_FILE, GRAPH_FILE, HIST_FILE = "summary.json", "graph.graphml", "max_cos_hist.png"
CONFIG_FILE = "config.json"
COMMAND = "families"  # the manifest's command: a later families run may replace this output, nothing else


@dataclasses.dataclass
class FamiliesResult:
    """Everything a families run computed, as written to ``out_dir``."""

    out_dir: Path
    names: list[str]
    tau: float
    features: pl.DataFrame
    edges: pl.DataFrame
    families: pl.DataFrame
    summary: dict[str, Any]
    pair_families: list[list[Family]]  # per adjacent pair, the families as objects
    files: list[str]  # names of the files written into out_dir

    @functools.cached_property
    def graph(self) -> nx.DiGraph:
        """The ladder graph (:func:`featgraph.graph.ladder_graph`), built on first use: the run writes its GraphML
        straight from the tables, so a command that never looks at the graph never builds 200k networkx nodes."""
        return ladder_graph(self.features, self.edges, tau=self.tau)


@dataclasses.dataclass
class FamiliesRunConfig(FamiliesConfig):
    """:class:`featgraph.config.FamiliesConfig` plus ``examples``: a ``featgraph explain`` output whose labels go
    on the features (a ``label`` column in features.parquet and a ``label`` attribute on GraphML nodes)."""

    path_fields: ClassVar[tuple[str, ...]] = ("saes", "index", "examples")
    examples: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.examples = check_path("examples", self.examples, optional=True)


def check_out_dir(
    out_dir: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str] | None] = ()
) -> Path:
    """Refuse an ``out_dir`` that overlaps an input, is a file, holds anything but an earlier families run's own
    files, or is not writable (see :func:`featgraph.io.output.check_output`); returns its resolved path."""
    from featgraph.io.output import check_output

    return check_output(out_dir, command=COMMAND, inputs=inputs)


def run_families(
    cfg: FamiliesConfig | Sequence[str | os.PathLike[str]] | Ladder,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    tau: float = 0.7,
    names: Sequence[str] | None = None,
    index_dir: str | os.PathLike[str] | None = None,
    plots: bool = False,
    method: str = "auto",
    device: str = "auto",
    progress: bool = True,
) -> FamiliesResult:
    """Match every adjacent pair of a ladder, find novel features and families, write it all to ``cfg.out``.

    ``cfg``: a :class:`featgraph.config.FamiliesConfig` (what ``featgraph families`` builds). For scripts the
    older spelling still works: SAE paths (or one folder of SAE folders) or a loaded
    :class:`~featgraph.ladder.Ladder`, then ``out_dir`` and the options as keywords, which become the same config.
    ``names`` overrides the SAE names (paths only). ``index_dir``: take the normalised decoder rows from a saved
    similarity index (refused when stale). ``method``/``device`` are passed to
    :func:`featgraph.matching.match_ladder`.
    """
    loaded: Ladder | None = None
    if not isinstance(cfg, FamiliesConfig):
        if isinstance(cfg, Ladder):
            check_tau(tau)  # the order of checks the CLI has: tau, then names
            if names is not None:
                raise ConfigError("names apply only when loading SAEs from paths; this ladder is already loaded")
            loaded, saes = cfg, [str(e.path) for e in cfg]
        else:
            saes = [str(p) for p in cfg]
        cfg = FamiliesConfig(saes=tuple(saes), out=out_dir, tau=tau, names=names, index=index_dir,  # type: ignore
                             plots=plots, method=method, device=device, progress=progress)
    return _run_families(cfg, loaded)


def _run_families(cfg: FamiliesConfig, loaded: Ladder | None) -> FamiliesResult:
    tau, index_dir, plots, method, device, progress = (
        cfg.tau, cfg.index, cfg.plots, cfg.method, cfg.device, cfg.progress)
    out_dir = cfg.out
    examples = getattr(cfg, "examples", None)
    inputs: list[Any] = [*cfg.saes, index_dir, examples]
    out = check_out_dir(out_dir, inputs)  # before any loading or matching: a bad --out fails in a second
    if loaded is not None:
        ladder = loaded
    else:
        from featgraph.hub import progress_bars  # SAEs named by release/hf:// download with bars unless --quiet

        with progress_bars(progress):
            ladder = load_ladder(list(cfg.saes), names=list(cfg.names) if cfg.names is not None else None)
        inputs += [e.path for e in ladder]  # names resolve to hub-cache folders: --out may not lie there either
        check_out_dir(out_dir, inputs)
    if len(ladder) < 2:
        raise ConfigError(
            f"families need at least 2 SAEs of different widths, got 1 ({ladder[0].path}, "
            f"width {ladder[0].width})"
        )

    labels = None
    if examples is not None:  # read (and refused) before any matching
        from featgraph.explain.labels import read_labels

        labels = read_labels(examples)
        if not set(labels) & set(ladder.names):
            raise ConfigError(f"{examples}: its labels are for SAEs {sorted(labels)[:8]}, none of this ladder's "
                              f"SAEs {ladder.names}; label the same SAEs with featgraph explain")
    units, norms = _unit_rows(ladder, index_dir, device)
    from featgraph.matching import match_ladder

    matches = match_ladder(units, tau, method=method, device=device, progress=progress)
    pair_fams = [families_from_edges(m.edge_small, m.edge_large) for m in matches]

    names_ = ladder.names
    features = features_table(names_, norms, matches, pair_fams, tau=tau)
    edges = edges_table(names_, matches, pair_fams)
    fams = families_table(names_, pair_fams)
    if labels is not None:
        features = with_labels(features, labels)
    summary = _summary(
        ladder,
        norms,
        matches,
        pair_fams,
        features,
        tau=tau,
        index_dir=index_dir,
        plots=plots,
        method=method,
        device=device,
    )
    if examples is not None:  # only then: a run without --examples writes the same config as before
        summary["config"]["examples"] = str(examples)
    from featgraph.hub import annotate_results  # SAEs named by release/hf://: provenance + Neuronpedia links

    # graph=None: the links go into the features table, from which the GraphML and the lazy graph both come
    features = annotate_results(ladder, features, None, summary)

    from featgraph.io.output import open_output

    files = [FEATURES_FILE, EDGES_FILE, FAMILIES_FILE, SUMMARY_FILE, CONFIG_FILE, GRAPH_FILE]
    with open_output(out, command=COMMAND, inputs=inputs) as tmp:
        write_parquet(features, tmp / FEATURES_FILE)
        write_parquet(edges, tmp / EDGES_FILE)
        write_parquet(fams, tmp / FAMILIES_FILE)
        write_json(tmp / SUMMARY_FILE, summary)
        write_json(tmp / CONFIG_FILE, summary["config"])
        write_graphml(LadderTables(features, edges, tau), tmp / GRAPH_FILE)  # straight from the tables
        if plots:
            from featgraph.plots import max_cos_histograms

            # no "Software" metadata: the PNG bytes then depend on the data, not the matplotlib version
            max_cos_histograms(features, tau=tau).savefig(
                tmp / HIST_FILE, dpi=110, metadata={"Software": None}
            )
            files.append(HIST_FILE)
    log.info("wrote %s to %s", ", ".join(files), out)
    return FamiliesResult(out, names_, tau, features, edges, fams, summary, pair_fams, files)


def _unit_rows(
    ladder: Ladder, index_dir: str | os.PathLike[str] | None, device: str
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Unit decoder rows and row norms of each SAE, from the saved index when one is given."""
    if index_dir is not None:
        from featgraph.index import load_ladder_index

        indices = load_ladder_index(ladder, index_dir)
        return [ix.unit for ix in indices], [np.asarray(ix.norms) for ix in indices]
    from featgraph.matching import normalize_rows

    units, norms = [], []
    for entry in ladder:
        F, d = entry.W_dec.shape
        u, n = np.empty((F, d), np.float32), np.empty(F, np.float32)
        # row blocks: normalize_rows works in float64, and a whole 98304 x 768 decoder in float64 is 600 MB of
        # temporaries (page faults, cache misses); each row's result is the same, block by block
        for lo in range(0, F, _NORM_ROWS):
            u[lo:lo + _NORM_ROWS], n[lo:lo + _NORM_ROWS] = normalize_rows(entry.W_dec[lo:lo + _NORM_ROWS])
        units.append(u)
        norms.append(n)
    return units, norms


_NORM_ROWS = 4096


def with_labels(features: pl.DataFrame, labels: dict[str, dict[int, str]]) -> pl.DataFrame:
    """``features`` with a ``label`` column (string; null for a feature or SAE the labels do not cover)."""
    frame = pl.DataFrame(
        [(sae, int(f), lab) for sae, by_feature in labels.items() for f, lab in by_feature.items()],
        schema={"sae": pl.String, "feature": pl.Int64, "label": pl.String}, orient="row")
    return features.join(frame, on=["sae", "feature"], how="left", maintain_order="left")


def _summary(
    ladder: Ladder,
    norms: list[np.ndarray],
    matches: list[Any],
    pair_fams: list[list[Family]],
    features: pl.DataFrame,
    *,
    tau: float,
    index_dir: str | os.PathLike[str] | None,
    plots: bool,
    method: str,
    device: str,
) -> dict[str, Any]:
    """Per-SAE and per-pair counts plus the resolved config (no timestamps: runs must be byte-identical)."""
    from featgraph import __version__

    saes = []
    for entry, norm in zip(ladder, norms, strict=True):
        zero = np.flatnonzero(np.asarray(norm) == 0)
        saes.append(
            {
                "name": entry.name,
                "path": str(entry.path),
                "format": entry.format,
                "width": entry.width,
                "fingerprint": entry.fingerprint(),
                "zero_norm_rows": int(zero.size),
                "zero_norm_first": zero[:10].tolist(),
            }
        )
    pairs = []
    for k, (m, fams) in enumerate(zip(matches, pair_fams, strict=True)):
        small, large = ladder[k], ladder[k + 1]
        defined = np.asarray(norms[k + 1]) != 0
        max_cos = np.asarray(m.max_cos, dtype=np.float64)
        novel = is_novel(max_cos, tau)
        n_novel = int(np.sum(novel & defined))
        pairs.append(
            {
                "small": small.name,
                "large": large.name,
                "small_width": small.width,
                "large_width": large.width,
                "features": large.width,
                "novel": n_novel,
                "reconstruction": int(np.sum(~novel & defined)),
                "zero_norm": int(np.sum(~defined)),
                "novel_share": round(n_novel / max(int(defined.sum()), 1), 6),
                "edges": int(len(m.edge_cos)),
                "families": len(fams),
                "families_by_kind": kind_counts(fams),
                "small_in_families": int(sum(len(f.small_features) for f in fams)),
                "large_in_families": int(sum(len(f.large_features) for f in fams)),
            }
        )
    config = {
        "paths": [str(e.path) for e in ladder],
        "names": ladder.names,
        "d_in": ladder.d_in,
        "tau": tau,
        "method": method,
        "device": device,
        "resolved": _resolved_method_device(method, device),
        "index": str(index_dir) if index_dir is not None else None,
        "plots": plots,
        "featgraph_version": __version__,
    }
    return {
        "kind": SUMMARY_KIND,
        "config": config,
        "saes": saes,
        "pairs": pairs,
        "trees": _tree_summary(features),
    }


def _resolved_method_device(method: str, device: str) -> dict[str, str]:
    """What "auto" became, as featgraph.matching resolves it."""
    from featgraph.matching import resolve_method_device

    m, dev = resolve_method_device(method, device)
    return {"method": m, "device": dev}


def _tree_summary(features: pl.DataFrame) -> dict[str, Any]:
    """How many splitting trees, how many widths each spans, and the largest (most features, lowest id)."""
    trees = (
        features.filter(pl.col("tree").is_not_null())
        .group_by("tree", maintain_order=True)
        .agg(
            pl.len().alias("features"),
            pl.col("sae").n_unique().alias("widths"),
            pl.format("{}:{}", pl.col("sae").first(), pl.col("feature").first()).alias("first_feature"),
        )
    )
    spans = trees.group_by("widths").len().sort("widths")
    out: dict[str, Any] = {
        "count": trees.height,
        "by_widths_spanned": {str(w): int(n) for w, n in spans.iter_rows()},
        "largest": None,
    }
    if trees.height:
        top = trees.sort(["features", "tree"], descending=[True, False]).row(0, named=True)
        out["largest"] = {
            "tree": top["tree"],
            "features": top["features"],
            "first_feature": top["first_feature"],
        }
    return out
