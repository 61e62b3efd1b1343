"""SAE weights must be floating point: the dtype policy of every weights reader, and the checked safetensors read.

It lives in the io room, below both :mod:`featgraph.sae` (featgraph's own folder) and :mod:`featgraph.formats`
(every other format), so that both read weights through one policy without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featgraph.errors import BadWeightsError
from featgraph.io import readers

# Every tensor name the format readers use as SAE weights: these must hold floating-point numbers. An int32 or
# bool tensor under one of these names is a broken or foreign file, never something to convert and match.
WEIGHT_NAMES = frozenset({
    "W_enc", "b_enc", "W_dec", "b_dec", "threshold", "log_threshold", "scaling_factor",
    "encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias", "bias",
    "b_gate", "b_mag", "r_mag", "gate_bias", "w_enc", "w_dec",
})
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
# safetensors header dtype -> the name users know from numpy / torch (messages say "int32", not "I32")
_SAFETENSORS_NAMES = {
    "F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "BOOL": "bool",
    "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32",
    "U64": "uint64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
    "C64": "complex64",
}


def refuse_non_float(name: str, dtype: Any, where: Path | str) -> None:
    """A one-line error naming the file, the tensor and its dtype when ``dtype`` is not fp16/bf16/fp32/fp64."""
    text = str(dtype).removeprefix("torch.")
    text = _SAFETENSORS_NAMES.get(text, text)
    if text not in FLOAT_DTYPES:
        raise BadWeightsError(
            f"{where}: tensor {name!r} has dtype {text}; SAE weights must be floating point "
            f"({', '.join(FLOAT_DTYPES)})"
        )


def read_safetensors(path: Path, names: list[str] | None = None) -> dict[str, Any]:
    """The named tensors (all when ``names`` is None) of a safetensors file; a missing name is an error.

    The header is validated first (:func:`featgraph.io.readers.safetensors_header`: offsets inside the file and
    consistent with shape x dtype), and weight tensors (:data:`WEIGHT_NAMES`) must be floating point, checked
    from the header before any data is read. ``safe_open`` + ``get_tensor`` reads only the requested tensors.
    """
    header = readers.safetensors_header(path)
    for name in header if names is None else names:
        if name in WEIGHT_NAMES and name in header:
            refuse_non_float(name, header[name]["dtype"], path)
    return readers.read_safetensors(path, names)
