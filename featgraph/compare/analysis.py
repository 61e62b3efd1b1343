"""The comparison of two SAEs A and B from their unit decoder rows (and, optionally, activations): every number
``featgraph compare`` writes, computed here and nowhere else.

* Both directions (:func:`featgraph.matching.match_pair`, exact): every feature of A gets its max cos to B and the
  argmax, and every feature of B its max cos to A. A feature of A is *lost* when no feature of B is above tau
  (``max cos <= tau``, :func:`featgraph.matching.is_novel`), a feature of B *novel* when none of A is. Zero
  decoder rows have no direction: they are neither lost nor novel, and are counted apart.
* The one-to-one assignment maximising the total decoder cos (:func:`featgraph.compare.assignment.assign`,
  certified optimal), PW-MCC (mean cos of its ``min(n_a, n_b)`` pairs) and the shared share at tau (share of
  those pairs with cos > tau).
* Split-aware many-to-many families: the connected components of the edges cos > tau between A and B
  (:func:`featgraph.graph.families_from_edges`, A on the "small" side), so a 1:n split is a family, not n-1
  orphans; kinds copy (1:1), split (1 A : n B), merge (n A : 1 B), n:m.
* With activations: the pass of :func:`featgraph.compare.act_similarity.activation_similarity` (Jaccard, Pearson,
  masked cos of every pair, one sparse pass) and how decoder cos predicts them
  (:func:`~featgraph.compare.act_similarity.decoder_vs_activation`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from featgraph.compare.act_similarity import ActSimilarity, DecoderAgreement
from featgraph.compare.assignment import Assignment
from featgraph.graph import Family, kind_counts
from featgraph.matching.core import PairMatch, is_novel


@dataclasses.dataclass
class CompareAnalysis:
    """Everything computed for one (A, B) pair; indices are feature ids (decoder rows)."""

    names: tuple[str, str]
    tau: float
    norms_a: np.ndarray  # float32 [n_a]
    norms_b: np.ndarray  # float32 [n_b]
    a_to_b: PairMatch  # per A feature: max cos to B, argmax in B; edges (edge_large = A, edge_small = B)
    b_to_a: PairMatch  # per B feature: max cos to A, argmax in A
    assignment: Assignment
    families: list[Family]  # small_features = A ids, large_features = B ids
    sim: ActSimilarity | None = None
    agreement: DecoderAgreement | None = None
    coactive: tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]] | None = None  # i, j, dec, metrics

    @property
    def n_a(self) -> int:
        return int(self.norms_a.size)

    @property
    def n_b(self) -> int:
        return int(self.norms_b.size)

    @property
    def edge_a(self) -> np.ndarray:
        return self.a_to_b.edge_large

    @property
    def edge_b(self) -> np.ndarray:
        return self.a_to_b.edge_small

    def lost(self) -> np.ndarray:
        """Features of A (nonzero rows) with no feature of B above tau."""
        return np.flatnonzero(is_novel(self.a_to_b.max_cos, self.tau) & (self.norms_a != 0))

    def novel(self) -> np.ndarray:
        """Features of B (nonzero rows) with no feature of A above tau."""
        return np.flatnonzero(is_novel(self.b_to_a.max_cos, self.tau) & (self.norms_b != 0))

    def pair_metrics(self, i: np.ndarray, j: np.ndarray) -> dict[str, np.ndarray] | None:
        """Activation metrics and counts of pairs ``(i[k] of A, j[k] of B)``; None without activations."""
        if self.sim is None:
            return None
        out = self.sim.metrics(i, j)
        c, _ = self.sim._lookup(np.asarray(i, np.int64), np.asarray(j, np.int64))
        out["co_count"] = c.astype(np.int64)
        return out

    def summary(self) -> dict[str, Any]:
        """The headline numbers (JSON-ready: NaN becomes None)."""
        a, tau = self.assignment, self.tau
        nz_a, nz_b = int(np.sum(self.norms_a != 0)), int(np.sum(self.norms_b != 0))
        lost, novel = self.lost().size, self.novel().size
        out: dict[str, Any] = {
            "tau": tau,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "zero_rows_a": self.n_a - nz_a,
            "zero_rows_b": self.n_b - nz_b,
            "a_to_b": {"shared": nz_a - lost, "lost": lost, "lost_share": _share(lost, nz_a),
                       "mean_max_cos": _mean(self.a_to_b.max_cos[self.norms_a != 0])},
            "b_to_a": {"shared": nz_b - novel, "novel": novel, "novel_share": _share(novel, nz_b),
                       "mean_max_cos": _mean(self.b_to_a.max_cos[self.norms_b != 0])},
            "assignment": {
                "pairs": int(a.cos.size),
                "total_cos": _num(a.total),
                "pw_mcc": _num(a.pw_mcc),
                "shared_pairs": int(np.sum(a.cos > tau)),
                "shared_share": _num(a.shared_share(tau)),
                "gap_bound": _num(a.gap_bound),
                "rounds": a.rounds,
            },
            "edges": int(self.edge_a.size),
            "families": len(self.families),
            "families_by_kind": kind_counts(self.families),
            "a_in_families": int(sum(len(f.small_features) for f in self.families)),
            "b_in_families": int(sum(len(f.large_features) for f in self.families)),
        }
        if self.sim is not None and self.agreement is not None:
            s, g = self.sim, self.agreement
            m = self.pair_metrics(a.rows, a.cols)
            out["activations"] = {
                "n_tokens": s.n_tokens,
                "dead_a": int(np.sum(s.count_a == 0)),
                "dead_b": int(np.sum(s.count_b == 0)),
                "coactive_pairs": s.n_pairs,
                "assigned_pairs_mean": {k: _mean(m[k]) for k in ("jaccard", "pearson", "masked_cos")},
                # over the matched pairs only: does a higher decoder cos mean more similar firing? (the co-active
                # Spearman below is dominated by the many unrelated pairs that co-fire by chance)
                "spearman_assigned_pairs": {k: _spearman(a.cos, m[k]) for k in ("jaccard", "pearson", "masked_cos")},
                "spearman_decoder_cos_vs": {k: _num(v) for k, v in sorted(g.spearman.items())},
                "act_metric": g.act_metric,
                "act_threshold": g.act_threshold,
                "decoder_edges": g.n_decoder_edges,
                "activation_edges": g.n_activation_edges,
                "both": g.n_both,
                "precision": _num(g.precision),
                "recall": _num(g.recall),
            }
        return out


def _num(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _share(n: int, d: int) -> float | None:
    return round(n / d, 6) if d else None


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    ok = np.isfinite(y)
    return _num(spearmanr(x[ok], y[ok]).statistic) if ok.sum() > 2 else None


def _mean(v: np.ndarray) -> float | None:
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def compare_units(
    a_unit: np.ndarray,
    b_unit: np.ndarray,
    *,
    names: tuple[str, str] = ("A", "B"),
    norms: tuple[np.ndarray, np.ndarray] | None = None,
    tau: float = 0.7,
    method: str = "auto",
    device: str = "auto",
    progress: bool = False,
) -> CompareAnalysis:
    """The decoder side of the comparison from unit rows (:func:`featgraph.matching.normalize_rows`)."""
    from featgraph.compare.assignment import assign
    from featgraph.config import check_tau
    from featgraph.errors import ShapeMismatchError
    from featgraph.graph import families_from_edges
    from featgraph.matching import match_pair

    tau = check_tau(tau)
    if a_unit.ndim != 2 or b_unit.ndim != 2 or a_unit.shape[1] != b_unit.shape[1]:
        raise ShapeMismatchError(f"d_in differs: {names[0]} has decoder {list(a_unit.shape)}, {names[1]} has "
                                 f"{list(b_unit.shape)}")
    if norms is None:
        norms = tuple(np.linalg.norm(u.astype(np.float64), axis=1).astype(np.float32) for u in (a_unit, b_unit))
    a_to_b = match_pair(b_unit, a_unit, tau, method=method, device=device, progress=progress)
    b_to_a = match_pair(a_unit, b_unit, tau, method=method, device=device, progress=progress)
    asg = assign(a_unit, b_unit, method=method, device=device)
    fams = families_from_edges(a_to_b.edge_large, a_to_b.edge_small)
    return CompareAnalysis(tuple(names), tau, np.asarray(norms[0]), np.asarray(norms[1]), a_to_b, b_to_a, asg,
                           fams)


def add_activations(
    an: CompareAnalysis,
    batches: Iterable,
    sae_a: Any,
    sae_b: Any,
    a_unit: np.ndarray,
    b_unit: np.ndarray,
    *,
    act_threshold: float = 0.5,
) -> CompareAnalysis:
    """Fill ``an.sim``, ``an.agreement`` and ``an.coactive`` from one pass over ``batches`` (``[n, d_in]``)."""
    from featgraph.compare.act_similarity import activation_similarity, coactive_decoder_cos, decoder_vs_activation

    an.sim = activation_similarity(batches, sae_a, sae_b)
    an.coactive = coactive_decoder_cos(an.sim, a_unit, b_unit)  # once: as large as the co-active pairs
    an.agreement = decoder_vs_activation(an.sim, a_unit, b_unit, tau=an.tau, act_threshold=act_threshold,
                                         coactive=an.coactive)
    return an
