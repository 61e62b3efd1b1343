"""Gemma Scope: one ``params.npz`` per SAE (JumpReLU), read with ``np.load(allow_pickle=False)``.

Orientation (the same as featgraph's; nothing is transposed): ``W_enc [d, F]``, ``W_dec [F, d]`` (rows are
features), ``b_enc [F]``, ``b_dec [d]``, ``threshold [F]``. Square matrices are trusted to follow these names.
Gemma Scope's encoder does NOT subtract ``b_dec``: ``f = relu(pre) * (pre > threshold)`` with ``pre = x @
W_enc + b_enc``, which is featgraph's jumprelu with ``apply_b_dec_to_input = False`` (SAELens's Gemma Scope
loader builds the same JumpReLUSAE). The file carries no config: hook name and model are unknown to the
reader.

Key spellings: SAELens's loader renames ``w_enc`` / ``w_dec`` to ``W_enc`` / ``W_dec`` (``"W_" + key[2:]``),
so both are read; a file holding both spellings of one tensor is refused as ambiguous. A ``scaling_factor``
of all ones is ignored, as SAELens does; any other is refused (SAELens refuses it too for Gemma Scope).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from featgraph.errors import SaeFormatError, ShapeMismatchError, UnsupportedError
from featgraph.formats.common import check_decoder, fold_b_dec, read_npz
from featgraph.io.files import atomic_path
from featgraph.sae import Sae, SaeConfig

WEIGHTS_NAME = "params.npz"
NAMES = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")


def _file(path: Path) -> Path:
    return path / WEIGHTS_NAME if path.is_dir() else path


def _members(path: Path) -> set[str]:
    """Array names in the archive (the zip directory only); an unreadable file is refused naming it."""
    from featgraph.io.arrays import npz_members  # checked: a device or FIFO named .npz is never read to its end

    return npz_members(path)


def _read(path: Path, names: tuple[str, ...], *, whole_sae: bool = False) -> dict[str, np.ndarray]:
    """Only the named arrays, under either key spelling (``W_enc`` or ``w_enc``); returned under the canonical
    names."""
    members = _members(path)
    stored = {}
    for name in names:
        lower = "w_" + name[2:] if name.startswith("W_") else None
        if lower is not None and lower in members and name in members:
            raise SaeFormatError(f"{path}: holds both {name!r} and {lower!r}; which one is the SAE's is ambiguous")
        stored[name] = lower if lower is not None and lower in members and name not in members else name
    # featgraph.io.readers: member headers and sizes checked, no pickle, floats only
    arrays = read_npz(path, tuple(stored.values()))
    out = {name: arrays[key] for name, key in stored.items()}
    if whole_sae and "scaling_factor" in members:  # decoder-only reads accept it: directions are unchanged
        s = read_npz(path, ("scaling_factor",))["scaling_factor"]
        if not bool((s == 1).all()):
            raise UnsupportedError(f"{path}: scaling_factor is not all ones: Gemma Scope SAEs have none, and "
                                   "SAELens's loader refuses it too; load_decoder() still reads the decoder")
    return out


def read_decoder(path: Path) -> np.ndarray:
    f = _file(path)
    return check_decoder(_read(f, ("W_dec",))["W_dec"], f)


def read_sae(path: Path) -> Sae:
    f = _file(path)
    arrays = _read(f, NAMES, whole_sae=True)
    tensors = {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in arrays.items()}
    W_dec = tensors["W_dec"]
    if W_dec.ndim != 2:
        raise ShapeMismatchError(f"{f}: W_dec has shape {list(W_dec.shape)}, expected [n_features, d_in]")
    cfg = SaeConfig(d_in=int(W_dec.shape[1]), n_features=int(W_dec.shape[0]), architecture="jumprelu",
                    apply_b_dec_to_input=False, source_format="gemmascope")
    return Sae.from_tensors(tensors, cfg, where=str(f))


def save(sae: Sae, path: Path) -> Path:
    """Write ``params.npz`` atomically (``path`` may be the file or a folder to hold it).

    Gemma Scope is JumpReLU only: a relu SAE is written with thresholds 0 (``pre * (pre > 0) == relu(pre)``),
    a topk SAE raises UnsupportedError. An SAE that subtracts ``b_dec`` before its encoder is written with
    ``b_dec @ W_enc`` folded into ``b_enc`` (same forward pass up to float rounding). bf16 weights are stored
    as float32 (numpy has no bf16).
    """
    c = sae.cfg
    target = path if path.suffix == ".npz" and not path.is_dir() else path / WEIGHTS_NAME
    if c.architecture == "topk":
        raise UnsupportedError(f"Gemma Scope params.npz holds JumpReLU SAEs; cannot write topk to {target}")
    t = {n: v.detach().to("cpu") for n, v in sae.tensors().items()}
    t["b_enc"] = fold_b_dec(t, c.apply_b_dec_to_input, False)
    if "threshold" not in t:
        t["threshold"] = torch.zeros_like(t["b_enc"])

    def as_numpy(v: torch.Tensor) -> np.ndarray:
        return (v.float() if v.dtype == torch.bfloat16 else v).contiguous().numpy()

    # a file object, because np.savez given a name not ending in .npz appends ".npz" to it
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{n: as_numpy(t[n]) for n in NAMES})
    return target
