"""EleutherAI sparsify: one folder per hookpoint with ``cfg.json`` + ``sae.safetensors``.

Orientation: ``encoder.weight [F, d_in]`` (an ``nn.Linear``, so it is TRANSPOSED into ``W_enc [d_in, F]``),
``encoder.bias [F]``, ``W_dec [F, d_in]`` (rows are features, as ours), ``b_dec [d_in]``; ``W_skip [d_in,
d_in]`` only with ``skip_connection``. A square matrix is trusted to follow these names.

``cfg.json`` holds ``d_in``, ``k``, ``num_latents`` (0 means ``expansion_factor * d_in``), ``activation``
(topk or groupmax), ``transcode``, ``skip_connection``, ``multi_topk``, ``normalize_decoder``; each value is
type-checked (a wrong type is a one-line error naming the file, key and value). sparsify 1.3's encoder is
``topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias))`` (``SparseCoder.encode``) and its decoder
``acts @ W_dec + b_dec``; it subtracts ``b_dec`` first unless ``transcode`` is set, so ``apply_b_dec_to_input
= not transcode``. ``load_from_disk`` does not renormalise the decoder (``normalize_decoder`` only acts in
training), so neither does featgraph. Refused by ``load_sae`` (``load_decoder`` still reads the decoder):
``activation: groupmax`` and ``skip_connection`` (``W_skip``). ``multi_topk`` changes only the training
forward's auxiliary reconstruction; encode/decode are the top-k ones, which featgraph runs.

Transcoders (``transcode: true``): the decoder writes a different site from the one the encoder reads. Their
decoder rows are read as any SAE's (matching transcoders against each other compares output directions);
``load_sae`` refuses them unless called with ``allow_transcoder=True``, because featgraph's eval and stitch
compare ``x_hat`` with the SAE's own input. The folder name is the hookpoint (a Hugging Face module path
such as ``layers.6``, not a transformer-lens hook name), kept as ``cfg.extra["hookpoint"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featgraph.errors import ConfigError, SaeFormatError, UnsupportedError
from featgraph.formats.common import (
    cfg_choice,
    cfg_value,
    check_decoder,
    fold_b_dec,
    read_json,
    read_safetensors,
    require,
    write_json_into,
)
from featgraph.io.output import atomic_dir
from featgraph.sae import Sae, SaeConfig

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae.safetensors"


def _folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _parse(cfg: dict[str, Any], where: Path) -> dict[str, Any]:
    """Every cfg value featgraph uses, type-checked, with sparsify's defaults (``SparseCoderConfig``)."""
    d_in = cfg_value(cfg, "d_in", "int", where, minimum=1)
    num_latents = cfg_value(cfg, "num_latents", "int", where, default=0, minimum=0)
    expansion = cfg_value(cfg, "expansion_factor", "int", where, default=32, minimum=0)
    n = num_latents or (d_in * expansion if d_in and expansion else None)
    return {
        "d_in": d_in,
        "n_features": n,
        "k": cfg_value(cfg, "k", "int", where, default=32, minimum=1),
        "activation": cfg_choice(cfg, "activation", ("topk", "groupmax"), where, default="topk"),
        "transcode": cfg_value(cfg, "transcode", "bool", where, default=False),
        "skip_connection": cfg_value(cfg, "skip_connection", "bool", where, default=False),
        "multi_topk": cfg_value(cfg, "multi_topk", "bool", where, default=False),
        "normalize_decoder": cfg_value(cfg, "normalize_decoder", "bool", where, default=True),
    }


def read_decoder(path: Path) -> np.ndarray:
    folder = _folder(path)
    c = _parse(read_json(folder / CFG_NAME), folder / CFG_NAME)
    weights = folder / WEIGHTS_NAME
    W = read_safetensors(weights, ["W_dec"])["W_dec"]
    return check_decoder(W, weights, (c["n_features"], c["d_in"]))


def read_sae(path: Path) -> Sae:
    folder = _folder(path)
    cfg_path, weights = folder / CFG_NAME, folder / WEIGHTS_NAME
    c = _parse(read_json(cfg_path), cfg_path)
    if c["activation"] != "topk":
        raise UnsupportedError(f"{cfg_path}: activation={c['activation']!r}: featgraph runs sparsify's topk "
                               "activation only; load_decoder() still reads its decoder")
    if c["skip_connection"]:
        raise UnsupportedError(f"{cfg_path}: skip_connection=true (W_skip) has no place in featgraph's Sae; "
                               "load_decoder() still reads its decoder")
    t = read_safetensors(weights)
    require(t, ["encoder.weight", "encoder.bias", "W_dec", "b_dec"], weights)
    tensors = {
        "W_enc": t["encoder.weight"].T.contiguous(),
        "b_enc": t["encoder.bias"],
        "W_dec": t["W_dec"],
        "b_dec": t["b_dec"],
    }
    extra: dict[str, Any] = {"hookpoint": folder.name}
    if c["transcode"]:
        extra["transcode"] = True
    try:
        sae_cfg = SaeConfig(
            d_in=c["d_in"] or int(t["W_dec"].shape[-1]),
            n_features=c["n_features"] or int(t["W_dec"].shape[0]),
            architecture="topk",
            k=c["k"],
            apply_b_dec_to_input=not c["transcode"],
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
