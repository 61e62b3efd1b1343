"""EleutherAI sparsify: one folder per hookpoint with ``cfg.json`` + ``sae.safetensors``.

Orientation: ``encoder.weight [F, d_in]`` (an ``nn.Linear``, so it is TRANSPOSED into ``W_enc [d_in, F]``),
``encoder.bias [F]``, ``W_dec [F, d_in]`` (rows are features, as ours), ``b_dec [d_in]``; ``W_skip [d_in,
d_in]`` only with ``skip_connection``. A square matrix is trusted to follow these names.

``cfg.json`` holds ``d_in``, ``k``, ``num_latents`` (0 means ``expansion_factor * d_in``), ``activation``
(topk or groupmax), ``transcode``, ``skip_connection``. sparsify's encoder is ``topk(relu((x - b_dec) @
encoder.weight.T + encoder.bias))``; it subtracts ``b_dec`` first unless ``transcode`` is set (a transcoder's
input is another site), so ``apply_b_dec_to_input = not transcode``. The folder name is the hookpoint (a
Hugging Face module path such as ``layers.6``, not a transformer-lens hook name), kept as
``cfg.extra["hookpoint"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featgraph.errors import ConfigError, SaeFormatError, UnsupportedError
from featgraph.formats_common import (
    check_decoder,
    fold_b_dec,
    read_json,
    read_safetensors,
    require,
    write_json_into,
)
from featgraph.output_dir import atomic_dir
from featgraph.sae import Sae, SaeConfig

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae.safetensors"


def _folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _shape(cfg: dict[str, Any], where: Path) -> tuple[int | None, int | None]:
    """(num_latents, d_in) from cfg.json; None where the cfg does not say."""
    d_in = cfg.get("d_in")
    for key in ("d_in", "num_latents", "expansion_factor"):
        v = cfg.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise SaeFormatError(f"{where}: {key}={v!r} is not a non-negative integer")
    n = cfg.get("num_latents") or None
    if n is None and d_in and cfg.get("expansion_factor"):
        n = d_in * cfg["expansion_factor"]
    return n, d_in


def read_decoder(path: Path) -> np.ndarray:
    folder = _folder(path)
    cfg = read_json(folder / CFG_NAME)
    weights = folder / WEIGHTS_NAME
    W = read_safetensors(weights, ["W_dec"])["W_dec"]
    return check_decoder(W, weights, _shape(cfg, folder / CFG_NAME))


def read_sae(path: Path) -> Sae:
    folder = _folder(path)
    cfg_path, weights = folder / CFG_NAME, folder / WEIGHTS_NAME
    cfg = read_json(cfg_path)
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise UnsupportedError(f"{cfg_path}: sparsify activation {activation!r} is not supported (topk is)")
    if cfg.get("skip_connection"):
        raise UnsupportedError(f"{cfg_path}: sparsify skip_connection (W_skip) has no place in featgraph's"
                               " Sae; load_decoder() reads its decoder")
    t = read_safetensors(weights)
    require(t, ["encoder.weight", "encoder.bias", "W_dec", "b_dec"], weights)
    tensors = {
        "W_enc": t["encoder.weight"].T.contiguous(),
        "b_enc": t["encoder.bias"],
        "W_dec": t["W_dec"],
        "b_dec": t["b_dec"],
    }
    n, d_in = _shape(cfg, cfg_path)
    transcode = bool(cfg.get("transcode", False))
    extra: dict[str, Any] = {"hookpoint": folder.name}
    if transcode:
        extra["transcode"] = True
    try:
        sae_cfg = SaeConfig(
            d_in=d_in or int(t["W_dec"].shape[-1]),
            n_features=n or int(t["W_dec"].shape[0]),
            architecture="topk",
            k=cfg.get("k", 32),  # sparsify's default k
            apply_b_dec_to_input=not transcode,
            source_format="sparsify",
            extra=extra,
        )
    except ConfigError as e:
        raise SaeFormatError(f"{cfg_path}: {e}") from e
    return Sae.from_tensors(tensors, sae_cfg, where=str(weights))


def save(sae: Sae, folder: Path) -> Path:
    """Write a sparsify hookpoint folder. Only TopK SAEs exist in sparsify; others raise UnsupportedError.

    sparsify subtracts ``b_dec`` before the encoder (transcoders excepted), so an SAE that does not is written
    with ``b_dec @ W_enc`` folded into the encoder bias (same forward pass up to float rounding).
    """
    from safetensors.torch import save_file

    c = sae.cfg
    if c.architecture != "topk":
        raise UnsupportedError(f"sparsify SAEs are TopK; cannot write a {c.architecture} SAE to {folder}")
    transcode = bool(c.extra.get("transcode", False))  # a transcoder read from sparsify goes back as one
    t = {n: v.detach().to("cpu") for n, v in sae.tensors().items()}
    tensors = {
        "encoder.weight": t["W_enc"].T.contiguous(),
        "encoder.bias": fold_b_dec(t, c.apply_b_dec_to_input, not transcode).contiguous(),
        "W_dec": t["W_dec"].contiguous(),
        "b_dec": t["b_dec"].contiguous(),
    }
    cfg = {
        "activation": "topk",
        "d_in": c.d_in,
        "expansion_factor": max(1, c.n_features // c.d_in),  # informational: num_latents takes precedence
        "k": c.k,
        "multi_topk": False,
        "normalize_decoder": True,
        "num_latents": c.n_features,
        "skip_connection": False,
        "transcode": transcode,
    }
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_NAME))
        write_json_into(tmp / CFG_NAME, cfg)
    return Path(folder)
