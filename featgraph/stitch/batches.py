"""The column encodes and dtype copies a stitch analysis needs.

The batches themselves come from the one activation iterator, :func:`featgraph.activations.batches.iter_acts`
(re-exported here with ``StoreRows``, ``n_rows`` and ``ActivationsLike`` for the stitch modules).
"""

from __future__ import annotations

import torch

from featgraph.activations.batches import (  # noqa: F401  (the stitch modules import these from here)
    EVAL_BATCH,
    Activations,
    ActivationsLike,
    StoreRows,
    iter_acts,
    n_rows,
)
from featgraph.sae import Sae


def as_dtype(sae: Sae, dtype: torch.dtype) -> Sae:
    """A copy of ``sae`` in ``dtype`` (same config), used to evaluate in float64."""
    if sae.W_dec.dtype == dtype:
        return sae
    return Sae.from_tensors({k: v.to(dtype) for k, v in sae.tensors().items()}, sae.cfg, where="as_dtype")


def encode_columns(sae: Sae, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Activations of the features ``idx`` only (``[B, len(idx)]``); exact for ReLU/JumpReLU SAEs."""
    xin = x - sae.b_dec if sae.cfg.apply_b_dec_to_input else x
    pre = xin @ sae.W_enc[:, idx] + sae.b_enc[idx]
    if sae.cfg.architecture == "jumprelu":
        return torch.relu(pre) * (pre > sae.threshold[idx])  # as Sae.activation (negative thresholds)
    return torch.relu(pre)
