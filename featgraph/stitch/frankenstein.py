"""Frankenstein's SAE: stitch the novel features of a whole ladder into one SAE, then retrain its decoder.

Assembly, as in the post ("Frankenstein's SAE"): start from the smallest SAE; for each next width, in
ascending order, add every feature whose max decoder cos to *everything already in the model* (all features
accumulated so far, not only the previous SAE) is strictly below ``tau``; repeat. Added features are moved
with :func:`featgraph.stitch.hybrid.hybrid`, so each keeps its own encoder and fires exactly as in its own SAE (its
encoder bias folded onto the base SAE's ``b_dec``).

Decoder retraining: the encoder is frozen, so every feature's activation on every token is fixed and the best
``W_dec`` and ``b_dec`` are a least-squares problem. By default it is solved exactly (ridge chosen on validation
tokens, :mod:`featgraph.stitch.lstsq`); :func:`retrain_decoder` is the older Adam fit on the reconstruction MSE,
kept as ``decoder_fit="adam"`` (on the bundled ladder it stopped 3-13% above the exact optimum, enough to flip a
comparison). Two decisions, shared by both:

- *No unit-norm constraint on decoder rows.* With the activations fixed, the L1 penalty of the original
  training is a constant, so row norms no longer trade off against sparsity; they only scale each feature's
  contribution, and letting them shrink is exactly how retraining undoes the over-prediction the post
  describes (novel features that still share directions up to cos 0.7 add up too much). A unit-norm constraint
  would forbid that fix.
- *b_dec is trained, and the encoder is kept exactly as it was.* ``b_dec`` is also the pre-encoder bias, so
  after training we fold its change into ``b_enc`` (``b_enc += (b_dec_new - b_dec_old) @ W_enc``, float64);
  the encoder's pre-activations, and so the features' activations, are unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from featgraph.config import check_tau
from featgraph.errors import ConfigError, ShapeMismatchError
from featgraph.io.files import atomic_write, write_json
from featgraph.ladder import width_order
from featgraph.matching import match_saes
from featgraph.sae import Sae, SaeConfig
from featgraph.stitch import figures as plots
from featgraph.stitch.batches import ActivationsLike
from featgraph.stitch.evaluator import POINT_COLUMNS
from featgraph.stitch.hybrid import check_stitchable, hybrid
from featgraph.tables import ORIGIN_SCHEMA

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Assembly:
    """The result of :func:`assemble`: one SAE per stage (stage 0 = the smallest SAE) and each feature's
    origin."""

    stages: list[Sae]  #: stages[k] holds the features taken from the first k+1 SAEs
    origin: pl.DataFrame  #: one row per feature of the final SAE (see ORIGIN_SCHEMA)
    names: list[str]  #: source SAE names, ascending width

    @property
    def sae(self) -> Sae:
        return self.stages[-1]


def assemble(
    saes: Sequence[Sae], names: Sequence[str] | None = None, *, tau: float = 0.7, progress: bool = True
) -> Assembly:
    """Iterative assembly across a ladder (see module docstring); ``saes`` in any order, sorted by width
    here."""
    if not saes:
        raise ConfigError("frankenstein needs at least one SAE")
    tau = check_tau(tau)
    names = list(names) if names is not None else [f"sae{i}" for i in range(len(saes))]
    if len(names) != len(saes) or len(set(names)) != len(names):
        raise ConfigError(f"need one distinct name per SAE, got {names} for {len(saes)} SAEs")
    order = width_order([s.n_features for s in saes], names)
    saes = [saes[i] for i in order]
    names = [names[i] for i in order]
    for s, n in zip(saes[1:], names[1:], strict=False):
        try:
            check_stitchable(saes[0], s)
        except Exception as e:
            raise type(e)(f"{n}: {e}") from e
    current = saes[0]
    stages = [current]
    rows = {
        "feature": list(range(current.n_features)),
        "source": [names[0]] * current.n_features,
        "source_feature": list(range(current.n_features)),
        "stage": [0] * current.n_features,
        "max_cos_at_add": [float("nan")] * current.n_features,
    }
    for k, (donor, dname) in enumerate(zip(saes[1:], names[1:], strict=False), start=1):
        match = match_saes(current, donor, tau, progress=progress)
        take = np.flatnonzero(match.max_cos < tau)  # strictly below tau to everything already in the model
        log.info(
            "frankenstein stage %d: %d of %d features of %s added (max cos < %g)",
            k,
            take.size,
            donor.n_features,
            dname,
            tau,
        )
        start = current.n_features
        current = hybrid(current, donor, add=take, name=f"frankenstein stage {k}")
        stages.append(current)
        rows["feature"] += list(range(start, start + take.size))
        rows["source"] += [dname] * take.size
        rows["source_feature"] += take.tolist()
        rows["stage"] += [k] * take.size
        rows["max_cos_at_add"] += match.max_cos[take].tolist()
    return Assembly(stages=stages, origin=pl.DataFrame(rows, schema=ORIGIN_SCHEMA), names=names)


@dataclasses.dataclass
class RetrainResult:
    sae: Sae
    losses: list[float]  #: training MSE of every step, before that step's update
    n_tokens: int


def _batches_forever(acts: ActivationsLike, batch_size: int, seed: int):
    """Shuffled batches, epoch after epoch (a new seed each epoch)."""
    epoch = 0
    while True:
        if hasattr(acts, "iter_batches"):
            yield from acts.iter_batches(batch_size, shuffle=True, seed=seed + epoch)
        else:
            x = torch.as_tensor(acts)
            g = torch.Generator().manual_seed(seed + epoch)
            perm = torch.randperm(x.shape[0], generator=g)
            for i in range(0, x.shape[0], batch_size):
                yield x[perm[i : i + batch_size]]
        epoch += 1


def retrain_decoder(
    sae: Sae,
    acts: ActivationsLike,
    *,
    n_tokens: int,
    lr: float = 1e-3,
    batch_size: int = 1024,
    seed: int = 0,
    progress: bool = True,
) -> RetrainResult:
    """Train ``W_dec`` and ``b_dec`` with Adam for ``n_tokens`` tokens, encoder frozen (see module
    docstring)."""
    if n_tokens < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError(f"need n_tokens >= 1, batch_size >= 1 and lr > 0, got {n_tokens}, {batch_size}, {lr}")
    if sae.cfg.architecture == "topk":
        raise ConfigError("retrain_decoder expects a relu or jumprelu SAE (a frankenstein SAE is never TopK)")
    torch.manual_seed(seed)
    frozen = Sae.from_tensors({k: v.float() for k, v in sae.tensors().items()}, sae.cfg, where="retrain")
    frozen.requires_grad_(False)
    W = frozen.W_dec.detach().clone().requires_grad_(True)
    b = frozen.b_dec.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([W, b], lr=lr)
    losses: list[float] = []
    seen = 0
    bar = tqdm(total=n_tokens, unit="tok", desc="retrain decoder", disable=not progress)
    for x in _batches_forever(acts, batch_size, seed):
        x = torch.as_tensor(x).float()
        if x.ndim != 2 or x.shape[1] != sae.d_in:
            raise ShapeMismatchError(f"activations have shape {list(x.shape)}, expected [n, {sae.d_in}]")
        x = x[: n_tokens - seen]
        with torch.no_grad():
            f = frozen.encode(x)  # fixed: the encoder and its input bias are frozen
        loss = ((f @ W + b - x) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        seen += x.shape[0]
        bar.update(x.shape[0])
        if seen >= n_tokens:
            break
    bar.close()
    with torch.no_grad():
        t = {k: v.clone() for k, v in frozen.tensors().items()}
        t["W_dec"] = W.detach().to(sae.W_dec.dtype)
        t["b_dec"] = b.detach().to(sae.W_dec.dtype)
        if sae.cfg.apply_b_dec_to_input:  # keep pre-activations unchanged under the new input bias
            shift = (b.detach().double() - frozen.b_dec.double()) @ frozen.W_enc.double()
            t["b_enc"] = (frozen.b_enc.double() + shift).to(sae.W_dec.dtype)
    extra = dict(sae.cfg.extra) if isinstance(sae.cfg.extra, dict) else {}
    extra["decoder_retrained"] = {"n_tokens": seen, "lr": lr, "batch_size": batch_size, "seed": seed}
    cfg = SaeConfig(**{**dataclasses.asdict(sae.cfg), "extra": extra})
    return RetrainResult(sae=Sae.from_tensors(t, cfg, where="retrained"), losses=losses, n_tokens=seen)


# -- the analysis: assemble, retrain, compare ---------------------------------------------------------------
@dataclasses.dataclass
class FrankensteinAnalysis:
    assembly: Assembly
    retrained: list[Sae]  #: one per stage (stage 0 too: its decoder is retrained like the others)
    table: pl.DataFrame  #: kind, name, width, l0, mse, explained_variance, CE recovered
    losses: list[list[float]]  #: per stage: Adam's loss per step, or [fitting MSE] of the exact decoder
    decoder_fit: str = "adam"  #: "exact" (ridge least squares) or "adam"
    fits: list[dict[str, Any]] = dataclasses.field(default_factory=list)  #: exact fits: width, ridge, MSEs
    intervals: dict[str, Any] | None = None  #: bootstrap over held-out contexts (featgraph.stitch.bootstrap)

    def figures(self) -> dict[str, Figure]:
        return {"frankenstein": plots.frankenstein_comparison(self.table)}


def analyze_frankenstein(
    saes: Sequence[Sae],
    names: Sequence[str],
    *,
    train_acts: ActivationsLike,
    evaluator: Any,
    tau: float = 0.7,
    n_tokens: int = 200_000,
    lr: float = 1e-3,
    batch_size: int = 1024,
    seed: int = 0,
    retrain_ladder: bool = True,
    progress: bool = True,
    decoder_fit: str = "exact",
    ridges: Sequence[float] | None = None,
    val_fraction: float = 0.1,
    n_boot: int = 1000,
) -> FrankensteinAnalysis:
    """Assemble, retrain every stage's decoder on ``train_acts``, and evaluate everything with ``evaluator``.

    ``decoder_fit``: ``"exact"`` (default) solves each decoder as ridge least squares on the first ``n_tokens`` of
    ``train_acts`` less the last ``val_fraction`` of them, which choose the ridge (:mod:`featgraph.stitch.lstsq`);
    ``"adam"`` is the older iterative fit (``lr``, ``batch_size``, ``seed``), which stopped 3-13% above that optimum
    on the bundled ladder. The stages are nested (stage k's encoder is the first features of stage k+1's), so one
    pass over the final stage gives every stage's normal equations.

    With ``retrain_ladder`` the ladder's own SAEs get the same decoder retraining (same tokens, same fit) as a
    control: retraining alone can lower an SAE's MSE (an L1-trained decoder is shrunk), and only this control
    separates the gain from stitching from the gain from retraining. Stage 0 *is* the smallest SAE, so its row
    is reused. ``intervals``: 95% bootstrap intervals over the evaluation contexts (``n_boot`` replicates, seeded by
    ``seed``) of every row's MSE and of each retrained Frankenstein stage minus each retrained ladder SAE.
    """
    if decoder_fit not in ("exact", "adam"):
        raise ConfigError(f"decoder_fit must be 'exact' or 'adam', got {decoder_fit!r}")
    asm = assemble(saes, names, tau=tau, progress=progress)
    by_name = dict(zip(names, saes, strict=False))
    rows = [dict(evaluator.row(by_name[n], n), kind="ladder") for n in asm.names]
    fits: list[dict[str, Any]] = []
    if decoder_fit == "exact":
        from featgraph.stitch.lstsq import RIDGES, decoder_moments, fit_exact_decoder, split_fit_val

        fit, val = split_fit_val(train_acts, n_tokens, val_fraction)
        grid = tuple(ridges) if ridges is not None else RIDGES
        final = decoder_moments(asm.sae, fit, progress=progress, desc="decoder moments (all stages)")

        def refit(sae: Sae, stage_moments: Any = None) -> tuple[Sae, list[float]]:
            if stage_moments is None and _is_prefix(sae, asm.sae):
                stage_moments = final.prefix(sae.n_features)
            res = fit_exact_decoder(sae, fit, val, ridges=grid, moments=stage_moments, progress=progress)
            fits.append({"width": sae.n_features, "ridge": res.ridge, "train_mse": res.train_mse,
                         "val_mse": res.val_mse, "n_fit": res.n_fit, "n_val": res.n_val})
            return res.sae, [res.train_mse]
    else:

        def refit(sae: Sae, stage_moments: Any = None) -> tuple[Sae, list[float]]:
            res = retrain_decoder(sae, train_acts, n_tokens=n_tokens, lr=lr, batch_size=batch_size, seed=seed,
                                  progress=progress)
            return res.sae, res.losses

    retrained, losses = [], []
    for k, stage in enumerate(asm.stages):
        label = f"frank-{k + 1}sae"
        rows.append(dict(evaluator.row(stage, label), kind="frankenstein"))
        sae_k, loss_k = refit(stage)
        retrained.append(sae_k)
        losses.append(loss_k)
        rows.append(dict(evaluator.row(sae_k, label + "-retrained"), kind="frankenstein (retrained)"))
    if retrain_ladder:
        control = "ladder (decoder retrained)"
        for k, n in enumerate(asm.names):
            if k == 0:
                rows.append(dict(evaluator.row(retrained[0], f"{n}-retrained"), kind=control))
                continue
            sae_n, _ = refit(by_name[n])
            rows.append(dict(evaluator.row(sae_n, f"{n}-retrained"), kind=control))
    cols = ("kind", *POINT_COLUMNS)
    table = pl.DataFrame([{c: r[c] for c in cols} for r in rows])
    intervals = None
    if n_boot and getattr(evaluator, "per_context", None):  # the evaluation pass kept per-context sums
        from featgraph.stitch.bootstrap import comparison_intervals

        intervals = comparison_intervals(rows, evaluator.per_context, n_boot=n_boot, seed=seed,
                                         unit=evaluator.context_unit)
    return FrankensteinAnalysis(asm, retrained, table, losses, decoder_fit, fits, intervals)


def _is_prefix(sae: Sae, final: Sae) -> bool:
    """True when ``sae``'s encoder is the first features of ``final``'s (an earlier stage of one assembly), so its
    decoder moments are a prefix of ``final``'s."""
    k = sae.n_features
    return (k <= final.n_features and sae.cfg.apply_b_dec_to_input == final.cfg.apply_b_dec_to_input
            and sae.cfg.architecture == final.cfg.architecture
            and torch.equal(sae.W_enc, final.W_enc[:, :k]) and torch.equal(sae.b_enc, final.b_enc[:k])
            and torch.equal(sae.b_dec, final.b_dec)
            and (sae.threshold is None) == (final.threshold is None)
            and (sae.threshold is None or torch.equal(sae.threshold, final.threshold[:k])))


def write_frankenstein_files(a: FrankensteinAnalysis, out: Path, config: dict[str, Any] | None = None) -> Path:
    """The final retrained SAE (featgraph and SAELens formats), per-stage origin, comparison table and
    figure, into a folder the caller owns."""
    from featgraph.formats import save_saelens
    from featgraph.tables import write_parquet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = a.retrained[-1]
    final.save(out / "sae")
    save_saelens(final, out / "sae_saelens")
    a.assembly.sae.save(out / "sae_before_retraining")
    write_parquet(a.assembly.origin, out / "origin.parquet")
    write_parquet(a.table, out / "comparison.parquet")
    for name, png in plots.pngs(a).items():
        atomic_write(out / f"{name}.png", lambda p, png=png: p.write_bytes(png))
    final_row = a.table.filter(pl.col("kind") == "frankenstein (retrained)").row(-1, named=True)
    write_json(
        out / "metrics.json",
        {
            "final": final_row,
            "stage_widths": [s.n_features for s in a.assembly.stages],
            "sources": a.assembly.names,
            "decoder_fit": a.decoder_fit,
            **({"exact_fits": a.fits} if a.decoder_fit == "exact" else {
                "loss_first": [lo[0] for lo in a.losses],
                "loss_last": [float(np.mean(lo[-10:])) for lo in a.losses]}),
        },
    )
    if a.intervals is not None:
        write_json(out / "summary.json", {"comparison": a.table.to_dicts(), "intervals": a.intervals})
    if config is not None:
        write_json(out / "config.json", config)
    return out


