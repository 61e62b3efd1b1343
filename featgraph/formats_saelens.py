"""SAELens: ``cfg.json`` + ``sae_weights.safetensors`` in one folder (``sparsity.safetensors`` is not used).

Orientation (same as featgraph's, so nothing is transposed): ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``
(rows are features), ``b_enc [d_sae]``, ``b_dec [d_in]``; jumprelu adds ``threshold [d_sae]``; gated SAEs have
``b_gate``, ``b_mag``, ``r_mag`` and no ``b_enc``. A square ``W_dec`` is trusted to be ``[d_sae, d_in]``.

``cfg.json`` layouts read here:

- SAELens 6.x: ``d_in``, ``d_sae``, ``architecture``, ``apply_b_dec_to_input``, ``normalize_activations`` (and
  ``k`` for topk) at the top; ``model_name`` / ``hook_name`` under ``metadata`` (``meta`` in early 6.0
  releases);
- older releases: everything at the top, ``hook_point`` instead of ``hook_name`` in the oldest, and TopK
  written as ``architecture: standard`` with ``activation_fn_str: topk`` and ``activation_fn_kwargs:
  {k: ...}``.

The writer emits the 6.x layout (``model_name`` / ``hook_name`` also at the top, where pre-6 readers look;
pre-6 SAELens also wants training fields such as ``context_size`` that featgraph does not know).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from featgraph.errors import ConfigError, SaeFormatError, UnsupportedError
from featgraph.formats_common import (
    check_decoder,
    dtype_name,
    log,
    read_json,
    read_safetensors,
    require,
    safetensors_keys,
    shape_from_cfg,
    write_json_into,
)
from featgraph.output_dir import atomic_dir
from featgraph.sae import Sae, SaeConfig

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae_weights.safetensors"
# featgraph architecture -> SAELens architecture
_TO_SAELENS = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}


def _folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _meta(cfg: dict[str, Any], key: str) -> Any:
    """A cfg value at the top level (older SAELens) or under ``metadata`` / ``meta`` (6.x)."""
    if cfg.get(key) is not None:
        return cfg[key]
    for nest in ("metadata", "meta"):
        sub = cfg.get(nest)
        if isinstance(sub, dict) and sub.get(key) is not None:
            return sub[key]
    return None


def _scaling_factor(weights: Path, keys: list[str]) -> torch.Tensor | None:
    """Old SAELens fine-tuning ``scaling_factor [d_sae]`` multiplies the activations; None when absent or all
    ones."""
    if "scaling_factor" not in keys:
        return None
    s = read_safetensors(weights, ["scaling_factor"])["scaling_factor"]
    return None if bool((s == 1).all()) else s


def read_decoder(path: Path) -> np.ndarray:
    folder = _folder(path)
    cfg = read_json(folder / CFG_NAME)
    weights = folder / WEIGHTS_NAME
    keys = safetensors_keys(weights)
    W = read_safetensors(weights, ["W_dec"])["W_dec"]
    s = _scaling_factor(weights, keys)
    if s is not None and s.shape == W.shape[:1]:  # fold: (acts * s) @ W_dec == acts @ (s[:, None] * W_dec)
        W = W.float() * s.float()[:, None]
    return check_decoder(W, weights, shape_from_cfg(cfg, "d_sae", "d_in", folder / CFG_NAME))


def _architecture(cfg: dict[str, Any], where: Path) -> tuple[str, int | None]:
    arch = cfg.get("architecture") or "standard"
    act_fn = cfg.get("activation_fn_str") or cfg.get("activation_fn")
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if arch == "gated":
        raise UnsupportedError(
            f"{where}: gated SAEs (b_gate/b_mag/r_mag) have no forward pass in featgraph's Sae; "
            "load_decoder() reads their decoder"
        )
    if arch == "topk" or (arch == "standard" and act_fn == "topk"):
        k = cfg.get("k", kwargs.get("k"))
        if not isinstance(k, (int, float)) or isinstance(k, bool) or k != int(k) or k < 1:
            raise SaeFormatError(f"{where}: topk SAE needs an integer k >= 1, got k={k!r}")
        return "topk", int(k)
    if arch == "standard" and act_fn in (None, "relu"):
        return "relu", None
    if arch == "jumprelu":
        return "jumprelu", None
    raise UnsupportedError(
        f"{where}: SAELens architecture {arch!r} (activation {act_fn!r}) is not supported; "
        "featgraph runs standard (relu), topk and jumprelu SAEs"
    )


def read_sae(path: Path) -> Sae:
    folder = _folder(path)
    cfg_path, weights = folder / CFG_NAME, folder / WEIGHTS_NAME
    cfg = read_json(cfg_path)
    arch, k = _architecture(cfg, cfg_path)
    t = read_safetensors(weights)
    if arch == "jumprelu" and "threshold" not in t and "log_threshold" in t:  # SAELens training checkpoints
        t["threshold"] = t.pop("log_threshold").exp()
    require(t, ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if arch == "jumprelu" else []), weights)
    s = _scaling_factor(weights, list(t))
    if s is not None:
        t["W_dec"] = t["W_dec"] * s[:, None].to(t["W_dec"].dtype)
    n_features, d_in = shape_from_cfg(cfg, "d_sae", "d_in", cfg_path)
    extra: dict[str, Any] = {}
    norm = cfg.get("normalize_activations")
    if norm not in (None, "none"):
        extra["normalize_activations"] = norm
        log.warning("%s: normalize_activations=%r is kept in cfg.extra but featgraph does not rescale inputs",
                    cfg_path, norm)
    try:
        sae_cfg = SaeConfig(
            d_in=d_in or int(t["W_dec"].shape[-1]),
            n_features=n_features or int(t["W_dec"].shape[0]),
            architecture=arch,
            k=k,
            apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
            hook_name=_meta(cfg, "hook_name") or _meta(cfg, "hook_point"),
            model_name=_meta(cfg, "model_name"),
            source_format="saelens",
            extra=extra,
        )
    except ConfigError as e:
        raise SaeFormatError(f"{cfg_path}: {e}") from e
    return Sae.from_tensors(t, sae_cfg, where=str(weights))


def save(sae: Sae, folder: Path) -> Path:
    """Write ``cfg.json`` + ``sae_weights.safetensors`` (SAELens 6.x layout) into ``folder`` atomically."""
    from safetensors.torch import save_file

    c = sae.cfg
    tensors = {n: v.detach().to("cpu").contiguous() for n, v in sae.tensors().items()}
    meta = {"model_name": c.model_name, "hook_name": c.hook_name}
    cfg: dict[str, Any] = {
        "architecture": _TO_SAELENS[c.architecture],
        "d_in": c.d_in,
        "d_sae": c.n_features,
        "dtype": dtype_name(tensors["W_dec"]),
        "device": "cpu",
        "apply_b_dec_to_input": c.apply_b_dec_to_input,
        "normalize_activations": c.extra.get("normalize_activations", "none"),
        "reshape_activations": "none",
        "metadata": meta,
        **meta,  # older SAELens releases read these at the top level
    }
    if c.architecture == "topk":
        cfg["k"] = c.k
    with atomic_dir(folder) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_NAME))
        write_json_into(tmp / CFG_NAME, cfg)
    return Path(folder)
