"""An on-disk activation store: sharded ``.npy`` files read memory-mapped, plus ``meta.json``.

Layout of a store folder::

    meta.json          model, hook_name, context_size, d_in, dtype, n_tokens, exclude_bos, shards, ...
    tokens.npy         int32 [n_contexts, context_size]: the contexts the activations came from
    acts_00000.npy     [n_rows, d_in] in ``dtype`` (float16 halves the disk; reading returns float32)

Each shard and every update of ``meta.json`` is written atomically, and ``meta.json`` records which contexts
are done, so a killed collection resumes where it stopped
(see :func:`featgraph.activations.collect_activations`).

A store is a user's folder and is checked on opening, before any work: ``meta.json`` through the checked JSON
reader, with the required keys and types (extra keys, such as corpus provenance, are kept as they are); each
shard path must stay inside the store (no absolute path, no ``..``, no symlink leading out); every shard's and
``tokens.npy``'s .npy header must match the shape and dtype ``meta.json`` gives and the file's size (a truncated
shard is refused naming it). Reading refuses NaN/inf rows, naming the shard and the row.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featgraph.errors import ConfigError, SaeFormatError, ShapeMismatchError
from featgraph.io.arrays import read_npy
from featgraph.io.files import atomic_write, write_json
from featgraph.io.readers import read_json

META_NAME = "meta.json"
TOKENS_NAME = "tokens.npy"
DTYPES = ("float16", "float32")
# key -> (accepted types, what the message says); the keys this module and collect_activations read
_INT = (int,)
REQUIRED_META = {
    "model": ((str,), "a string"),
    "hook_name": ((str,), "a string"),
    "d_in": (_INT, "an integer >= 1"),
    "dtype": ((str,), f"one of {DTYPES}"),
    "context_size": (_INT, "an integer >= 1"),
    "n_contexts": (_INT, "an integer >= 0"),
    "exclude_bos": ((bool,), "true or false"),
    "tokens_sha256": ((str,), "a string"),
    "contexts_done": (_INT, "an integer >= 0"),
    "n_tokens": (_INT, "an integer >= 0"),
    "shards": ((list,), "a list"),
    "complete": ((bool,), "true or false"),
}


def tokens_fingerprint(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes()).hexdigest()[:16]


class ActivationStore:
    """A folder of activation shards. ``ActivationStore(folder)`` opens one; :meth:`create` starts one."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / META_NAME
        if not os.path.lexists(path):
            raise SaeFormatError(f"{path}: not an activation store (meta.json not found)")
        self.meta: dict[str, Any] = read_json(path)
        check_meta(self.meta, path)
        self._shard_paths = [self._inside(s["file"]) for s in self.meta["shards"]]
        for i, shard in enumerate(self.meta["shards"]):
            self._check_shard(i, shard["n_tokens"])
        read_npy(self.folder / TOKENS_NAME, shape=(self.meta["n_contexts"], self.meta["context_size"]),
                 dtype=np.int32, mmap=True)

    def _inside(self, name: str) -> Path:
        """``folder/name`` if it stays inside the store once links are resolved; else a one-line error."""
        where = self.folder / META_NAME
        rel = Path(name)
        if not name or "\x00" in name or rel.is_absolute() or ".." in rel.parts:
            raise SaeFormatError(f"{where}: shard path {name[:120]!r} must be a file name inside the store")
        path = self.folder / rel
        root = os.path.realpath(self.folder)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise SaeFormatError(
                f"{where}: shard {name[:120]!r} resolves to {os.path.realpath(path)}, outside the store {root}"
            )
        return path

    def _check_shard(self, i: int, n_rows: int) -> None:
        path = self._shard_paths[i]
        if not os.path.lexists(path):
            raise SaeFormatError(f"{path}: shard listed in meta.json is missing")
        read_npy(path, shape=(n_rows, self.d_in), dtype=self.meta["dtype"], mmap=True)

    @classmethod
    def create(cls, folder: str | Path, *, model: str, hook_name: str, d_in: int,
               tokens: np.ndarray | torch.Tensor, exclude_bos: bool, dtype: str = "float16",
               extra: dict[str, Any] | None = None) -> ActivationStore:
        """Start an empty store for the activations of ``tokens`` ``[n_contexts, context_size]``."""
        if dtype not in DTYPES:
            raise ConfigError(f"store dtype must be one of {DTYPES}, got {dtype!r}")
        tokens = np.asarray(tokens.cpu() if isinstance(tokens, torch.Tensor) else tokens, dtype=np.int32)
        if tokens.ndim != 2:
            raise ShapeMismatchError(
                f"tokens must be [n_contexts, context_size], got shape {list(tokens.shape)}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / TOKENS_NAME, lambda p: np.save(open(p, "wb"), tokens))
        meta = {
            "model": model, "hook_name": hook_name, "d_in": int(d_in), "dtype": dtype,
            "context_size": int(tokens.shape[1]), "n_contexts": int(tokens.shape[0]),
            "exclude_bos": bool(exclude_bos), "tokens_sha256": tokens_fingerprint(tokens),
            "contexts_done": 0, "n_tokens": 0, "shards": [], "complete": False, "extra": extra or {},
        }
        write_json(folder / META_NAME, meta)
        return cls(folder)

    # -- properties ----------------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def d_in(self) -> int:
        return int(self.meta["d_in"])

    @property
    def hook_name(self) -> str:
        return str(self.meta["hook_name"])

    def check_d_in(self, d_in: int, what: str) -> None:
        """Refuse, naming the store and ``what``, SAEs whose d_in is not the store's: the mismatch would
        otherwise surface as a matrix-multiply error deep inside the analysis."""
        if int(d_in) != self.d_in:
            raise ShapeMismatchError(
                f"{self.folder}: the store holds activations of d_in={self.d_in}, but {what} has d_in={int(d_in)}"
            )

    def tokens(self) -> torch.Tensor:
        """The contexts ``[n_contexts, context_size]`` (int64) whose activations the store holds."""
        arr = read_npy(self.folder / TOKENS_NAME, shape=(self.meta["n_contexts"], self.meta["context_size"]),
                       dtype=np.int32)
        return torch.from_numpy(arr.astype(np.int64))

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.folder)!r}, hook={self.hook_name!r}, n_tokens={self.n_tokens})"

    # -- writing -------------------------------------------------------------------------------------------
    def write(self, acts: torch.Tensor | np.ndarray, *, contexts_done: int | None = None) -> None:
        """Append one shard of rows ``[n, d_in]``; ``contexts_done`` records progress for resuming."""
        arr = acts.detach().cpu().numpy() if isinstance(acts, torch.Tensor) else np.asarray(acts)
        if arr.ndim != 2 or arr.shape[1] != self.d_in:
            raise ShapeMismatchError(
                f"{self.folder}: shard has shape {list(arr.shape)}, expected [n, {self.d_in}]")
        arr = np.ascontiguousarray(arr, dtype=self.meta["dtype"])
        name = f"acts_{len(self.meta['shards']):05d}.npy"
        atomic_write(self.folder / name, lambda p: np.save(open(p, "wb"), arr))
        self._shard_paths.append(self.folder / name)
        self.meta["shards"].append({"file": name, "n_tokens": int(arr.shape[0])})
        self.meta["n_tokens"] += int(arr.shape[0])
        if contexts_done is not None:
            self.meta["contexts_done"] = int(contexts_done)
        write_json(self.folder / META_NAME, self.meta)

    def mark_complete(self) -> None:
        self.meta["complete"] = True
        write_json(self.folder / META_NAME, self.meta)

    # -- reading -------------------------------------------------------------------------------------------
    def _shard(self, i: int) -> np.ndarray:
        """Shard ``i`` memory-mapped, its header checked again (it may have changed since the store opened)."""
        self._check_shard(i, self.meta["shards"][i]["n_tokens"])
        return read_npy(self._shard_paths[i], mmap=True)

    def _rows(self, i: int, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` of shard ``i`` as float32; NaN/inf refused naming the shard and the row: every
        statistic computed from such a store would be NaN without saying why."""
        rows = np.asarray(self._shard(i)[lo:hi], dtype=np.float32)
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise SaeFormatError(
                f"{self._shard_paths[i]}: {bad.size} rows with NaN/inf activations (first: row {lo + int(bad[0])})"
            )
        return rows

    def read(self, n_tokens: int | None = None, offset: int = 0) -> torch.Tensor:
        """Rows ``offset .. offset + n_tokens`` (all remaining when None) as a float32 tensor."""
        end = self.n_tokens if n_tokens is None else min(self.n_tokens, offset + n_tokens)
        if offset < 0 or offset > self.n_tokens:
            raise ConfigError(f"{self.folder}: offset {offset} outside the store's {self.n_tokens} tokens")
        parts, start = [], 0
        for i, shard in enumerate(self.meta["shards"]):
            stop = start + shard["n_tokens"]
            lo, hi = max(offset, start), min(end, stop)
            if lo < hi:
                parts.append(self._rows(i, lo - start, hi - start))
            start = stop
        if not parts:
            return torch.zeros(0, self.d_in)
        return torch.from_numpy(np.concatenate(parts))

    def iter_batches(self, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                     buffer_tokens: int = 2**18, drop_last: bool = False,
                     n_tokens: int | None = None) -> Iterator[torch.Tensor]:
        """Float32 batches ``[batch_size, d_in]`` over the first ``n_tokens`` rows (all when None).

        Shuffling is two-level and seeded: shards are visited in a random order, and rows are permuted
        inside a buffer of about ``buffer_tokens`` rows filled from several shards, so a batch mixes many
        documents.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        limit = self.n_tokens if n_tokens is None else min(n_tokens, self.n_tokens)
        rng = np.random.default_rng(seed)
        spans, start = [], 0  # (shard index, rows used) within the limit
        for i, shard in enumerate(self.meta["shards"]):
            take = min(shard["n_tokens"], limit - start)
            if take <= 0:
                break
            spans.append((i, take))
            start += take
        if shuffle:
            spans = [spans[j] for j in rng.permutation(len(spans))]
        carry = np.zeros((0, self.d_in), np.float32)
        pending: list[np.ndarray] = []
        pending_rows = 0
        for n_span, (i, take) in enumerate(spans):
            pending.append(self._rows(i, 0, take))
            pending_rows += take
            if pending_rows < buffer_tokens and n_span + 1 < len(spans):
                continue
            buf = np.concatenate([carry, *pending])
            pending, pending_rows = [], 0
            if shuffle:
                buf = buf[rng.permutation(len(buf))]
            n_full = len(buf) // batch_size * batch_size
            for b in range(0, n_full, batch_size):
                yield torch.from_numpy(buf[b:b + batch_size])
            carry = buf[n_full:]
        if len(carry) and not drop_last:
            yield torch.from_numpy(carry)


def check_meta(meta: dict[str, Any], where: Path | str) -> None:
    """Required keys of a store's ``meta.json`` with their types and ranges; extra keys are allowed."""
    for key, (types, want) in REQUIRED_META.items():
        if key not in meta:
            raise SaeFormatError(f"{where}: missing key {key!r} (an activation store's meta.json has "
                                 f"{', '.join(REQUIRED_META)})")
        v = meta[key]
        if not isinstance(v, types) or (bool not in types and isinstance(v, bool)):
            raise SaeFormatError(f"{where}: {key}={str(v)[:80]!r} should be {want}")
    for key in ("d_in", "context_size"):
        if meta[key] < 1:
            raise SaeFormatError(f"{where}: {key}={meta[key]} should be an integer >= 1")
    for key in ("n_contexts", "contexts_done", "n_tokens"):
        if meta[key] < 0:
            raise SaeFormatError(f"{where}: {key}={meta[key]} should be an integer >= 0")
    if meta["dtype"] not in DTYPES:
        raise SaeFormatError(f"{where}: dtype={meta['dtype'][:40]!r} should be one of {DTYPES}")
    if meta["contexts_done"] > meta["n_contexts"]:
        raise SaeFormatError(f"{where}: contexts_done={meta['contexts_done']} exceeds n_contexts={meta['n_contexts']}")
    total = 0
    for i, shard in enumerate(meta["shards"]):
        if not (isinstance(shard, dict) and isinstance(shard.get("file"), str)
                and isinstance(shard.get("n_tokens"), int) and not isinstance(shard["n_tokens"], bool)
                and shard["n_tokens"] >= 0):
            raise SaeFormatError(f"{where}: shards[{i}] = {str(shard)[:80]} should be "
                                 '{"file": <name>, "n_tokens": <integer >= 0>}')
        total += shard["n_tokens"]
    if total != meta["n_tokens"]:
        raise SaeFormatError(f"{where}: n_tokens={meta['n_tokens']} but the shards hold {total} rows")
