"""The one way every consumer reads activations: :func:`iter_acts` yields float ``[B, d]`` batches in order from
anything that is :data:`ActivationsLike`: a ``[N, d]`` tensor or array (sliced), an
:class:`~featgraph.activations.store.ActivationStore` (streamed shard by shard, never read whole) or any object with
the :class:`Activations` protocol's ``iter_batches`` (e.g. :class:`StoreRows`, a row range of a store). Memory is
bounded by the batch size, not by the store. Stitch analyses, training health and evaluation read through here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch

from featgraph.activations.store import ActivationStore
from featgraph.errors import ConfigError, ShapeMismatchError


@runtime_checkable
class Activations(Protocol):
    """Anything that yields activation batches ``[B, d]`` in order (``shuffle=False``) or shuffled by ``seed``."""

    def iter_batches(self, batch_size: int, *, shuffle: bool = ..., seed: int = ...) -> Iterator[Any]: ...


ActivationsLike = Any  # torch.Tensor | np.ndarray [N, d] | Activations (an object with iter_batches)


def iter_acts(acts: ActivationsLike, batch_size: int, d_in: int | None = None) -> Iterator[torch.Tensor]:
    """Yield ``[B, d]`` batches, in order, from a tensor, an array or an activation store."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(acts, ActivationStore):  # streamed: each batch read from the memory-mapped shards, then dropped
        acts = StoreRows(acts)
    if hasattr(acts, "iter_batches"):
        where = getattr(getattr(acts, "store", acts), "folder", "activations")
        for b in acts.iter_batches(batch_size, shuffle=False, seed=0):
            b = torch.as_tensor(b)
            if b.ndim != 2 or (d_in is not None and b.shape[1] != d_in):
                raise ShapeMismatchError(f"{where}: activations have shape {list(b.shape)}, expected [n_tokens, "
                                         f"{d_in or 'd_in'}] (the SAEs' d_in)")
            yield b
        return
    x = torch.as_tensor(acts)
    if x.ndim != 2 or (d_in is not None and x.shape[1] != d_in):
        raise ShapeMismatchError(f"activations have shape {list(x.shape)}, expected [n_tokens, {d_in or 'd_in'}]")
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size]


def n_rows(acts: ActivationsLike) -> int | None:
    """Number of tokens when known up front (for progress bars)."""
    for attr in ("n_tokens", "__len__"):
        if hasattr(acts, attr):
            v = getattr(acts, attr)
            return int(v() if callable(v) else v)
    return None


class StoreRows:
    """Rows ``offset .. offset + n_tokens`` of an activation store, read in order batch by batch (never whole):
    each batch is one :meth:`ActivationStore.read` of the memory-mapped shards, so memory holds one batch.
    Iterating yields batches of :data:`EVAL_BATCH` rows (what :func:`featgraph.training.evaluate.reconstruction_metrics`
    reads). An empty range is refused naming the store.
    """

    def __init__(self, store: ActivationStore, n_tokens: int | None = None, offset: int = 0):
        if offset < 0 or offset > store.n_tokens:
            raise ConfigError(f"{store.folder}: offset {offset} outside the store's {store.n_tokens} tokens")
        end = store.n_tokens if n_tokens is None else min(store.n_tokens, offset + n_tokens)
        if end <= offset:
            raise ConfigError(f"{store.folder}: no activations from offset {offset}")
        self.store, self.offset, self.n_tokens = store, offset, end - offset

    def __len__(self) -> int:
        return self.n_tokens

    def head(self, n: int) -> StoreRows:
        """The first ``n`` rows."""
        return StoreRows(self.store, n, self.offset)

    def read(self) -> torch.Tensor:
        """All rows in memory (a training set to shuffle)."""
        return self.store.read(self.n_tokens, self.offset)

    def tail(self, n: int) -> StoreRows:
        """The rows from ``n`` on."""
        return StoreRows(self.store, self.n_tokens - n, self.offset + n)

    def iter_batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[torch.Tensor]:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if shuffle:
            raise ConfigError("StoreRows reads in order only; shuffle a training set in memory")
        for start in range(0, self.n_tokens, batch_size):
            yield self.store.read(min(batch_size, self.n_tokens - start), self.offset + start)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.iter_batches(EVAL_BATCH)


EVAL_BATCH = 4096
