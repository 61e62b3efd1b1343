"""The checked readers of numpy and faiss files a user hands featgraph: ``.npy`` (activation shards, norms),
``.npz`` (Gemma Scope ``params.npz``), and faiss ``IndexFlatIP`` files. The rules are those of
:mod:`featgraph.io.readers`: sizes and headers are validated before any library reads or allocates, nothing is
unpickled, and every failure is a one-line :class:`~featgraph.errors.SaeFormatError` naming the file.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from featgraph.errors import SaeFormatError
from featgraph.io.readers import MAX_NDIM, NPY_MAX_HEADER, NPZ_MAX_RATIO, NPZ_RATIO_SLACK, _err, require_file


# -- npy / npz -----------------------------------------------------------------------------------------------------
def _npy_header(f: Any, where: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran_order) from an open .npy stream, refusing object (pickled) dtypes."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=NPY_MAX_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=NPY_MAX_HEADER)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise _err(where, "not a readable .npy array", e) from e
    if len(shape) > MAX_NDIM:
        raise SaeFormatError(f"{where}: header claims {len(shape)} dimensions (at most {MAX_NDIM})")
    if dtype.hasobject or dtype.kind not in "biufc":
        raise SaeFormatError(f"{where}: array of dtype {dtype} (only numeric arrays are read; no pickle)")
    return tuple(int(s) for s in shape), dtype, bool(fortran)


def npy_info(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file, checked against its size (a truncated file is refused)."""
    path = require_file(path)
    try:
        with open(path, "rb") as f:
            shape, dtype, _ = _npy_header(f, str(path))
            offset = f.tell()
    except OSError as e:
        raise _err(path, "cannot be read", e) from e
    need = offset + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size != need:
        raise SaeFormatError(
            f"{path}: header says shape {list(shape)} {dtype} ({need} bytes with the header) but the file has "
            f"{size} bytes ({'truncated' if size < need else 'trailing data'})"
        )
    return shape, dtype, offset


def read_npy(
    path: str | os.PathLike[str],
    *,
    shape: tuple[int | None, ...] | None = None,
    dtype: str | np.dtype | None = None,
    mmap: bool = False,
) -> np.ndarray:
    """A numeric .npy array (memory-mapped with ``mmap``), checked before reading: header, file size, and the
    expected ``shape`` (None entries free) and ``dtype`` when given. Never unpickles."""
    path = Path(path)
    got, got_dtype, _ = npy_info(path)
    if shape is not None and (
        len(got) != len(shape) or any(w is not None and w != g for w, g in zip(shape, got, strict=False))
    ):
        want = [w if w is not None else "?" for w in shape]
        raise SaeFormatError(f"{path}: array of shape {list(got)}, expected {want}")
    if dtype is not None and got_dtype != np.dtype(dtype):
        raise SaeFormatError(f"{path}: array of dtype {got_dtype}, expected {np.dtype(dtype)}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise _err(path, "not a readable .npy array", e) from e


def npz_members(path: str | os.PathLike[str]) -> set[str]:
    """Array names in an ``.npz`` (its zip directory only), after :func:`require_file`: a device or FIFO named
    ``*.npz`` is refused before zipfile reads it to its (endless) end."""
    path = require_file(path)
    try:
        with zipfile.ZipFile(path) as zf:
            return {i.filename.removesuffix(".npy") for i in zf.infolist() if i.filename.endswith(".npy")}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise _err(path, "not a readable npz file", e) from e


def read_npz(path: str | os.PathLike[str], names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` archive, without pickle and in memory bounded by the real data.

    Each member's .npy header is read first and its claimed ``shape x itemsize`` compared with the member's
    uncompressed size in the zip directory; the data is then read from the stream up to exactly that size, so a
    header or a zip entry that lies about a 4 TiB array fails after reading what is really there, never by
    allocating what it claims.
    """
    path = require_file(path)
    names = list(names)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise _err(path, "not a readable npz file", e) from e
    with zf:
        members = {i.filename.removesuffix(".npy"): i for i in zf.infolist() if i.filename.endswith(".npy")}
        missing = [n for n in names if n not in members]
        if missing:
            raise SaeFormatError(f"{path}: tensor(s) {missing} missing (have {sorted(members)})")
        return {n: _read_member(zf, members[n], f"{path}[{n}]") for n in names}


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    try:
        with zf.open(info) as f:
            shape, dtype, fortran = _npy_header(f, where)
            header_len = f.tell()
            nbytes = math.prod(shape) * dtype.itemsize
            if header_len + nbytes != info.file_size:
                raise SaeFormatError(
                    f"{where}: header claims shape {list(shape)} {dtype} ({nbytes} bytes) but the member holds "
                    f"{info.file_size - header_len} bytes of data"
                )
            if info.file_size > NPZ_MAX_RATIO * info.compress_size + NPZ_RATIO_SLACK:
                raise SaeFormatError(
                    f"{where}: {info.compress_size} compressed bytes claim to expand to {info.file_size} "
                    f"(more than {NPZ_MAX_RATIO}x + {NPZ_RATIO_SLACK >> 20} MiB); a decompression bomb, not weights"
                )
            buf = bytearray()
            while len(buf) < nbytes:  # chunks: a lying zip entry costs at most what it really decompresses to
                chunk = f.read(min(2**24, nbytes - len(buf)))
                if not chunk:
                    raise SaeFormatError(f"{where}: data ends after {len(buf)} of {nbytes} bytes (truncated)")
                buf += chunk
    except SaeFormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as e:
        raise _err(where, "not a readable npz member", e) from e
    arr = np.frombuffer(bytes(buf), dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C").copy()


# -- faiss ---------------------------------------------------------------------------------------------------------
# faiss.write_index of an IndexFlatIP: fourcc "IxFI", d (int32), ntotal (int64), two int64 placeholders,
# is_trained (1 byte), metric_type (int32, 0 = inner product), the vector length (uint64), then the floats.
_FLAT_IP_HEADER = struct.Struct("<4siqqqBiQ")


def check_flat_ip_file(path: str | os.PathLike[str], *, d: int, ntotal: int) -> Path:
    """Check a saved ``IndexFlatIP`` of ``ntotal x d`` from its header and size before faiss reads it: faiss
    aborts or allocates what the file claims on some corrupt inputs, so garbage must not reach it."""
    path = require_file(path)
    size = path.stat().st_size
    need = _FLAT_IP_HEADER.size + 4 * d * ntotal
    try:
        with open(path, "rb") as f:
            head = f.read(_FLAT_IP_HEADER.size)
    except OSError as e:
        raise _err(path, "cannot be read", e) from e
    if len(head) < _FLAT_IP_HEADER.size:
        raise SaeFormatError(f"{path}: {size} bytes, too short for a faiss IndexFlatIP")
    fourcc, fd, fn, _, _, _, metric, count = _FLAT_IP_HEADER.unpack(head)
    if fourcc != b"IxFI" or metric != 0:
        raise SaeFormatError(f"{path}: not a faiss IndexFlatIP file (starts with {fourcc!r}, metric {metric})")
    if (fd, fn, count) != (d, ntotal, d * ntotal) or size != need:
        raise SaeFormatError(
            f"{path}: holds {fn} x {fd} rows in {size} bytes; expected {ntotal} x {d} in {need} bytes "
            "(truncated or from another SAE)"
        )
    return path
