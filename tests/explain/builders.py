"""Tiny stores and SAEs for the explain tests, and the brute-force oracle they are checked against.

The integer builders make every activation an exact small integer (integer inputs, integer encoder weights, zero
b_dec), so float32 batches and a float64 oracle agree bit for bit and ties are everywhere: the deterministic tie
order (activation desc, context asc, position asc) is then tested, not luck.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from featgraph.activations.store import ActivationStore
from featgraph.sae import Sae, SaeConfig


def token_store(folder: Path, x: np.ndarray, tokens: np.ndarray, *, exclude_bos: bool, model: str = "tiny",
                shard: int = 37) -> ActivationStore:
    """A store of rows ``x`` for ``tokens`` ``[n_contexts, context_size]`` (BOS at position 0 left out when
    ``exclude_bos``); odd shard sizes so that batches straddle shards."""
    st = ActivationStore.create(folder, model=model, hook_name="blocks.0.hook_resid_pre", d_in=x.shape[1],
                                tokens=tokens, exclude_bos=exclude_bos, dtype="float32")
    for i in range(0, len(x), shard):
        st.write(x[i:i + shard])
    st.mark_complete()
    return st


def integer_case(folder: Path, *, n_ctx: int = 9, ctx: int = 7, d: int = 6, F: int = 10, vocab: int = 5,
                 exclude_bos: bool = True, seed: int = 0) -> tuple[ActivationStore, Sae]:
    """A store of small-integer rows (with repeated contexts: exact ties between contexts) and an integer SAE."""
    rng = np.random.default_rng(seed)
    rpc = ctx - int(exclude_bos)
    x = rng.integers(-2, 3, size=(n_ctx, rpc, d)).astype(np.float32)
    x[n_ctx // 2] = x[0]  # a context repeated: every feature ties between contexts 0 and n_ctx // 2
    x[1, 2] = x[1, 4]  # a row repeated within a context: the first max position must win
    tokens = rng.integers(2, 2 + vocab, size=(n_ctx, ctx)).astype(np.int32)
    if exclude_bos:
        tokens[:, 0] = 1
    W_enc = rng.integers(-2, 3, size=(d, F)).astype(np.float32)
    b_enc = rng.integers(-2, 2, size=F).astype(np.float32)
    b_enc[-1] = -100.0  # a feature that never fires
    t = {"W_enc": torch.from_numpy(W_enc), "b_enc": torch.from_numpy(b_enc),
         "W_dec": torch.from_numpy(rng.standard_normal((F, d)).astype(np.float32)), "b_dec": torch.zeros(d)}
    sae = Sae.from_tensors(t, SaeConfig(d_in=d, n_features=F))
    return token_store(folder, x.reshape(-1, d), tokens, exclude_bos=exclude_bos), sae


def dense_acts(sae: Sae, store: ActivationStore) -> np.ndarray:
    """All activations ``[n_tokens, F]`` at once, in float64 (the oracle's input)."""
    from featgraph.sae import as_dtype

    with torch.no_grad():
        return as_dtype(sae, torch.float64).encode(store.read().double()).numpy()


def brute_examples(A: np.ndarray, tokens: np.ndarray, first: int, k: int, before: int, after: int) -> list[tuple]:
    """Every feature's top-k distinct contexts by argsort: (feature, rank, activation, context, position, token
    ids, window acts, center), positions in token coordinates."""
    rpc = tokens.shape[1] - first
    n_ctx = A.shape[0] // rpc
    out = []
    for f in range(A.shape[1]):
        a = A[:, f].reshape(n_ctx, rpc)
        pos = a.argmax(axis=1)  # numpy: the first max
        val = a[np.arange(n_ctx), pos]
        order = np.lexsort((np.arange(n_ctx), -val))  # activation desc, then context asc
        for rank, c in enumerate([c for c in order if val[c] > 0][:k]):
            p = int(pos[c])
            lo, hi = max(0, p - before), min(rpc, p + after + 1)
            out.append((f, rank, float(val[c]), int(c), p + first, tokens[c, first + lo:first + hi].tolist(),
                        a[c, lo:hi].tolist(), p - lo))
    return out


def brute_token_stats(A: np.ndarray, row_tokens: np.ndarray, top: int) -> dict[int, dict]:
    """Per feature: n_active, sum, and top tokens by count and by sum (ties: smaller token id)."""
    out = {}
    for f in range(A.shape[1]):
        on = A[:, f] > 0
        count: dict[int, int] = defaultdict(int)
        total: dict[int, float] = defaultdict(float)
        for t, v in zip(row_tokens[on].tolist(), A[on, f].tolist(), strict=True):
            count[t] += 1
            total[t] += v
        by_count = sorted(count, key=lambda t: (-count[t], t))[:top]
        by_sum = sorted(total, key=lambda t: (-total[t], t))[:top]
        out[f] = {"n_active": int(on.sum()), "sum": float(A[on, f].sum()), "max": float(A[:, f].max()),
                  "by_count": [(t, count[t]) for t in by_count], "by_sum": [(t, total[t]) for t in by_sum]}
    return out
