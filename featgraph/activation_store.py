"""An on-disk activation store: sharded ``.npy`` files read memory-mapped, plus ``meta.json``.

Layout of a store folder::

    meta.json          model, hook_name, context_size, d_in, dtype, n_tokens, exclude_bos, shards, ...
    tokens.npy         int32 [n_contexts, context_size]: the contexts the activations came from
    acts_00000.npy     [n_rows, d_in] in ``dtype`` (float16 halves the disk; reading returns float32)

Each shard and every update of ``meta.json`` is written atomically, and ``meta.json`` records which contexts
are done, so a killed collection resumes where it stopped
(see :func:`featgraph.activations.collect_activations`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featgraph.errors import ConfigError, SaeFormatError, ShapeMismatchError
from featgraph.io_utils import atomic_write, write_json

META_NAME = "meta.json"
TOKENS_NAME = "tokens.npy"
DTYPES = ("float16", "float32")


def tokens_fingerprint(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes()).hexdigest()[:16]


class ActivationStore:
    """A folder of activation shards. ``ActivationStore(folder)`` opens one; :meth:`create` starts one."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / META_NAME
        try:
            self.meta: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise SaeFormatError(f"{path}: not an activation store (meta.json not found)") from e
        except json.JSONDecodeError as e:
            raise SaeFormatError(f"{path}: not valid JSON ({e})") from e

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

    def tokens(self) -> torch.Tensor:
        """The contexts ``[n_contexts, context_size]`` (int64) whose activations the store holds."""
        return torch.from_numpy(np.load(self.folder / TOKENS_NAME).astype(np.int64))

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
        path = self.folder / self.meta["shards"][i]["file"]
        try:
            return np.load(path, mmap_mode="r")
        except FileNotFoundError as e:
            raise SaeFormatError(f"{path}: shard listed in meta.json is missing") from e

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
                parts.append(np.asarray(self._shard(i)[lo - start:hi - start], dtype=np.float32))
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
            pending.append(np.asarray(self._shard(i)[:take], dtype=np.float32))
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
