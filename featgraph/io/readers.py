"""The one checked reader for every file a user hands featgraph: JSON and safetensors here,
npz / npy and faiss indices in :mod:`featgraph.io.arrays` (same rules, same helpers).

User files are untrusted: a cfg.json nested 200,000 levels deep, an integer of 5,000 digits, a safetensors
header whose offsets point past the end of the file, an npz member whose header claims a 4 TiB array, a
truncated shard. Every reader here validates what it can from sizes and headers BEFORE handing the bytes to a
library (json, safetensors, numpy, faiss) or allocating anything, and turns every failure into a
:class:`~featgraph.errors.SaeFormatError` whose message names the file. Nothing here unpickles.

This is a module of its own, not the read side of :mod:`featgraph.io.files`, because ``files`` is about atomic
writing; ``featgraph.io.files.read_json`` stays as an alias so existing imports keep working.

No torch import at module level: :mod:`featgraph.index` reads through here and must not pull torch in.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from featgraph.errors import SaeFormatError

# JSON files featgraph reads are configs, metadata and manifests: kilobytes. 64 MiB leaves room for a manifest of
# thousands of SAEs and still refuses a multi-GB file before reading it into memory.
JSON_MAX_BYTES = 64 * 2**20
# Real configs nest 2-4 levels; json's C parser recurses per level and raises RecursionError near 1,000.
JSON_MAX_DEPTH = 64
# An integer in a config is a width, a count or a seed; 30 digits is past any of them and far below Python's
# 4,300-digit int-parsing limit (whose ValueError would otherwise escape as a traceback).
JSON_MAX_INT_DIGITS = 30
# The safetensors library caps its header at 100 MB; ours says why in one line instead of a library message.
SAFETENSORS_MAX_HEADER = 100 * 2**20
# bytes per element of every safetensors dtype (the library's own table)
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
# numpy's own limit on dimensions; also keeps prod(shape) of a hostile header cheap (a million-entry shape would
# multiply ever-growing integers for minutes)
MAX_NDIM = 64
# a .npy header is at most 64 KiB in format 1.0; 2.0/3.0 allow 4 GiB, which no real array needs
NPY_MAX_HEADER = 2**20
# A deflated npz member may expand to at most this multiple of its compressed size plus the slack: trained weights
# barely compress (ratio ~1.1), while all-zero thresholds or biases compress ~1000x but are small. So memory stays
# in proportion to the file even when a member's header and the zip directory agree on a huge zero-filled array.
NPZ_MAX_RATIO, NPZ_RATIO_SLACK = 64, 64 * 2**20


def _err(path: Path | str, what: str, exc: BaseException | None = None) -> SaeFormatError:
    detail = ""
    if exc is not None:
        text = str(exc).strip().splitlines()
        detail = f" ({text[0][:200] if text else type(exc).__name__})"
    return SaeFormatError(f"{path}: {what}{detail}")


def require_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if it is a regular file (or a link to one); else a one-line error naming it."""
    path = Path(path)
    if not os.path.lexists(path):
        raise SaeFormatError(f"{path}: file not found")
    if not path.exists():
        raise SaeFormatError(f"{path}: a symbolic link to nothing ({os.readlink(path)})")
    if path.is_dir():
        raise SaeFormatError(f"{path}: is a folder, expected a file")
    if not path.is_file():
        raise SaeFormatError(f"{path}: not a regular file")
    return path


def _read_bytes(path: Path, limit: int) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise SaeFormatError(f"{path}: {size} bytes, more than the {limit} a file of this kind may have")
    try:
        with open(path, "rb") as f:
            return f.read(limit + 1)
    except OSError as e:
        raise _err(path, "cannot be read", e) from e


# -- JSON ---------------------------------------------------------------------------------------------------------
# a string literal, or an unterminated one running to the end: every match succeeds where it starts, so the scan
# stays linear even on repeated "\" (which a pattern that must find a closing quote rescans from every quote)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)


def json_depth(data: bytes) -> int:
    """Maximum bracket nesting of a JSON text, strings ignored; linear time, no recursion."""
    arr = np.frombuffer(_JSON_STRING.sub(b"", data), dtype=np.uint8)
    depth = deepest = 0
    for lo in range(0, arr.size, 2**20):  # in 1 MiB chunks: a 64 MiB file costs a few MiB here, not 1 GiB of int64
        chunk = arr[lo:lo + 2**20]
        step = ((chunk == ord("[")) | (chunk == ord("{"))).astype(np.int32)
        step -= (chunk == ord("]")) | (chunk == ord("}"))
        running = np.cumsum(step, dtype=np.int64) + depth
        deepest = max(deepest, int(running.max(initial=depth)))
        depth = int(running[-1]) if running.size else depth
    return deepest


def _json_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > JSON_MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits (at most {JSON_MAX_INT_DIGITS} are read)")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} overflows a float")
    return value


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:  # json keeps the last silently; which one the writer meant is unknowable
            raise ValueError(f"duplicate key {key[:80]!r}")
        out[key] = value
    return out


def parse_json_bytes(data: bytes, where: Path | str, *, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """Parse JSON from bytes with the guards of :func:`read_json` (any top-level type)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark, as some Windows editors write
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SaeFormatError(f"{where}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from e
    if not text.strip():
        raise SaeFormatError(f"{where}: empty file, expected JSON")
    depth = json_depth(data)
    if depth > max_depth:
        raise SaeFormatError(f"{where}: JSON nested {depth} levels deep (at most {max_depth} are read)")
    try:
        return json.loads(
            text,
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_json_constant,
            object_pairs_hook=_json_object,
        )
    except json.JSONDecodeError as e:
        raise SaeFormatError(f"{where}: not valid JSON ({e})") from e
    except (ValueError, RecursionError) as e:  # from the hooks above; RecursionError only past the depth scan
        raise SaeFormatError(f"{where}: not valid JSON ({e})") from e


def read_json(
    path: str | os.PathLike[str], *, required: bool = True, max_bytes: int = JSON_MAX_BYTES
) -> dict[str, Any]:
    """A JSON object from ``path`` (``{}`` when absent and not ``required``).

    Refused, naming the file: a folder or a dangling link, more than ``max_bytes``, non-UTF-8 bytes, nesting
    deeper than :data:`JSON_MAX_DEPTH`, integers longer than :data:`JSON_MAX_INT_DIGITS` digits, NaN / Infinity
    or overflowing floats, duplicate keys, and a top level that is not an object.
    """
    path = Path(path)
    if not required and not os.path.lexists(path):
        return {}
    path = require_file(path)
    obj = parse_json_bytes(_read_bytes(path, max_bytes), path)
    if not isinstance(obj, dict):
        raise SaeFormatError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


# -- safetensors ---------------------------------------------------------------------------------------------------
def safetensors_header(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The validated header of a safetensors file: ``{name: {"dtype", "shape", "data_offsets"}}``.

    Checked before the library sees the file: the 8-byte length fits in the file and under
    :data:`SAFETENSORS_MAX_HEADER`; the header is a JSON object; every tensor has a known dtype, a shape of
    non-negative integers and ``[start, end]`` offsets with ``end - start == prod(shape) * itemsize``; the
    tensors do not overlap and lie inside the file. Every failure reads
    ``<file>: not a readable safetensors file (<reason>)``.
    """
    path = require_file(path)

    def bad(reason: str) -> SaeFormatError:
        return SaeFormatError(f"{path}: not a readable safetensors file ({reason})")

    size = path.stat().st_size
    if size < 8:
        raise bad(f"{size} bytes, too short for the 8-byte header length")
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > SAFETENSORS_MAX_HEADER or 8 + n > size:
                raise bad(f"header length {n} but the file has {size} bytes; truncated or not safetensors")
            raw = f.read(n)
    except OSError as e:
        raise _err(path, "cannot be read", e) from e
    try:
        header = parse_json_bytes(raw.rstrip(b" "), "header")
    except SaeFormatError as e:
        raise bad(str(e)) from e
    if not isinstance(header, dict):
        raise bad(f"header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise bad("__metadata__ must map strings to strings")
    data_len = size - 8 - n
    spans = []
    for name, info in header.items():
        where = f"tensor {name[:80]!r}"
        if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"}:
            raise bad(f"{where}: expected {{dtype, shape, data_offsets}}, got {str(info)[:80]}")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise bad(f"{where}: unknown dtype {str(dtype)[:20]!r}")
        if isinstance(shape, list) and len(shape) > MAX_NDIM:
            raise bad(f"{where}: shape has {len(shape)} dimensions (at most {MAX_NDIM})")
        if not isinstance(shape, list) or not all(_nonneg_int(s) for s in shape):
            raise bad(f"{where}: shape {str(shape)[:80]} is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_nonneg_int(o) for o in offsets)):
            raise bad(f"{where}: data_offsets {str(offsets)[:80]} is not [start, end]")
        start, end = offsets
        nbytes = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        if end < start or end - start != nbytes:
            raise bad(f"{where}: data_offsets [{start}, {end}] hold {end - start} bytes but shape {shape} x "
                      f"{dtype} needs {nbytes}")
        if end > data_len:
            raise bad(f"{where}: data ends at byte {end} of a {data_len}-byte data section; truncated")
        spans.append((start, end, name))
    spans.sort()
    for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:], strict=False):
        if start_b < end_a:
            raise bad(f"tensors {a[:80]!r} and {b[:80]!r} overlap")
    return header


def _nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_safetensors(path: str | os.PathLike[str], names: Iterable[str] | None = None) -> dict[str, Any]:
    """The named torch tensors (all when ``names`` is None) of a safetensors file whose header
    :func:`safetensors_header` validated; a missing name is an error naming the file and what it has."""
    from safetensors import safe_open

    path = Path(path)
    header = safetensors_header(path)
    want = list(header) if names is None else list(names)
    missing = [n for n in want if n not in header]
    if missing:
        raise SaeFormatError(f"{path}: tensor(s) {missing} missing (have {sorted(header)})")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {n: f.get_tensor(n) for n in want}
    except Exception as e:  # SafetensorError has no public base class; the header checks above catch most
        raise _err(path, "not a readable safetensors file", e) from e
