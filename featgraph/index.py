"""A saved similarity index per SAE: unit decoder rows in an exact FAISS inner-product index.

An index folder holds one subfolder per SAE (``index.faiss``: an ``IndexFlatIP`` over the unit rows;
``norms.npy``; ``meta.json``: fingerprint, name, width, d_in, source path and format) and a top-level
``manifest.json``. The fingerprint is :meth:`featgraph.ladder.LadderEntry.fingerprint` (sha256 of the
decoder), so an index built from other weights is refused with :class:`~featgraph.errors.StaleIndexError`
rather than silently used.

This module needs faiss and numpy only (no torch). The GPU is used when faiss has GPU support; the saved index
is always the CPU form so it loads anywhere.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featgraph.errors import ConfigError, SaeFormatError, ShapeMismatchError, StaleIndexError
from featgraph.io.arrays import check_flat_ip_file, read_npy
from featgraph.io.files import read_json, write_json, write_json_into
from featgraph.io.output import atomic_dir, check_output, open_output
from featgraph.ladder import Ladder, LadderEntry
from featgraph.matching import normalize_rows

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
NORMS_FILE = "norms.npy"
MANIFEST_FILE = "manifest.json"
INDEX_FORMAT = "featgraph-index/1"


def faiss_gpu_count() -> int:
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def resolve_index_device(device: str) -> str:
    """``auto`` -> ``cuda`` when faiss has GPU support and a GPU, else ``cpu``."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    gpus = faiss_gpu_count()
    if device == "cuda" and gpus == 0:
        raise ConfigError("device 'cuda' was requested but this faiss has no GPU support (install faiss-gpu)")
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    return device


class SimilarityIndex:
    """One SAE: its unit decoder rows in an exact ``faiss.IndexFlatIP``, its row norms and its fingerprint."""

    def __init__(
        self,
        unit: np.ndarray,
        norms: np.ndarray,
        *,
        fingerprint: str,
        name: str,
        source: str = "",
        format: str = "",
        device: str = "cpu",
        faiss_index: Any = None,
    ):
        import faiss

        self.unit = np.ascontiguousarray(unit, dtype=np.float32)
        self.norms = np.asarray(norms, dtype=np.float32)
        if self.unit.ndim != 2 or self.norms.shape != (self.unit.shape[0],):
            raise ShapeMismatchError(
                f"{name}: unit rows {list(self.unit.shape)} and norms {list(self.norms.shape)} "
                "do not fit together"
            )
        self.fingerprint = fingerprint
        self.name = name
        self.source = source
        self.format = format
        self.device = resolve_index_device(device)
        if faiss_index is None:
            faiss_index = faiss.IndexFlatIP(self.d_in)
            faiss_index.add(self.unit)
        self._cpu_index = faiss_index
        self._index = faiss_index
        if self.device == "cuda":
            self._gpu_res = faiss.StandardGpuResources()
            self._index = faiss.index_cpu_to_gpu(self._gpu_res, 0, faiss_index)

    @property
    def width(self) -> int:
        return int(self.unit.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.unit.shape[1])

    def __repr__(self) -> str:
        return (
            f"SimilarityIndex(name={self.name!r}, width={self.width}, d_in={self.d_in}, "
            f"fingerprint={self.fingerprint[:12]}..., device={self.device!r})"
        )

    @classmethod
    def build(cls, entry: LadderEntry, device: str = "auto") -> SimilarityIndex:
        """Normalise the entry's decoder rows (zero rows stay zero) and index them."""
        unit, norms = normalize_rows(entry.W_dec)
        return cls(
            unit,
            norms,
            fingerprint=entry.fingerprint(),
            name=entry.name,
            source=str(entry.path),
            format=entry.format,
            device=device,
        )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` cos of each query (normalised here) to the indexed rows: ``(D, I)``."""
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.d_in:
            raise ShapeMismatchError(
                f"{self.name}: queries have shape {list(q.shape)}, expected [n, {self.d_in}]"
            )
        if not 1 <= k <= self.width:
            raise ConfigError(f"{self.name}: k must be in [1, {self.width}], got {k}")
        unit_q, _ = normalize_rows(q)
        return self._index.search(unit_q, k)

    def meta(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "name": self.name,
            "width": self.width,
            "d_in": self.d_in,
            "fingerprint": self.fingerprint,
            "source_path": self.source,
            "source_format": self.format,
        }

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``index.faiss``, ``norms.npy`` and ``meta.json`` into ``folder`` atomically."""
        import faiss

        folder = Path(folder)
        with atomic_dir(folder, command="index-sae") as tmp:
            faiss.write_index(self._cpu_index, str(tmp / INDEX_FILE))
            np.save(tmp / NORMS_FILE, self.norms, allow_pickle=False)
            write_json_into(tmp / META_FILE, self.meta())
        return folder

    @classmethod
    def load(
        cls, folder: str | os.PathLike[str], expected_fingerprint: str | None = None, device: str = "cpu"
    ) -> SimilarityIndex:
        """Read a saved index; :class:`StaleIndexError` if ``expected_fingerprint`` is given and differs."""
        import faiss

        folder = Path(folder)
        meta = read_json(folder / META_FILE)
        check_index_meta(meta, folder / META_FILE)
        if expected_fingerprint is not None and meta["fingerprint"] != expected_fingerprint:
            raise StaleIndexError(
                f"{folder}: the index of SAE {meta['name']!r} (built from {meta.get('source_path', '?')}) "
                f"does not match the SAE's current weights (fingerprint {meta['fingerprint'][:12]}... in the "
                f"index, {expected_fingerprint[:12]}... now); rebuild it with `featgraph index`"
            )
        path = folder / INDEX_FILE
        # header and size first: faiss allocates what a corrupt file claims, or aborts the process
        check_flat_ip_file(path, d=meta["d_in"], ntotal=meta["width"])
        try:
            index = faiss.read_index(str(path))
        except Exception as e:  # faiss raises RuntimeError with its own message for corrupt files
            raise SaeFormatError(f"{path}: not a readable faiss index ({str(e).splitlines()[0]})") from e
        if (
            not isinstance(index, faiss.IndexFlatIP)
            or index.ntotal != meta["width"]
            or index.d != meta["d_in"]
        ):
            raise SaeFormatError(
                f"{path}: expected an IndexFlatIP of {meta['width']} x {meta['d_in']} rows "
                f"(from {META_FILE}), "
                f"found {type(index).__name__} with {index.ntotal} x {index.d}"
            )
        norms = read_npy(folder / NORMS_FILE, shape=(meta["width"],), dtype=np.float32)
        unit = index.reconstruct_n(0, index.ntotal)
        return cls(
            unit,
            norms,
            fingerprint=meta["fingerprint"],
            name=meta["name"],
            source=meta.get("source_path", ""),
            format=meta.get("source_format", ""),
            device=device,
            faiss_index=index,
        )


def check_index_meta(meta: dict[str, Any], where: Path) -> None:
    """The keys :meth:`SimilarityIndex.load` needs, with their types: a hand-edited meta.json fails here, in
    one line, not inside faiss or numpy."""
    want = {"name": str, "width": int, "d_in": int, "fingerprint": str}
    for key, typ in want.items():
        if key not in meta:
            raise SaeFormatError(f"{where}: missing key {key!r}")
        v = meta[key]
        if not isinstance(v, typ) or isinstance(v, bool) or (typ is int and v < (1 if key == "d_in" else 0)):
            what = "a string" if typ is str else f"an integer >= {1 if key == 'd_in' else 0}"
            raise SaeFormatError(f"{where}: {key}={str(v)[:80]!r} should be {what}")


def folder_names(names: Sequence[str]) -> list[str]:
    """A safe, distinct folder name per SAE name (SAE names may contain '/' or be '..')."""
    out: list[str] = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "sae"
        cand, i = base, 1
        while cand in out:
            i += 1
            cand = f"{base}-{i}"
        out.append(cand)
    return out


def build_ladder_index(
    ladder: Ladder,
    out_dir: str | os.PathLike[str],
    device: str = "auto",
    progress: bool = True,
    *,
    config: dict[str, Any] | None = None,
) -> list[SimilarityIndex]:
    """Index every SAE of the ladder into ``out_dir/<name>/``, with ``out_dir/manifest.json`` (and
    ``config.json`` when ``config`` is given).

    ``out_dir`` is checked first (never an SAE's folder, file or ladder folder; never a foreign folder) and
    written as a whole (:func:`featgraph.io.output.open_output`): a failed or killed run leaves the earlier
    index, if any, as it was.
    """
    from tqdm.auto import tqdm

    inputs = [e.path for e in ladder]
    check_output(out_dir, command="index", inputs=inputs)
    dev = resolve_index_device(device)
    folders = folder_names(ladder.names)
    indices, rows = [], []
    with open_output(out_dir, command="index", inputs=inputs) as out:
        for entry, folder in zip(
            tqdm(ladder.entries, desc="index", unit="sae", disable=not progress), folders, strict=True
        ):
            ix = SimilarityIndex.build(entry, device=dev)
            ix.save(out / folder)
            indices.append(ix)
            rows.append({**ix.meta(), "folder": folder})
        write_json(out / MANIFEST_FILE, {"format": INDEX_FORMAT, "saes": rows})
        if config is not None:
            write_json(out / "config.json", config)
    log.info("indexed %d SAEs into %s", len(indices), out_dir)
    return indices


def read_manifest(index_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(index_dir) / MANIFEST_FILE
    manifest = read_json(path)
    saes = manifest.get("saes")
    if not isinstance(saes, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("folder"), str) for s in saes
    ):
        raise SaeFormatError(f"{path}: expected {{'saes': [{{'name': ..., 'folder': ...}}, ...]}}")
    return saes


def load_ladder_index(
    ladder: Ladder, index_dir: str | os.PathLike[str], device: str = "cpu"
) -> list[SimilarityIndex]:
    """The saved index of each SAE of ``ladder`` (in ladder order), checked against the SAE's fingerprint."""
    index_dir = Path(index_dir)
    by_name = {s["name"]: s for s in read_manifest(index_dir)}
    out = []
    for entry in ladder:
        row = by_name.get(entry.name)
        if row is None:
            raise SaeFormatError(
                f"{index_dir}: the index has no SAE named {entry.name!r} (from {entry.path}); it has "
                f"{sorted(by_name)}. Rebuild it with `featgraph index`"
            )
        folder = index_dir / row["folder"]
        if folder.resolve().parent != index_dir.resolve():
            raise SaeFormatError(
                f"{index_dir / MANIFEST_FILE}: folder {row['folder']!r} is not inside the index"
            )
        out.append(SimilarityIndex.load(folder, expected_fingerprint=entry.fingerprint(), device=device))
    return out
