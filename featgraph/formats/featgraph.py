"""featgraph's own folder format: ``cfg.json`` (with ``"format": "featgraph"``) + ``sae.safetensors``.

Tensors are already canonical (rows of ``W_dec`` are features); :class:`featgraph.sae.Sae` writes and reads the
folder, this module gives it the same ``read_decoder`` / ``read_sae`` face as every other format module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from featgraph.sae import Sae


def _folder(p: Path) -> Path:
    return p if p.is_dir() else p.parent


def read_decoder(p: Path) -> np.ndarray:
    """float32 ``W_dec [F, d_in]``, shape-checked against cfg.json; reads only that tensor."""
    from featgraph.formats.common import check_decoder, read_safetensors
    from featgraph.sae import WEIGHTS_NAME, read_featgraph_cfg

    folder = _folder(p)
    cfg = read_featgraph_cfg(folder)
    weights = folder / WEIGHTS_NAME
    return check_decoder(read_safetensors(weights, ["W_dec"])["W_dec"], weights, (cfg.n_features, cfg.d_in))


def read_sae(p: Path) -> Sae:
    from featgraph.sae import Sae

    return Sae.load(_folder(p))
