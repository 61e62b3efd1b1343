"""SAELens: ``cfg.json`` + ``sae_weights.safetensors`` in one folder (``sparsity.safetensors`` is not used).

Orientation (same as featgraph's, so nothing is transposed): ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``
(rows are features), ``b_enc [d_sae]``, ``b_dec [d_in]``; jumprelu adds ``threshold [d_sae]``; gated SAEs have
``b_gate``, ``b_mag``, ``r_mag`` and no ``b_enc``. A square ``W_dec`` is trusted to be ``[d_sae, d_in]``.

``cfg.json`` layouts read here:

- SAELens 6.x: ``d_in``, ``d_sae``, ``architecture``, ``apply_b_dec_to_input``, ``normalize_activations``,
  ``reshape_activations`` (and ``k``, ``rescale_acts_by_decoder_norm`` for topk) at the top; ``model_name`` /
  ``hook_name`` / ``hook_head_index`` under ``metadata`` (``meta`` in early 6.0 releases);
- older releases: everything at the top, ``hook_point`` / ``hook_point_head_index`` instead of ``hook_name`` /
  ``hook_head_index`` in the oldest, ``activation_fn_str`` for ``activation_fn``, TopK written as
  ``architecture: standard`` with ``activation_fn: topk`` and ``activation_fn_kwargs: {k: ...}``, and
  ``normalize_activations`` as a bool (true meaning ``expected_average_only_in``, as SAELens reads it).

Every cfg flag that changes encode/decode, as SAELens 6.54 applies it (``sae_lens/saes/*.py``):

- ``apply_b_dec_to_input``: subtract ``b_dec`` before the encoder (featgraph's flag of the same name);
- ``rescale_acts_by_decoder_norm`` (topk; TopK training checkpoints, decoder norms not folded): SAELens scales
  the pre-activations by ``||W_dec[i]||`` before the top-k and divides the activations by it before decoding.
  Folded exactly at load (``W_enc * n``, ``b_enc * n``, ``W_dec / n``), as SAELens's own ``fold_W_dec_norm``
  does: the same top-k, the same activations, the same reconstruction; ``load_decoder`` gives the folded rows;
- ``normalize_activations``: ``none`` is nothing; ``layer_norm`` and ``constant_norm_rescale`` normalise every
  token at run time (per-token mean/std, per-token norm) and undo it after decoding, which featgraph's ``Sae``
  cannot represent: refused. ``expected_average_only_in`` and ``covariance_whitening`` are constants of the
  training data that the SAE file does not hold (SAELens folds them at the end of training, or from its
  registry for hub releases): refused, since neither SAELens nor featgraph can apply them from the file;
- ``hook_head_index`` and ``reshape_activations: hook_z`` (an attention-head SAE): encode/decode act on a
  flattened or single head of a ``[..., n_heads, d_head]`` site, which featgraph's eval and stitch splice
  whole: refused;
- jumprelu ``threshold`` (or ``log_threshold`` in old training checkpoints, exponentiated as SAELens does):
  ``relu(pre) * (pre > threshold)``; topk ``k``: top-k of the pre-activations, relu'd;
- old ``scaling_factor [d_sae]`` (finetuning) multiplies the activations before decoding: folded into W_dec.

Refused files still give their decoder to ``load_decoder`` (the directions are right; matching needs no more).
The writer emits the 6.x layout (``model_name`` / ``hook_name`` also at the top, where pre-6 readers look;
pre-6 SAELens also wants training fields such as ``context_size`` that featgraph does not know).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from featgraph.errors import BadWeightsError, ConfigError, SaeFormatError, UnsupportedError
from featgraph.formats.common import (
    cfg_choice,
    cfg_value,
    check_decoder,
    dtype_name,
    read_json,
    read_safetensors,
    require,
    safetensors_keys,
    shape_from_cfg,
    write_json_into,
)
from featgraph.io.output import atomic_dir
from featgraph.sae import Sae, SaeConfig, fold_decoder_norms

CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae_weights.safetensors"
# featgraph architecture -> SAELens architecture
_TO_SAELENS = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}
_NORMALISATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm", "covariance_whitening")
_WHY_NOT = {
    "layer_norm": "SAELens subtracts each token's mean and divides by its std before encoding and undoes it after "
                  "decoding, a per-token normalisation featgraph's Sae cannot represent",
    "constant_norm_rescale": "SAELens rescales each token to norm sqrt(d_in) before encoding and undoes it after "
                             "decoding, a per-token normalisation featgraph's Sae cannot represent",
    "expected_average_only_in": "the inputs were scaled by a dataset-wide constant that the SAE file does not "
                                "hold; fold it in with SAELens's fold_activation_norm_scaling_factor and save "
                                "with normalize_activations='none'",
    "covariance_whitening": "the whitening statistics are not in the SAE file; fold them in with SAELens's "
                            "fold_activation_whitening and save with normalize_activations='none'",
}
_DECODER_ONLY = "load_decoder() still reads its decoder directions"


def _folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _meta(cfg: dict[str, Any], keys: tuple[str, ...], kind: str, where: Path) -> Any:
    """A cfg value at the top level (older SAELens) or under ``metadata`` / ``meta`` (6.x), under any of its
    spellings (newest first), type-checked."""
    for nest in (cfg, cfg.get("metadata"), cfg.get("meta")):
        if not isinstance(nest, dict):
            continue
        for key in keys:
            v = cfg_value(nest, key, kind, where)
            if v is not None:
                return v
    return None


def _parse(cfg: dict[str, Any], where: Path) -> dict[str, Any]:
    """Every cfg value featgraph uses, type-checked (a wrong type or unknown value: SaeFormatError naming the file,
    key and value). Refusing flags featgraph cannot run is left to :func:`read_sae`."""
    for nest in ("metadata", "meta"):
        cfg_value(cfg, nest, "dict", where)
    n_features, d_in = shape_from_cfg(cfg, "d_sae", "d_in", where)
    arch = cfg_value(cfg, "architecture", "str", where, default="standard")
    act_fn = cfg_value(cfg, "activation_fn_str", "str", where) or cfg_value(cfg, "activation_fn", "str", where)
    kwargs = cfg_value(cfg, "activation_fn_kwargs", "dict", where, default={})
    k = cfg_value(cfg, "k", "int", where, minimum=1)
    if k is None:
        k = cfg_value(kwargs, "k", "int", f"{where} (activation_fn_kwargs)", minimum=1)
    norm = cfg.get("normalize_activations")
    if isinstance(norm, bool):  # pre-6 releases: SAELens reads true as expected_average_only_in
        norm = "expected_average_only_in" if norm else "none"
    else:
        norm = cfg_choice(cfg, "normalize_activations", _NORMALISATIONS, where, default="none")
    hook_name = _meta(cfg, ("hook_name", "hook_point"), "str", where)
    reshape = cfg_choice(cfg, "reshape_activations", ("none", "hook_z"), where)
    if reshape is None:  # SAELens's default for configs that do not say: hook_z reshaping for hook_z sites
        reshape = "hook_z" if hook_name and "hook_z" in hook_name else "none"
    return {
        "n_features": n_features, "d_in": d_in, "architecture": arch, "activation_fn": act_fn, "k": k,
        "apply_b_dec_to_input": cfg_value(cfg, "apply_b_dec_to_input", "bool", where, default=True),
        "normalize_activations": norm,
        "rescale_acts_by_decoder_norm": cfg_value(cfg, "rescale_acts_by_decoder_norm", "bool", where,
                                                  default=False),
        "hook_name": hook_name,
        "hook_head_index": _meta(cfg, ("hook_head_index", "hook_point_head_index"), "int", where),
        "reshape_activations": reshape,
        "model_name": _meta(cfg, ("model_name",), "str", where),
    }


def _architecture(c: dict[str, Any], where: Path) -> str:
    arch, act_fn = c["architecture"], c["activation_fn"]
    if arch == "gated":
        raise UnsupportedError(f"{where}: gated SAEs (b_gate/b_mag/r_mag) have no forward pass in featgraph's Sae; "
                               + _DECODER_ONLY)
    if arch == "topk" or (arch == "standard" and act_fn == "topk"):
        if c["k"] is None:
            raise SaeFormatError(f"{where}: topk SAE needs an integer k >= 1, got none")
        return "topk"
    if arch == "standard" and act_fn in (None, "relu"):
        return "relu"
    if arch == "jumprelu" and act_fn in (None, "relu"):
        return "jumprelu"
    raise UnsupportedError(
        f"{where}: SAELens architecture {arch!r} (activation_fn {act_fn!r}) is not supported; featgraph runs "
        f"standard (relu), topk and jumprelu SAEs; {_DECODER_ONLY}"
    )


def _refuse_unrunnable(c: dict[str, Any], arch: str, where: Path) -> None:
    """One line naming the first cfg flag whose encode/decode featgraph cannot reproduce exactly."""
    norm = c["normalize_activations"]
    if norm != "none":
        raise UnsupportedError(f"{where}: normalize_activations={norm!r}: {_WHY_NOT[norm]}; {_DECODER_ONLY}")
    if c["hook_head_index"] is not None:
        raise UnsupportedError(
            f"{where}: hook_head_index={c['hook_head_index']}: the SAE reads one attention head of "
            f"{c['hook_name']}, and featgraph's eval/stitch splice the whole hook; {_DECODER_ONLY}")
    if c["reshape_activations"] == "hook_z":
        raise UnsupportedError(
            f"{where}: reshape_activations='hook_z': the SAE reads {c['hook_name']} flattened over heads, and "
            f"featgraph's eval/stitch splice [..., d_in] sites; {_DECODER_ONLY}")
    if c["rescale_acts_by_decoder_norm"] and arch != "topk":
        raise UnsupportedError(f"{where}: rescale_acts_by_decoder_norm=true on a {arch} SAE: SAELens applies it "
                               f"to topk SAEs only; {_DECODER_ONLY}")


def _decoder_norms(W_dec: torch.Tensor, where: Path) -> torch.Tensor:
    norms = W_dec.float().norm(dim=-1)
    if not bool((norms > 0).all()):
        rows = torch.nonzero(norms == 0).flatten()[:5].tolist()
        raise BadWeightsError(f"{where}: rescale_acts_by_decoder_norm=true but decoder rows {rows} have norm 0")
    return norms


def _scaling_factor(weights: Path, keys: list[str]) -> torch.Tensor | None:
    """Old SAELens fine-tuning ``scaling_factor [d_sae]`` multiplies the activations before the decoder; None when
    absent or all ones."""
    if "scaling_factor" not in keys:
        return None
    s = read_safetensors(weights, ["scaling_factor"])["scaling_factor"]
    return None if bool((s == 1).all()) else s


def read_decoder(path: Path) -> np.ndarray:
    folder = _folder(path)
    cfg_path = folder / CFG_NAME
    c = _parse(read_json(cfg_path), cfg_path)
    weights = folder / WEIGHTS_NAME
    keys = safetensors_keys(weights)
    W = read_safetensors(weights, ["W_dec"])["W_dec"]
    s = _scaling_factor(weights, keys)
    if s is not None and s.shape == W.shape[:1]:  # fold: (acts * s) @ W_dec == acts @ (s[:, None] * W_dec)
        W = W.float() * s.float()[:, None]
    W = check_decoder(W, weights, (c["n_features"], c["d_in"]))
    if c["rescale_acts_by_decoder_norm"] and W.ndim == 2:  # the rows load_sae uses: unit norm once folded
        W = W / _decoder_norms(torch.from_numpy(W), cfg_path).numpy()[:, None]
    return W


def read_sae(path: Path) -> Sae:
    folder = _folder(path)
    cfg_path, weights = folder / CFG_NAME, folder / WEIGHTS_NAME
    c = _parse(read_json(cfg_path), cfg_path)
    arch = _architecture(c, cfg_path)
    _refuse_unrunnable(c, arch, cfg_path)
    t = read_safetensors(weights)
    if arch == "jumprelu" and "threshold" not in t and "log_threshold" in t:  # SAELens training checkpoints
        t["threshold"] = t.pop("log_threshold").exp()
    require(t, ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if arch == "jumprelu" else []), weights)
    s = _scaling_factor(weights, list(t))
    if s is not None:
        t["W_dec"] = t["W_dec"] * s[:, None].to(t["W_dec"].dtype)
    n_features, d_in = c["n_features"], c["d_in"]
    try:
        sae_cfg = SaeConfig(
            d_in=d_in or int(t["W_dec"].shape[-1]),
            n_features=n_features or int(t["W_dec"].shape[0]),
            architecture=arch,
            k=c["k"] if arch == "topk" else None,
            apply_b_dec_to_input=c["apply_b_dec_to_input"],
            hook_name=c["hook_name"],
            model_name=c["model_name"],
            source_format="saelens",
        )
    except ConfigError as e:
        raise SaeFormatError(f"{cfg_path}: {e}") from e
    if c["rescale_acts_by_decoder_norm"]:
        sae_cfg.extra["folded"] = "rescale_acts_by_decoder_norm: decoder norms folded into the encoder"
        W_dec = t["W_dec"]
        if W_dec.ndim == 2 and W_dec.shape[0] == sae_cfg.n_features:  # else from_tensors names the bad shape
            t = fold_decoder_norms({n: v.float() for n, v in t.items()}, _decoder_norms(W_dec, cfg_path))
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
        "normalize_activations": "none",
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
