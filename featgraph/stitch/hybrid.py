"""Hybrid SAEs: add features from a donor SAE (usually a wider one) to a base SAE, or swap a family.

A feature is its encoder column, encoder bias and decoder row (plus its threshold for JumpReLU). Moving one
into another SAE must keep it firing exactly as it did in its own SAE. The donor computes::

    pre_j = (x - b_dec_donor) . W_enc_donor[:, j] + b_enc_donor[j]

but inside the hybrid its input is ``x - b_dec_base``, so we fold the difference of the pre-encoder biases
into the encoder bias (computed in float64)::

    b_enc_new[j] = b_enc_donor[j] + (b_dec_base - b_dec_donor) . W_enc_donor[:, j]

Since ReLU and JumpReLU features depend on their own pre-activation only, every kept base feature and every
added donor feature then has exactly the activations it had in its own SAE, and the hybrid's reconstruction is
``x_hat_base - sum_removed f_p d_p + sum_added f_c d_c``. That identity is what :mod:`featgraph.stitch.delta_mse`
uses.

Supported architectures: ReLU and JumpReLU (mixed too: the hybrid is JumpReLU and ReLU features get threshold
0, which is the same function). TopK is refused: adding a feature changes which k features win on every token,
so the added feature neither fires as it did nor leaves the others alone. SAEs whose ``apply_b_dec_to_input``
differ are refused too, so that the hybrid's single ``b_dec`` has one meaning.

Feature order of a hybrid: the kept base features in their original order, then the added donor features in
the order given (see :func:`hybrid_origin`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from featgraph.errors import ConfigError, ShapeMismatchError, UnsupportedError
from featgraph.sae import Sae, SaeConfig


def _describe(sae: Sae, role: str) -> str:
    name = sae.cfg.extra.get("name") if isinstance(sae.cfg.extra, dict) else None
    return f"{role} SAE{f' {name!r}' if name else ''} (F={sae.n_features}, d_in={sae.d_in})"


def check_stitchable(base: Sae, donor: Sae) -> None:
    """Raise a :class:`FeatgraphError` if features of ``donor`` cannot be moved into ``base`` exactly."""
    for sae, role in ((base, "base"), (donor, "donor")):
        if sae.cfg.architecture == "topk":
            raise UnsupportedError(
                f"{_describe(sae, role)} is TopK (k={sae.cfg.k}): adding or removing features changes "
                "which k "
                "features win on each token, so a moved feature would not fire as it did in its own SAE; "
                "hybrids are defined for relu and jumprelu SAEs only"
            )
    if base.d_in != donor.d_in:
        raise ShapeMismatchError(f"{_describe(base, 'base')} and {_describe(donor, 'donor')} differ in d_in")
    if base.cfg.apply_b_dec_to_input != donor.cfg.apply_b_dec_to_input:
        raise UnsupportedError(
            f"apply_b_dec_to_input is {base.cfg.apply_b_dec_to_input} in the base SAE but "
            f"{donor.cfg.apply_b_dec_to_input} in the donor SAE; stitching needs one input convention"
        )
    hb, hd = base.cfg.hook_name, donor.cfg.hook_name
    if hb and hd and hb != hd:
        raise ConfigError(f"the base SAE reads hook {hb!r} but the donor reads {hd!r}; stitch SAEs of one site")


def _indices(idx: Sequence[int] | np.ndarray | torch.Tensor, n: int, what: str) -> np.ndarray:
    arr = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64).reshape(-1)
    if arr.size:
        bad = arr[(arr < 0) | (arr >= n)]
        if bad.size:
            raise ConfigError(f"{what}: indices {bad[:5].tolist()} out of range for {n} features")
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise ConfigError(f"{what}: duplicate indices {uniq[counts > 1][:5].tolist()}")
    return arr


def folded_encoder(base: Sae, donor: Sae, indices: Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
    """The donor features' ``W_enc`` columns ``[d, k]``, folded ``b_enc`` ``[k]`` and ``threshold`` ``[k]``.

    Computed in float64 and returned in the base SAE's dtype. ``threshold`` is zero for ReLU donors.
    """
    check_stitchable(base, donor)
    idx = torch.from_numpy(_indices(indices, donor.n_features, "donor features"))
    with torch.no_grad():
        W = donor.W_enc.detach().double()[:, idx]
        b = donor.b_enc.detach().double()[idx]
        if donor.cfg.apply_b_dec_to_input:
            b = b + (base.b_dec.detach().double() - donor.b_dec.detach().double()) @ W
        thr = donor.threshold.detach()[idx] if donor.threshold is not None else torch.zeros(len(idx))
    dtype = base.W_dec.dtype
    return {"W_enc": W.to(dtype), "b_enc": b.to(dtype), "threshold": thr.to(dtype)}


def hybrid_origin(
    n_base: int, remove: Sequence[int] | np.ndarray, add: Sequence[int] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each hybrid feature: ``(from_donor bool [F_h], source index int64 [F_h])``."""
    remove = _indices(remove, n_base, "removed base features")
    add = np.asarray(add, dtype=np.int64).reshape(-1)
    keep = np.setdiff1d(np.arange(n_base), remove)
    from_donor = np.concatenate([np.zeros(keep.size, bool), np.ones(add.size, bool)])
    return from_donor, np.concatenate([keep, add])


def hybrid(
    base: Sae,
    donor: Sae,
    *,
    add: Sequence[int] | np.ndarray = (),
    remove: Sequence[int] | np.ndarray = (),
    name: str | None = None,
) -> Sae:
    """A new SAE: ``base`` without the features ``remove``, plus ``donor``'s features ``add`` (folded, see
    module).

    The result is an ordinary :class:`Sae` (save, load, evaluate as any other) on the base SAE's ``b_dec``.
    """
    check_stitchable(base, donor)
    add_idx = _indices(add, donor.n_features, "added donor features")
    remove_idx = _indices(remove, base.n_features, "removed base features")
    keep = torch.from_numpy(np.setdiff1d(np.arange(base.n_features), remove_idx))
    if keep.numel() + add_idx.size == 0:
        raise ConfigError("the hybrid would have no features: every base feature removed and nothing added")
    enc = folded_encoder(base, donor, add_idx)
    dtype = base.W_dec.dtype
    with torch.no_grad():
        W_dec_add = donor.W_dec.detach()[torch.from_numpy(add_idx)].to(dtype)
        tensors = {
            "W_enc": torch.cat([base.W_enc.detach()[:, keep], enc["W_enc"]], dim=1),
            "b_enc": torch.cat([base.b_enc.detach()[keep], enc["b_enc"]]),
            "W_dec": torch.cat([base.W_dec.detach()[keep], W_dec_add]),
            "b_dec": base.b_dec.detach().clone(),
        }
        jump = base.cfg.architecture == "jumprelu" or (donor.cfg.architecture == "jumprelu" and add_idx.size > 0)
        if jump:
            base_thr = base.threshold.detach()[keep] if base.threshold is not None else torch.zeros(len(keep))
            tensors["threshold"] = torch.cat([base_thr.to(dtype), enc["threshold"]])
    extra = dict(base.cfg.extra) if isinstance(base.cfg.extra, dict) else {}
    extra["hybrid"] = {
        "n_base_kept": int(keep.numel()),
        "n_removed": int(remove_idx.size),
        "n_added": int(add_idx.size),
    }
    if name is not None:
        extra["name"] = name
    cfg = SaeConfig(
        d_in=base.d_in,
        n_features=int(keep.numel() + add_idx.size),
        architecture="jumprelu" if jump else "relu",
        apply_b_dec_to_input=base.cfg.apply_b_dec_to_input,
        hook_name=base.cfg.hook_name or donor.cfg.hook_name,
        model_name=base.cfg.model_name or donor.cfg.model_name,
        extra=extra,
    )
    return Sae.from_tensors(tensors, cfg, where="hybrid")


def add_features(base: Sae, donor: Sae, indices: Sequence[int] | np.ndarray) -> Sae:
    """``base`` plus the donor features ``indices`` (appended after the base features)."""
    return hybrid(base, donor, add=indices)


def swap_family(
    base: Sae, donor: Sae, parents: Sequence[int] | np.ndarray, children: Sequence[int] | np.ndarray
) -> Sae:
    """``base`` with its features ``parents`` removed and the donor's ``children`` added, in one step."""
    return hybrid(base, donor, add=children, remove=parents)
