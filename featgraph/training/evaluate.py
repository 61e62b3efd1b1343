"""SAE metrics as GUIDE.md defines them: reconstruction on activations, CE with the SAE spliced into a model.

- ``mse``: per token, sum over d of (x - x_hat)^2, averaged over tokens (``mse_per_dim`` = that / d);
- ``explained_variance``: 1 - E||x - x_hat||^2 / sum_d Var(x_d), variance about the mean;
- ``l0``: mean number of nonzero features per token; ``dead_features``: features never active on the eval set;
- ``ce_clean`` / ``ce_sae`` / ``ce_zero`` / ``ce_mean``: next-token CE (nats) as a ratio of means over all
  eval tokens, with the hook site left alone, replaced by the SAE's reconstruction, zeroed, or set to its mean
  over the eval tokens and positions; ``ce_recovered_{zero,mean}`` = (ce_abl - ce_sae) / (ce_abl - ce_clean).

BOS: with ``exclude_bos`` (default) and contexts that start with BOS, position 0 is left untouched by every
intervention and left out of the mean, as in training (the BOS residual is an attention sink the SAE never
saw).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from featgraph.errors import ConfigError, ShapeMismatchError
from featgraph.sae import Sae
from featgraph.tables import METRICS_COLUMNS as TABLE_COLUMNS  # the eval table's schema lives in tables

log = logging.getLogger(__name__)

HEALTH_COLUMNS = ("dead_share", "rare_share", "dense_share", "moved_share", "useless_share")


def _as_batches(acts: Any, batch_size: int) -> Iterable[torch.Tensor]:
    from featgraph.activations.store import ActivationStore

    if isinstance(acts, (str, Path)):
        acts = ActivationStore(acts)
    if isinstance(acts, ActivationStore):
        return acts.iter_batches(batch_size, shuffle=False)
    if isinstance(acts, torch.Tensor):
        flat = acts.reshape(-1, acts.shape[-1])
        return (flat[i : i + batch_size] for i in range(0, len(flat), batch_size))
    return (a.reshape(-1, a.shape[-1]) for a in acts)


@torch.no_grad()
def reconstruction_metrics(sae: Sae, acts: Any, *, batch_size: int = 4096, context_rows: int | None = None,
                           context_phase: int = 0) -> dict[str, Any]:
    """MSE, explained variance, L0 and dead features of ``sae`` on ``acts``.

    ``acts``: a tensor ``[..., d]``, an iterable of such tensors, or an activation store (folder or object).
    Sums are accumulated in float64 so the result does not depend on ``batch_size`` beyond rounding.
    ``context_rows``: when given, the same pass also returns ``sse_per_context`` and ``n_per_context`` (float64
    arrays; row ``i`` belongs to context ``(i + context_phase) // context_rows``), the sufficient statistics of a
    bootstrap over contexts (:mod:`featgraph.stitch.bootstrap`).
    """
    d = sae.d_in
    n = 0
    sum_x = torch.zeros(d, dtype=torch.float64)
    sum_x2 = torch.zeros(d, dtype=torch.float64)
    sum_err = torch.zeros(d, dtype=torch.float64)
    sum_l0 = 0.0
    fired = torch.zeros(sae.n_features, dtype=torch.bool)
    param = sae.W_dec
    ctx_sse: list[np.ndarray] = []
    for x in _as_batches(acts, batch_size):
        if x.shape[-1] != d:
            raise ShapeMismatchError(f"activations have d={x.shape[-1]}, the SAE expects d_in={d}")
        x = x.to(param.device, param.dtype)
        out = sae(x)
        active = out.acts != 0
        x64 = x.double()
        sum_x += x64.sum(0).cpu()
        sum_x2 += x64.pow(2).sum(0).cpu()
        err = (x64 - out.x_hat.double()).pow(2)
        sum_err += err.sum(0).cpu()
        if context_rows:
            ctx_sse.append(err.sum(1).cpu().numpy())
        sum_l0 += float(active.sum())
        fired |= active.any(0).cpu()
        n += len(x)
    if n == 0:
        raise ConfigError("no activations to evaluate (empty tensor or store)")
    mse = float(sum_err.sum()) / n
    total_var = float((sum_x2 / n - (sum_x / n).pow(2)).sum())
    per_context = {}
    if context_rows:
        ids = (np.arange(n) + context_phase) // context_rows
        per_context = {"sse_per_context": np.bincount(ids, weights=np.concatenate(ctx_sse)),
                       "n_per_context": np.bincount(ids).astype(np.float64)}
    return per_context | {
        "mse": mse,
        "mse_per_dim": mse / d,
        "explained_variance": 1.0 - mse / total_var if total_var > 0 else float("nan"),
        "l0": sum_l0 / n,
        "dead_features": int((~fired).sum()),
        "n_tokens": n,
    }


def _first_position(model: Any, tokens: torch.Tensor, exclude_bos: bool) -> int:
    from featgraph.activations.model import bos_token_id

    return int(exclude_bos and bool((tokens[:, 0] == bos_token_id(model)).all()))


@torch.no_grad()
def _ce(
    model: Any,
    tokens: torch.Tensor,
    hook_name: str,
    edit: Callable[[torch.Tensor], torch.Tensor] | None,
    start: int,
    batch_size: int,
    desc: str | None = None,
) -> tuple[float, int]:
    """(sum of per-token CE, number of predicted tokens), positions ``start:`` of the site edited."""

    def hook(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        out = act.clone()
        out[:, start:] = edit(act[:, start:]).to(act.dtype)
        return out

    total, count = 0.0, 0
    for lo in tqdm(range(0, len(tokens), batch_size), desc=desc, disable=desc is None, leave=False):
        batch = tokens[lo : lo + batch_size]
        if edit is None:
            loss = model(batch, return_type="loss", loss_per_token=True)
        else:
            loss = model.run_with_hooks(
                batch, fwd_hooks=[(hook_name, hook)], return_type="loss", loss_per_token=True
            )
        total += float(loss.double().sum())
        count += loss.numel()
    return total, count


@torch.no_grad()
def ce_baselines(
    model: Any,
    tokens: torch.Tensor,
    hook_name: str,
    *,
    batch_size: int = 8,
    exclude_bos: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """CE clean, zero-ablated and mean-ablated (they do not depend on the SAE: compute once per ladder)."""
    from featgraph.activations import hook_activations
    from featgraph.activations.model import check_hook_name

    check_hook_name(model, hook_name)
    tokens = _check_tokens(tokens)
    start = _first_position(model, tokens, exclude_bos)
    acc, n = None, 0
    for lo in range(0, len(tokens), batch_size):
        a = hook_activations(model, tokens[lo : lo + batch_size], hook_name)[:, start:].double()
        acc = a.sum((0, 1)) if acc is None else acc + a.sum((0, 1))
        n += a.shape[0] * a.shape[1]
    mean = (acc / n).float()
    def run(edit: Callable[[torch.Tensor], torch.Tensor] | None, what: str) -> tuple[float, int]:
        return _ce(model, tokens, hook_name, edit, start, batch_size, f"CE {what}" if progress else None)

    (clean, count), (zero, _), (meanab, _) = (
        run(None, "clean"), run(torch.zeros_like, "zero"), run(lambda a: mean.expand_as(a), "mean")
    )
    return {
        "ce_clean": clean / count,
        "ce_zero": zero / count,
        "ce_mean": meanab / count,
        "mean_activation": mean,
        "first_position": start,
        "n_tokens_ce": count,
    }


def _check_tokens(tokens: Any) -> torch.Tensor:
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ShapeMismatchError(f"tokens must be [batch, positions >= 2], got shape {list(tokens.shape)}")
    return tokens


def recovered(ce_ablated: float, ce_sae: float, ce_clean: float) -> float:
    """(ce_ablated - ce_sae) / (ce_ablated - ce_clean); NaN when the ablation does not change the loss."""
    gap = ce_ablated - ce_clean
    return (ce_ablated - ce_sae) / gap if gap != 0 else float("nan")


@torch.no_grad()
def ce_metrics(
    sae: Sae,
    model: Any,
    tokens: torch.Tensor,
    hook_name: str | None = None,
    *,
    batch_size: int = 8,
    exclude_bos: bool = True,
    baselines: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """CE clean / SAE spliced / zero / mean ablated and both CE-recovered scores on ``tokens`` ``[B, T]``."""
    hook_name = hook_name or sae.cfg.hook_name
    if not hook_name:
        raise ConfigError("no hook_name given and the SAE's cfg has none")
    d_model = int(model.cfg.d_model)
    if sae.d_in != d_model:
        raise ShapeMismatchError(f"SAE d_in={sae.d_in} but {hook_name} of the model has d_model={d_model}")
    tokens = _check_tokens(tokens)
    base = baselines or ce_baselines(model, tokens, hook_name, batch_size=batch_size, exclude_bos=exclude_bos)
    param = sae.W_dec
    sae_sum, count = _ce(
        model, tokens, hook_name, lambda a: sae(a.to(param.dtype)).x_hat, base["first_position"], batch_size
    )
    ce_sae = sae_sum / count
    return {
        "ce_clean": base["ce_clean"],
        "ce_sae": ce_sae,
        "ce_zero": base["ce_zero"],
        "ce_mean": base["ce_mean"],
        "ce_recovered_zero": recovered(base["ce_zero"], ce_sae, base["ce_clean"]),
        "ce_recovered_mean": recovered(base["ce_mean"], ce_sae, base["ce_clean"]),
        "n_tokens_ce": count,
    }


def evaluate_sae(
    sae: Sae,
    *,
    acts: Any,
    model: Any = None,
    tokens: torch.Tensor | None = None,
    hook_name: str | None = None,
    name: str | None = None,
    batch_size: int = 4096,
    model_batch_size: int = 8,
    baselines: dict[str, Any] | None = None,
    health: bool = True,
    context_rows: int | None = None,
    context_phase: int = 0,
) -> dict[str, Any]:
    """Reconstruction metrics, plus CE metrics when ``model`` and ``tokens`` are given (else NaN).

    With ``health`` the training-health shares of :func:`featgraph.training.health.sae_health` on ``acts`` are added
    (``moved_share`` is NaN for SAEs without a recorded init) and ``undertrained`` says why the SAE looks
    under-trained ("" when it does not). ``context_rows``: also the per-context sums of
    :func:`reconstruction_metrics` (arrays, for a bootstrap; callers that build tables drop them).
    """
    row: dict[str, Any] = {
        "name": name or "sae",
        "hook_name": hook_name or sae.cfg.hook_name or "",
        "width": sae.n_features,
        "architecture": sae.cfg.architecture,
    }
    row |= reconstruction_metrics(sae, acts, batch_size=batch_size, context_rows=context_rows,
                                  context_phase=context_phase)
    if model is not None and tokens is not None:
        row |= ce_metrics(
            sae,
            model,
            tokens,
            hook_name or sae.cfg.hook_name,
            batch_size=model_batch_size,
            baselines=baselines,
        )
    else:
        row |= {
            k: float("nan")
            for k in ("ce_clean", "ce_sae", "ce_zero", "ce_mean", "ce_recovered_zero", "ce_recovered_mean")
        } | {"n_tokens_ce": 0}
    row |= {c: float("nan") for c in (*HEALTH_COLUMNS, "random_like_share")} | {"undertrained": ""}
    if health:
        from featgraph.training.health import sae_health

        h = sae_health(sae, _health_acts(acts), batch_size=batch_size)
        row |= {c: float("nan") if h[c] is None else float(h[c]) for c in HEALTH_COLUMNS}
        row["undertrained"] = "; ".join(h["undertrained"])
    return row


def _health_acts(acts: Any) -> Any:
    """``acts`` in a form :func:`featgraph.activations.batches.iter_acts` reads (a store folder is opened)."""
    from featgraph.activations.store import ActivationStore

    if isinstance(acts, (str, Path)):
        return ActivationStore(acts)
    if isinstance(acts, torch.Tensor):
        return acts.reshape(-1, acts.shape[-1])
    return acts


def evaluate_ladder(
    saes: Sequence[Sae | str | Path],
    *,
    acts: Any,
    model: Any = None,
    tokens: torch.Tensor | None = None,
    hook_name: str | None = None,
    names: Sequence[str] | None = None,
    model_batch_size: int = 8,
    progress: bool = True,
    health: bool = True,
) -> Any:
    """A polars table (columns :data:`TABLE_COLUMNS`), one row per SAE, sorted by width then name.

    CE baselines (clean, zero, mean) are computed once and shared: they depend only on the model and tokens.
    ``random_like_share`` compares each SAE with the widest SAE of a strictly smaller width (NaN for the
    narrowest): the share of its features whose max decoder cos to that SAE stays below the 99th percentile
    that random unit vectors reach.
    """
    import polars as pl

    from featgraph.formats import load_sae

    loaded = [(s if isinstance(s, Sae) else load_sae(s)) for s in saes]
    names = (
        list(names)
        if names
        else [Path(s).name if not isinstance(s, Sae) else f"sae{i}" for i, s in enumerate(saes)]
    )
    hooks = {hook_name or s.cfg.hook_name for s in loaded}
    baselines = None
    if model is not None and tokens is not None:
        if len(hooks) != 1 or None in hooks:
            raise ConfigError(
                f"evaluating a ladder on a model needs one hook_name; the SAEs have {sorted(map(str, hooks))}"
            )
        baselines = ce_baselines(model, tokens, hooks.pop(), batch_size=model_batch_size, progress=progress)
    rows = []
    for sae, name in tqdm(list(zip(loaded, names, strict=True)), desc="evaluate", disable=not progress):
        rows.append(
            evaluate_sae(
                sae,
                acts=acts,
                model=model,
                tokens=tokens,
                hook_name=hook_name,
                name=name,
                model_batch_size=model_batch_size,
                baselines=baselines,
                health=health,
            )
        )
    if health:
        from featgraph.training.health import random_like_share

        for sae, row in zip(loaded, rows, strict=True):
            smaller = [s for s in loaded if s.n_features < sae.n_features and s.d_in == sae.d_in]
            if smaller:
                ref = max(smaller, key=lambda s: s.n_features)  # first one of that width, in input order
                row["random_like_share"] = random_like_share(sae, ref)["random_like_share"]
    table = pl.DataFrame([{c: r[c] for c in TABLE_COLUMNS} for r in rows])
    from featgraph.ladder import width_order  # the one ladder order: width, ties by name

    return table[width_order(table["width"].to_list(), table["name"].to_list())]


def _share(v: Any) -> str:
    return "n/a" if v is None or v != v else f"{100 * v:.1f}%"


def metrics_markdown(table: Any, *, note: str = "") -> str:
    """The post's table (name, model site, width, L0, MSE, CE recovered from zero / mean ablation)."""
    head = (
        "| name | model site | width | L0 | MSE | expl. var. | dead | CE clean | CE with SAE | "
        "CE rec. (zero abl.) | CE rec. (mean abl.) | rare | dense | moved | useless | random-like |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in table.iter_rows(named=True):
        lines.append(
            f"| {r['name']} | {r['hook_name']} | {r['width']} | {r['l0']:.1f} | {r['mse']:.2f} | "
            f"{r['explained_variance']:.3f} | {r['dead_features']} | {r['ce_clean']:.4f} | "
            f"{r['ce_sae']:.4f} | {r['ce_recovered_zero']:.4f} | {r['ce_recovered_mean']:.4f} | "
            + " | ".join(_share(r.get(c)) for c in ("rare_share", "dense_share", "moved_share", "useless_share",
                                                   "random_like_share"))
            + " |"
        )
    text = "\n".join(lines) + "\n"
    text += (
        "\nHealth (featgraph.training.health, on the same tokens): rare = active on < 0.01% of tokens (dead included), "
        "dense = active on > 10%; moved = decoder row at cos < 0.9 to its own initial row (n/a: init not recorded);"
        " useless = removal lowers MSE or raises it by < 0.01%; random-like = max cos to the next narrower SAE below"
        " the 99th percentile of random unit vectors.\n"
    )
    if note:
        text += f"\n{note}\n"
    return text
