"""``featgraph neighbors INDEX``: the exact top-k features most similar to a query, across every SAE of a saved index.

Similarity is the decoder cos: the index (:mod:`featgraph.index`) holds each SAE's unit decoder rows in an exact
FAISS inner-product index. The query is a feature of the index (``SAE:ID``, its own unit row) or a vector from a
file (``.npy``, ``.safetensors`` or ``.pt`` holding one ``[d_in]`` vector, read through the checked readers).

Exactness. FAISS scores in float32; every returned candidate's cos is recomputed in float64 from the float32 unit
rows (as the matcher does, :mod:`featgraph.matching.core`), and the answer is the top k by that float64 cos. A
feature FAISS did not return scored at most ``s_last`` (the last returned score), so its cos is at most ``s_last +
e`` (``e``: the rigorous fp32 bound, :func:`featgraph.matching.rounding_margin`, plus 1e-6 for the query's
re-normalisation). When the k-th float64 cos of the candidates is above that, no feature outside can beat or tie
it; otherwise the search widens (doubling) until it is, or until every feature was returned. So the result equals
a float64 brute force over all features, ties included.

Decisions (documented in the README): ``k`` has no cap, and a ``k`` above the number of candidates returns all of
them; the query feature itself is left out of its results (an exact duplicate elsewhere still shows, at cos 1);
zero decoder rows have no direction and are never results; ties are broken by cos (descending), then the SAE's
order in the index, then feature id.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from featgraph.compare.config import NeighborsConfig
from featgraph.errors import ConfigError, SaeFormatError, ShapeMismatchError

log = logging.getLogger(__name__)

NEIGHBORS_SCHEMA = pl.Schema({"rank": pl.Int64, "sae": pl.String, "feature": pl.Int64, "cos": pl.Float64})
VECTOR_SUFFIXES = (".npy", ".safetensors", ".pt", ".pth")


@dataclasses.dataclass
class NeighborsResult:
    table: pl.DataFrame  # rank (1 = most similar), sae, feature, cos (float64)
    summary: dict[str, Any]
    out: Path | None
    files: list[str]


def load_index(index_dir: str | Path) -> list:
    """Every SAE's :class:`featgraph.index.SimilarityIndex` in the index's manifest order."""
    from featgraph.index import MANIFEST_FILE, SimilarityIndex, read_manifest

    index_dir = Path(index_dir)
    if not (index_dir / MANIFEST_FILE).is_file():
        raise SaeFormatError(f"{index_dir}: not a featgraph index ({MANIFEST_FILE} not found); build one with "
                             "`featgraph index`")
    out = []
    for row in read_manifest(index_dir):
        folder = index_dir / row["folder"]
        if folder.resolve().parent != index_dir.resolve():
            raise SaeFormatError(f"{index_dir / MANIFEST_FILE}: folder {row['folder']!r} is not inside the index")
        out.append(SimilarityIndex.load(folder))
    if not out:
        raise SaeFormatError(f"{index_dir / MANIFEST_FILE}: the index holds no SAE")
    if len({ix.d_in for ix in out}) > 1:
        raise SaeFormatError(f"{index_dir}: its SAEs have different d_in {sorted({ix.d_in for ix in out})}")
    return out


def read_vector(path: str | Path) -> np.ndarray:
    """One float vector (float64 ``[d]``) from a .npy, .safetensors (one tensor) or .pt (a tensor, or a dict of
    exactly one) file; anything else is a one-line error naming the file."""
    from featgraph.io.readers import require_file

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VECTOR_SUFFIXES:
        raise ConfigError(f"--vector {path}: unknown file type {suffix!r}; expected one of {VECTOR_SUFFIXES}")
    require_file(path)  # a FIFO or device named *.npy is refused before anything reads it
    if suffix == ".npy":
        from featgraph.io.arrays import read_npy

        arr = read_npy(path)
    else:
        if suffix == ".safetensors":
            from featgraph.io.readers import read_safetensors

            obj: Any = read_safetensors(path)
        else:
            obj = _torch_load(path)
        if isinstance(obj, dict):
            if len(obj) != 1:
                raise SaeFormatError(f"{path}: expected exactly one tensor, found {len(obj)} ({sorted(obj)[:5]})")
            obj = next(iter(obj.values()))
        import torch

        if not isinstance(obj, torch.Tensor):
            raise SaeFormatError(f"{path}: expected a tensor, got {type(obj).__name__}")
        if not obj.is_floating_point():
            raise SaeFormatError(f"{path}: the vector has dtype {str(obj.dtype).removeprefix('torch.')}; expected "
                                 "floating point")
        arr = obj.detach().to(torch.float64).numpy()
    arr = np.asarray(arr)
    if arr.dtype.kind != "f":
        raise SaeFormatError(f"{path}: the vector has dtype {arr.dtype}; expected floating point")
    if not (arr.ndim == 1 or arr.ndim == 2 and arr.shape[0] == 1):
        raise ShapeMismatchError(f"{path}: expected one vector [d_in] (or [1, d_in]), got shape {list(arr.shape)}")
    v = arr.reshape(-1).astype(np.float64)
    if not np.isfinite(v).all():
        raise SaeFormatError(f"{path}: the vector holds NaN or inf")
    if not v.any():
        raise SaeFormatError(f"{path}: the vector is all zeros; it has no direction")
    return v


def _torch_load(path: Path) -> Any:
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickles arbitrary objects
    except Exception as e:  # UnpicklingError, EOFError, RuntimeError, zipfile errors ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SaeFormatError(f"{path}: not a readable torch file ({first[:200]})") from e


def parse_feature(spec: str, indices: list) -> tuple[int, int]:
    """``"SAE:ID"`` -> (position of the SAE in the index, feature id), checked against the index."""
    sae, sep, fid = spec.rpartition(":")
    names = [ix.name for ix in indices]
    if not sep or not sae:
        raise ConfigError(f"--feature {spec!r}: expected SAE:ID, e.g. {names[0]}:0")
    if sae not in names:
        raise ConfigError(f"--feature {spec!r}: no SAE named {sae!r} in the index (it has {names})")
    pos = names.index(sae)
    width = indices[pos].width
    if not fid.isdigit() or int(fid) >= width:
        raise ConfigError(f"--feature {spec!r}: feature id must be an integer in [0, {width}) for {sae}")
    return pos, int(fid)


def _top_in(ix, q: np.ndarray, k: int, exclude: int | None, e: float) -> tuple[np.ndarray, np.ndarray]:
    """(float64 cos, feature ids) of the exact top ``k`` of one SAE, ties by feature id (module docstring)."""
    n = ix.width
    valid = ix.norms != 0
    if exclude is not None:
        valid = valid.copy()
        valid[exclude] = False
    k = min(k, int(valid.sum()))
    if k == 0:
        return np.zeros(0), np.zeros(0, np.int64)
    kk = min(n, k + 16 + int(n - valid.sum()))  # room for the rows that cannot be results
    while True:
        D, ids = ix.search(q.astype(np.float32), kk)
        ids = ids[0][ids[0] >= 0].astype(np.int64)
        ids = ids[valid[ids]]
        cos = ix.unit[ids].astype(np.float64) @ q
        order = np.lexsort((ids, -cos))
        cos, ids = cos[order], ids[order]
        if kk >= n or (ids.size >= k and cos[k - 1] > float(D[0][-1]) + e):
            return cos[:k], ids[:k]
        kk = min(n, 2 * kk)


def top_k_neighbors(indices: list, query: np.ndarray, k: int = 20, *, exclude: tuple[int, int] | None = None,
                    progress: bool = False) -> pl.DataFrame:
    """The exact top ``k`` features of every SAE in ``indices`` (SimilarityIndex list) by decoder cos to
    ``query`` (``[d_in]``, any norm); ``exclude``: (SAE position, feature id) left out (the query feature)."""
    from tqdm.auto import tqdm

    from featgraph.config import check_int
    from featgraph.matching import normalize_rows, rounding_margin

    k = check_int("k", k, minimum=1)
    d = indices[0].d_in
    q = np.asarray(query, np.float64).reshape(-1)
    if q.size != d:
        raise ShapeMismatchError(f"the query vector has d_in={q.size}, the index has d_in={d}")
    q = normalize_rows(q[None, :])[0][0].astype(np.float64)  # the float32 unit row, as the index holds its rows
    if not q.any():
        raise ConfigError("the query vector is all zeros; it has no direction")
    e = rounding_margin(d, "fp32") + 1e-6
    cos_all, sae_all, feat_all = [], [], []
    for pos, ix in enumerate(tqdm(indices, desc="neighbors", unit="sae", disable=not progress)):
        ex = exclude[1] if exclude is not None and exclude[0] == pos else None
        cos, ids = _top_in(ix, q, k, ex, e)
        cos_all.append(cos)
        sae_all.append(np.full(ids.size, pos, np.int64))
        feat_all.append(ids)
    cos, sae, feat = (np.concatenate(x) for x in (cos_all, sae_all, feat_all))
    order = np.lexsort((feat, sae, -cos))[:k]
    names = [ix.name for ix in indices]
    return pl.DataFrame({
        "rank": np.arange(1, order.size + 1, dtype=np.int64),
        "sae": pl.Series([names[s] for s in sae[order]], dtype=pl.String),
        "feature": feat[order], "cos": cos[order],
    }, schema=NEIGHBORS_SCHEMA)


def run_neighbors(cfg: NeighborsConfig) -> NeighborsResult:
    """``featgraph neighbors``: load the index, build the query, search, and with ``cfg.out`` write
    ``neighbors.parquet``, ``summary.json`` and ``config.json`` (atomic, manifest, never inside an input)."""
    from featgraph.io.output import check_output, open_output

    inputs = cfg.inputs()
    if cfg.out is not None:
        check_output(cfg.out, command=cfg.command, inputs=inputs)
    indices = load_index(cfg.index)
    exclude = None
    if cfg.feature is not None:
        exclude = parse_feature(cfg.feature, indices)
        ix = indices[exclude[0]]
        if ix.norms[exclude[1]] == 0:
            raise ConfigError(f"--feature {cfg.feature}: its decoder row is all zeros; it has no direction")
        query = ix.unit[exclude[1]].astype(np.float64)
        what = {"feature": cfg.feature}
    else:
        query = read_vector(cfg.vector)
        if query.size != indices[0].d_in:
            raise ShapeMismatchError(f"--vector {cfg.vector}: the vector has d_in={query.size}, the index "
                                     f"{cfg.index} has d_in={indices[0].d_in}")
        what = {"vector": str(Path(cfg.vector).resolve())}
    table = top_k_neighbors(indices, query, cfg.k, exclude=exclude, progress=cfg.progress)
    n_candidates = sum(int(np.sum(ix.norms != 0)) for ix in indices) - (exclude is not None)
    summary = {"kind": "featgraph neighbors", "config": cfg.to_json(), "query": what, "k": cfg.k,
               "results": table.height, "candidates": n_candidates,
               "saes": [{"name": ix.name, "width": ix.width, "fingerprint": ix.fingerprint} for ix in indices]}
    files: list[str] = []
    if cfg.out is not None:
        from featgraph.io.files import write_json
        from featgraph.tables import write_parquet

        with open_output(cfg.out, command=cfg.command, inputs=inputs) as tmp:
            write_parquet(table, tmp / "neighbors.parquet")
            write_json(tmp / "summary.json", summary)
            write_json(tmp / "config.json", summary["config"])
        files = ["neighbors.parquet", "summary.json", "config.json"]
    return NeighborsResult(table, summary, Path(cfg.out) if cfg.out else None, files)


def neighbors(index: str | os.PathLike[str] | NeighborsConfig, *, feature: str | None = None,
              vector: str | os.PathLike[str] | np.ndarray | None = None, k: int = 20,
              out: str | os.PathLike[str] | None = None, progress: bool = False) -> NeighborsResult:
    """The Python API of ``featgraph neighbors``: a :class:`NeighborsConfig`, or its fields as arguments; here
    ``vector`` may also be an array (then nothing is written: ``out`` needs a file to record as the query)."""
    if isinstance(index, NeighborsConfig):
        return run_neighbors(index)
    if vector is not None and not isinstance(vector, (str, os.PathLike)):
        if out is not None or feature is not None:
            raise ConfigError("an array vector takes neither out nor feature; save it to a .npy file to record it")
        indices = load_index(index)
        table = top_k_neighbors(indices, np.asarray(vector, np.float64), k, progress=progress)
        return NeighborsResult(table, {"kind": "featgraph neighbors", "k": k, "results": table.height}, None, [])
    return run_neighbors(NeighborsConfig(index=str(index), feature=feature,
                                         vector=None if vector is None else str(vector), k=k,
                                         out=None if out is None else str(out), progress=progress))


def format_neighbors(table: pl.DataFrame) -> str:
    """The neighbors table: rank, SAE, feature, cos (one line each)."""
    if table.height == 0:
        return "no neighbors (every candidate feature was excluded)"
    w = max(3, *(len(s) for s in table["sae"].to_list()))
    lines = [f"{'rank':>4}  {'sae':<{w}}  {'feature':>7}  {'cos':>9}"]
    for rank, sae, feature, cos in table.select("rank", "sae", "feature", "cos").iter_rows():
        lines.append(f"{rank:>4}  {sae:<{w}}  {feature:>7}  {cos:>9.6f}")
    return "\n".join(lines)
