"""saprmarks/dictionary_learning: ``ae.pt`` (a torch state dict) + optional ``config.json``.

``config.json`` is ``{"trainer": {"dict_class", "activation_dim", "dict_size", "k", "lm_name", ...}}``. The
state dict's keys tell the classes apart (``dict_class`` in config.json separates TopK from BatchTopK):

- ``AutoEncoder``: ``encoder.weight [F, d]``, ``encoder.bias [F]``, ``decoder.weight [d, F]`` (features are
  COLUMNS), ``bias [d]`` subtracted before the encoder and added after -> relu, ``b_dec = bias``.
  ``AutoEncoder.from_pretrained`` renormalises decoder columns by default (``normalize_decoder``: columns
  divided by their norms, encoder rows and bias multiplied by them, unless ``torch.allclose(norms, 1)``), so
  featgraph folds the norms the same way at load: its activations are the library's default ones.
- ``AutoEncoderNew``: the same with ``decoder.bias [d]`` instead of ``bias`` and nothing subtracted before the
  encoder -> relu with ``apply_b_dec_to_input = False``.
- ``AutoEncoderTopK`` / ``BatchTopKSAE``: ``encoder.*`` and ``decoder.weight`` as above, ``b_dec [d]``
  (subtracted first), scalar buffers ``k`` and ``threshold``. ``AutoEncoderTopK.encode`` keeps the per-token
  top-k by default (its threshold is unused) -> topk(k). ``BatchTopKSAE.encode`` uses its global inference
  threshold by default, ``relu(pre) * (relu(pre) > threshold)`` -> jumprelu with that threshold for every
  feature (a never-calibrated threshold of -1 makes that plain relu, in the library as here).
- ``JumpReluAutoEncoder``: ``W_enc [d, F]``, ``b_enc``, ``W_dec [F, d]`` (rows are features), ``b_dec``,
  ``threshold [F]``; b_dec not subtracted (the class default) -> jumprelu.
- ``GatedAutoEncoder`` (``r_mag``, ``gate_bias``, ...) and Matryoshka (``W_enc`` with a ``k`` buffer): decoder
  only; load_sae refuses.

``encoder.weight`` is transposed into ``W_enc [d, F]`` and ``decoder.weight`` into ``W_dec [F, d]``; square
matrices are trusted to follow these names. dictionary_learning 0.1.0's ``JumpReluAutoEncoder.encode`` is
``relu(pre * (pre > threshold))``, featgraph's jumprelu. Values in ``config.json`` are type-checked.
Files are loaded with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from featgraph.errors import ConfigError, SaeFormatError, UnsupportedError
from featgraph.formats.common import (
    cfg_value,
    check_decoder,
    fold_b_dec,
    log,
    read_json,
    require,
    shape_from_cfg,
    torch_load_state_dict,
    write_json_into,
)
from featgraph.io.output import atomic_dir
from featgraph.sae import Sae, SaeConfig, fold_decoder_norms

WEIGHTS_NAME = "ae.pt"
CFG_NAME = "config.json"


def _files(path: Path) -> tuple[Path, Path]:
    """(ae.pt, config.json): a folder holds both; a ``.pt`` file path names the weights directly."""
    if path.is_dir():
        return path / WEIGHTS_NAME, path / CFG_NAME
    return path, path.parent / CFG_NAME


def _trainer_cfg(cfg_path: Path) -> dict[str, Any]:
    cfg = read_json(cfg_path, required=False)
    trainer = cfg_value(cfg, "trainer", "dict", cfg_path, default={})
    # type checks of every value the reader uses
    shape_from_cfg(trainer, "dict_size", "activation_dim", cfg_path)
    cfg_value(trainer, "dict_class", "str", cfg_path)
    cfg_value(trainer, "k", "int", cfg_path, minimum=1)
    for key in ("lm_name", "submodule_name"):
        cfg_value(trainer, key, "str", cfg_path)
    return trainer


def _decoder_rows(state: dict[str, torch.Tensor], where: Path) -> torch.Tensor:
    if "W_dec" in state:
        return state["W_dec"]
    if "decoder.weight" in state:
        return state["decoder.weight"].T  # nn.Linear(F, d): features are columns
    raise SaeFormatError(f"{where}: no decoder tensor ('decoder.weight' or 'W_dec'); have {sorted(state)}")


def _is_autoencoder(state: dict[str, torch.Tensor]) -> bool:
    """The class whose ``from_pretrained`` renormalises decoder columns by default."""
    return "encoder.weight" in state and "bias" in state and "W_enc" not in state


def _column_norms(dec_weight: torch.Tensor) -> torch.Tensor | None:
    """The norms ``AutoEncoder.normalize_decoder`` divides out, or None where it leaves the decoder alone
    (``torch.allclose(norms, 1)``, exactly its test)."""
    norms = torch.norm(dec_weight, dim=0)
    return None if torch.allclose(norms, torch.ones_like(norms)) else norms


def read_decoder(path: Path) -> np.ndarray:
    weights, cfg_path = _files(path)
    trainer = _trainer_cfg(cfg_path)
    state = torch_load_state_dict(weights)
    W = _decoder_rows(state, weights)
    expect = shape_from_cfg(trainer, "dict_size", "activation_dim", cfg_path)
    if _is_autoencoder(state) and W.ndim == 2 and W.is_floating_point():
        norms = _column_norms(state["decoder.weight"])
        if norms is not None:  # the rows load_sae uses, as AutoEncoder.from_pretrained gives them
            W = W / norms[:, None]
    return check_decoder(W, weights, expect)


def _scalar(state: dict[str, torch.Tensor], name: str, where: Path) -> float | None:
    t = state.get(name)
    if t is None:
        return None
    if t.numel() != 1:
        raise SaeFormatError(f"{where}: {name} should be a scalar, has shape {list(t.shape)}")
    v = float(t.reshape(-1)[0])
    if v != v or v in (float("inf"), float("-inf")):
        raise SaeFormatError(f"{where}: {name}={v} is not finite")
    return v


def read_sae(path: Path) -> Sae:
    weights, cfg_path = _files(path)
    trainer = _trainer_cfg(cfg_path)
    s = torch_load_state_dict(weights)
    dict_class = trainer.get("dict_class")
    k = None
    if "r_mag" in s or "gate_bias" in s:
        raise UnsupportedError(f"{weights}: gated dictionary_learning SAEs have no forward pass in"
                               " featgraph's Sae; load_decoder() still reads their decoder")
    if "W_enc" in s and "k" in s:
        raise UnsupportedError(f"{weights}: Matryoshka/BatchTopK SAE with W_enc and a k buffer"
                               f" ({dict_class!r}) is not supported; load_decoder() still reads its decoder")
    if "W_enc" in s:  # JumpReluAutoEncoder
        require(s, ["W_enc", "b_enc", "W_dec", "b_dec", "threshold"], weights)
        t = {n: s[n] for n in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}
        arch, apply_b_dec = "jumprelu", False
    elif "encoder.weight" in s and ("bias" in s or "decoder.bias" in s):  # AutoEncoder / AutoEncoderNew
        new = "bias" not in s
        require(s, ["encoder.bias", "decoder.weight"], weights)
        t = {"W_enc": s["encoder.weight"].T.contiguous(), "b_enc": s["encoder.bias"],
             "W_dec": s["decoder.weight"].T.contiguous(), "b_dec": s["decoder.bias" if new else "bias"]}
        arch, apply_b_dec = "relu", not new
        norms = None if new or s["decoder.weight"].ndim != 2 else _column_norms(s["decoder.weight"])
        if norms is not None and bool((norms > 0).all()) and t["W_dec"].shape[0] == norms.shape[0]:
            # AutoEncoder.from_pretrained(path) renormalises decoder columns by default, moving the norms into
            # the encoder: the library's default activations are these
            t = fold_decoder_norms(t, norms)
    elif "encoder.weight" in s and "b_dec" in s:  # AutoEncoderTopK / BatchTopKSAE
        require(s, ["encoder.bias", "decoder.weight"], weights)
        t = {"W_enc": s["encoder.weight"].T.contiguous(), "b_enc": s["encoder.bias"],
             "W_dec": s["decoder.weight"].T.contiguous(), "b_dec": s["b_dec"]}
        apply_b_dec = True
        threshold = _scalar(s, "threshold", weights)
        if dict_class == "BatchTopKSAE":
            # BatchTopKSAE.encode uses its global threshold by default: relu(pre) * (relu(pre) > th), which is
            # featgraph's jumprelu relu(pre) * (pre > th) for every th (th < 0, never calibrated: plain relu)
            if threshold is None:
                raise SaeFormatError(f"{weights}: BatchTopKSAE without its 'threshold' buffer")
            arch = "jumprelu"
            t["threshold"] = torch.full_like(t["b_enc"], threshold)
            if threshold < 0:
                log.warning("%s: BatchTopKSAE threshold %s was never calibrated: the library (and featgraph) "
                            "encode with plain relu", weights, threshold)
        else:  # AutoEncoderTopK.encode: per-token top-k by default (use_threshold=False)
            arch = "topk"
            k_val = _scalar(s, "k", weights) if "k" in s else trainer.get("k")
            if k_val is None:
                raise SaeFormatError(f"{weights}: TopK SAE with no 'k' buffer and no trainer.k in {cfg_path}")
            if k_val != int(k_val) or k_val < 1:
                raise SaeFormatError(f"{weights}: k={k_val} is not an integer >= 1")
            k = int(k_val)
    else:
        raise UnsupportedError(f"{weights}: unrecognised dictionary_learning state dict"
                               f" (class {dict_class!r}, tensors {sorted(s)})")
    n_features, d_in = shape_from_cfg(trainer, "dict_size", "activation_dim", cfg_path)
    extra = {key: trainer[key] for key in ("dict_class", "submodule_name", "layer") if key in trainer}
    try:
        cfg = SaeConfig(
            d_in=d_in or int(t["W_dec"].shape[-1]),
            n_features=n_features or int(t["W_dec"].shape[0]),
            architecture=arch,
            k=k,
            apply_b_dec_to_input=apply_b_dec,
            model_name=trainer.get("lm_name"),
            source_format="dictionary_learning",
            extra=extra,
        )
    except ConfigError as e:
        raise SaeFormatError(f"{weights}: {e}") from e
    return Sae.from_tensors(t, cfg, where=str(weights))


def save(sae: Sae, folder: Path) -> Path:
    """Write ``ae.pt`` + ``config.json`` into ``folder`` atomically, as the dictionary_learning class with the
    same forward pass: relu -> AutoEncoder (AutoEncoderNew when b_dec is not subtracted), topk ->
    AutoEncoderTopK, jumprelu -> JumpReluAutoEncoder. Where the class fixes whether b_dec is subtracted (TopK:
    yes; JumpReLU: no) and the SAE differs, ``b_dec @ W_enc`` is folded into the encoder bias (same forward
    pass up to float rounding).

    ``AutoEncoder.from_pretrained`` renormalises decoder columns by default, so an AutoEncoder is written with
    its decoder norms already folded into the encoder (unit columns, encoder rows and bias times the norm):
    the library's default load then changes nothing, ``x_hat`` is the SAE's own, and each activation is the
    SAE's times its decoder row's norm (as with any decoder-normalised SAE).
    """
    c = sae.cfg
    t = {n: v.detach().to("cpu") for n, v in sae.tensors().items()}
    if c.architecture == "relu":
        cls = "AutoEncoder" if c.apply_b_dec_to_input else "AutoEncoderNew"
        if c.apply_b_dec_to_input:
            norms = t["W_dec"].double().norm(dim=1)
            if bool((norms > 0).all()):
                folded = fold_decoder_norms({n: v.double() for n, v in t.items()}, norms)
                t = {n: v.to(t[n].dtype) for n, v in folded.items()}
        state = {"encoder.weight": t["W_enc"].T, "encoder.bias": t["b_enc"], "decoder.weight": t["W_dec"].T}
        state["bias" if c.apply_b_dec_to_input else "decoder.bias"] = t["b_dec"]
    elif c.architecture == "topk":
        cls = "AutoEncoderTopK"
        state = {"encoder.weight": t["W_enc"].T, "encoder.bias": fold_b_dec(t, c.apply_b_dec_to_input, True),
                 "decoder.weight": t["W_dec"].T, "b_dec": t["b_dec"],
                 "k": torch.tensor(c.k, dtype=torch.int), "threshold": torch.tensor(-1.0)}
    else:
        cls = "JumpReluAutoEncoder"
        state = {"W_enc": t["W_enc"], "b_enc": fold_b_dec(t, c.apply_b_dec_to_input, False),
                 "W_dec": t["W_dec"], "b_dec": t["b_dec"], "threshold": t["threshold"]}
    # own, contiguous storage: torch.save of a transposed view would store the whole parameter's layout
    state = {n: v.contiguous().clone() for n, v in state.items()}
    trainer: dict[str, Any] = {"dict_class": cls, "activation_dim": c.d_in, "dict_size": c.n_features}
    if c.k is not None:
        trainer["k"] = c.k
    if c.model_name is not None:
        trainer["lm_name"] = c.model_name
    with atomic_dir(folder) as tmp:
        torch.save(state, tmp / WEIGHTS_NAME)
        write_json_into(tmp / CFG_NAME, {"trainer": trainer})
    return Path(folder)
