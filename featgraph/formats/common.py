"""Helpers shared by the per-format readers and writers in ``featgraph.formats``.

Every function here turns library exceptions (safetensors, numpy, torch, json) into :mod:`featgraph.errors`
types whose message names the file, so that each reader stays a short list of "which tensor, which
orientation".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featgraph.errors import BadWeightsError, SaeFormatError, ShapeMismatchError
from featgraph.io.files import read_json, write_json_into  # noqa: F401  (the format modules import them from here)
from featgraph.io.weights import (  # noqa: F401  (the format modules import them from here)
    FLOAT_DTYPES,
    WEIGHT_NAMES,
    read_safetensors,
    refuse_non_float,
)

log = logging.getLogger("featgraph.formats")


def safetensors_keys(path: Path) -> list[str]:
    """Tensor names in a safetensors file (reads only the header, validated by :mod:`featgraph.io.readers`)."""
    from featgraph.io import readers

    return list(readers.safetensors_header(path))


def read_npz(path: Path, names: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """Named float arrays of an ``.npz`` (no pickle; sizes checked before allocating, see
    :func:`featgraph.io.arrays.read_npz`)."""
    from featgraph.io.arrays import read_npz as checked_read_npz

    arrays = checked_read_npz(path, names)
    for name, arr in arrays.items():
        refuse_non_float(name, arr.dtype, path)
    return arrays


def torch_load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain ``{name: tensor}`` state dict from a ``.pt`` file, loaded with ``weights_only=True`` only.

    ``mmap=True`` first, so that reading the decoder alone does not page in the encoder; files in torch's
    legacy (non-zip) format cannot be memory-mapped and are read whole.
    """
    _require_file(path)
    try:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, EOFError, RuntimeError, zipfile errors ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SaeFormatError(f"{path}: not a readable torch state dict ({first})") from e
    if not isinstance(obj, dict):
        raise SaeFormatError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    # dictionary_learning's hub mixin stores a config dict beside the tensors: keep tensors only
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for name, t in tensors.items():
        if name in WEIGHT_NAMES:  # buffers such as TopK's integer ``k`` are not weights
            refuse_non_float(name, t.dtype, path)
    return tensors


def require(tensors: dict[str, Any], names: list[str], where: Path | str) -> None:
    missing = [n for n in names if n not in tensors]
    if missing:
        raise SaeFormatError(f"{where}: tensor(s) {missing} missing (have {sorted(tensors)})")


def to_float32_numpy(t: torch.Tensor | np.ndarray) -> np.ndarray:
    """float32 numpy; fp16/bf16/fp64 are converted (bf16 via torch, which numpy cannot represent)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().to("cpu", torch.float32).numpy()
    return np.asarray(t, dtype=np.float32)


def check_decoder(
    W: torch.Tensor | np.ndarray, where: Path | str, expect: tuple[int | None, int | None] = (None, None)
) -> np.ndarray:
    """Validate a decoder already in rows-are-features orientation; return contiguous float32 ``[F, d_in]``.

    ``expect`` is ``(n_features, d_in)`` from the format's config where it has one (None: unknown).
    """
    shape = tuple(W.shape)
    refuse_non_float("W_dec", W.dtype, where)  # an int or bool decoder would silently match as floats
    if len(shape) != 2:
        raise ShapeMismatchError(f"{where}: decoder has shape {list(shape)}, expected [n_features, d_in]")
    if any(e is not None and e != s for e, s in zip(expect, shape, strict=True)):
        want = [e if e is not None else "?" for e in expect]
        raise ShapeMismatchError(
            f"{where}: decoder has shape {list(shape)}, expected {want} (n_features, d_in) from its config"
        )
    out = np.ascontiguousarray(to_float32_numpy(W))
    finite = np.isfinite(out)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        raise BadWeightsError(
            f"{where}: decoder has NaN/inf values in {rows.size} rows (first: {rows[:5].tolist()})"
        )
    return out


def shape_from_cfg(cfg: dict[str, Any], f_key: str, d_key: str, where: Path) -> tuple[int | None, int | None]:
    """(n_features, d_in) from a config, each None when absent; non-integers are a format error."""
    out = []
    for key in (f_key, d_key):
        v = cfg.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise SaeFormatError(f"{where}: {key}={v!r} is not a positive integer")
        out.append(v)
    return out[0], out[1]


def fold_b_dec(tensors: dict[str, torch.Tensor], applied: bool, want_applied: bool) -> torch.Tensor:
    """``b_enc`` for a target format that does (not) subtract ``b_dec`` before the encoder.

    ``(x - b_dec) @ W_enc + b_enc == x @ W_enc + (b_enc - b_dec @ W_enc)``: exact in real arithmetic, so the
    forward pass is preserved up to float rounding (not bit for bit). Used only by writers whose format fixes
    the flag.
    """
    b_enc = tensors["b_enc"]
    if applied == want_applied:
        return b_enc
    shift = (tensors["b_dec"].double() @ tensors["W_enc"].double()).to(b_enc.dtype)
    log.info("folding b_dec into b_enc: the target format %s b_dec before the encoder",
             "subtracts" if want_applied else "does not subtract")
    return b_enc - shift if not want_applied else b_enc + shift


def dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _require_file(path: Path) -> None:
    from featgraph.io.readers import require_file

    require_file(path)


# -- cfg values: every format reader checks the type of each value it uses ------------------------------------
_KINDS = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "dict": ("an object", lambda v: isinstance(v, dict)),
}


def cfg_value(cfg: dict[str, Any], key: str, kind: str, where: Path | str, *, default: Any = None,
              minimum: int | None = None) -> Any:
    """``cfg[key]`` if it is of ``kind`` (``int``, ``bool``, ``str``, ``dict``; ``minimum`` for ints), else a
    one-line SaeFormatError naming the file, the key and the value; ``default`` when absent or null."""
    v = cfg.get(key)
    if v is None:
        return default
    want, ok = _KINDS[kind]
    if not ok(v) or (minimum is not None and v < minimum):
        if minimum is not None:
            want += f" >= {minimum}"
        raise SaeFormatError(f"{where}: {key}={_short(v)} is not {want}")
    return v


def cfg_choice(cfg: dict[str, Any], key: str, choices: tuple[str, ...], where: Path | str, *,
               default: str | None = None) -> str | None:
    """``cfg[key]``, which must be one of ``choices`` (strings), else a SaeFormatError naming the value."""
    v = cfg_value(cfg, key, "str", where)
    if v is None:
        return default
    if v not in choices:
        raise SaeFormatError(f"{where}: {key}={_short(v)} is not one of {list(choices)}")
    return v


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
