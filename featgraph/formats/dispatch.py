"""Read and write SAEs in the formats users bring: featgraph, SAELens, sparsify, dictionary_learning, Gemma
Scope.

Everything returned is in featgraph's orientation (rows are features): ``load_decoder`` gives float32 ``W_dec
[F, d_in]``, ``load_sae`` a :class:`featgraph.sae.Sae` with canonical weights. Each format lives in its own
module (``featgraph.formats.<name>``), whose docstring states the file layout and the orientation of every
tensor; this module detects the format from the files present and dispatches. Detection reads at most one
small JSON file, and the per-format modules (which import torch) load only when a reader or writer is called.

Files are untrusted: safetensors, ``np.load(allow_pickle=False)`` and ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from featgraph.errors import ConfigError, SaeFormatError, UnsupportedError

if TYPE_CHECKING:
    from featgraph.sae import Sae

FORMATS = ("featgraph", "saelens", "sparsify", "dictionary_learning", "gemmascope")

# what detection looks for, in the order it looks (also the hint in "unknown format" errors)
_SIGNATURES = {
    "gemmascope": "params.npz (or any .npz file)",
    "dictionary_learning": "ae.pt (+ config.json), or any .pt file",
    "saelens": "cfg.json + sae_weights.safetensors",
    "featgraph": 'cfg.json with "format": "featgraph" + sae.safetensors',
    "sparsify": "cfg.json + sae.safetensors",
}
# the weights file that names a safetensors-based format's folder when a file path is given
_WEIGHT_FILES = {
    "saelens": "sae_weights.safetensors", "featgraph": "sae.safetensors", "sparsify": "sae.safetensors",
}


def detect_format(path: str | Path, *, missing_ok: bool = False) -> str | None:
    """The format of the SAE at ``path`` (a folder, or a file: ``*.npz``, ``*.pt``, or the weights/cfg file of
    a safetensors-based SAE folder). Unknown: SaeFormatError naming the path and what was found there, or None
    with ``missing_ok`` (which also returns None for a path that does not exist)."""
    p = Path(path)
    if not p.exists():
        if missing_ok:
            return None
        raise SaeFormatError(f"{p}: no such file or folder")
    fmt = _detect_folder(p) if p.is_dir() else _detect_file(p)
    if fmt is None and not missing_ok:
        if p.is_dir():
            # featgraph's own output manifest (featgraph.io.output) says nothing about the format
            entries = [c for c in p.iterdir() if c.name != ".featgraph-manifest.json"]
            names = sorted(c.name + ("/" if c.is_dir() else "") for c in entries)
            found = ", ".join(names[:12]) + (f", ... ({len(names)} entries)" if len(names) > 12 else "")
        else:
            found = f"a file named {p.name!r}"
        hint = "; ".join(f"{k}: {v}" for k, v in _SIGNATURES.items())
        raise SaeFormatError(f"{p}: not an SAE in any format featgraph reads (found: {found or 'nothing'}); "
                             f"expected {hint}")
    return fmt


def _detect_folder(folder: Path) -> str | None:
    def has(name: str) -> bool:
        return (folder / name).is_file()

    if has("params.npz"):
        return "gemmascope"
    if has("ae.pt"):
        return "dictionary_learning"
    if has("cfg.json") and has("sae_weights.safetensors"):
        return "saelens"
    if has("cfg.json") and has("sae.safetensors"):
        return "featgraph" if _has_featgraph_tag(folder / "cfg.json") else "sparsify"
    return None


def _detect_file(file: Path) -> str | None:
    if file.suffix == ".npz":
        return "gemmascope"
    if file.suffix == ".pt":
        return "dictionary_learning"
    fmt = _detect_folder(file.parent)
    if fmt in _WEIGHT_FILES and file.name in (_WEIGHT_FILES[fmt], "cfg.json"):
        return fmt
    return None


def _has_featgraph_tag(cfg_path: Path) -> bool:
    """True for our own cfg.json; an unreadable one is left to the sparsify reader to report with its
    reason."""
    from featgraph.io.readers import read_json  # the checked reader: a 200,000-deep cfg.json must not recurse

    try:
        obj = read_json(cfg_path)
    except SaeFormatError:
        return False
    return isinstance(obj, dict) and obj.get("format") == "featgraph"


def _resolve(path: str | Path, format: str) -> tuple[Path, str]:
    p = Path(path)
    if format == "auto":
        return p, detect_format(p)  # type: ignore[return-value]  # raises rather than return None
    if format not in FORMATS:
        raise ConfigError(f"unknown SAE format {format!r} for {p}; expected 'auto' or one of {FORMATS}")
    if not p.exists():
        raise SaeFormatError(f"{p}: no such file or folder")
    return p, format


def _module(fmt: str) -> ModuleType:
    return importlib.import_module(f"featgraph.formats.{fmt}")


def load_decoder(path: str | Path, *, format: str = "auto") -> tuple[str, np.ndarray]:
    """``(format, W_dec)`` with ``W_dec`` float32 ``[F, d_in]`` (rows are features), finite, shape-checked
    against the format's config where it has one. Reads only the decoder tensor where the file format allows
    it.

    The rows are the ones :func:`load_sae` would use (where a reader folds decoder norms into the encoder, as
    for SAELens ``rescale_acts_by_decoder_norm`` or dictionary_learning's ``AutoEncoder``, so does this). It
    also reads SAEs whose encoder featgraph refuses to run (per-token input normalisation, gated SAEs,
    attention-head SAEs, transcoders): their decoder directions are what the library stores, which is all
    that matching needs."""
    p, fmt = _resolve(path, format)
    return fmt, _module(fmt).read_decoder(p)


def load_sae(path: str | Path, *, format: str = "auto", allow_transcoder: bool = False) -> Sae:
    """The full SAE in canonical layout; ``cfg.source_format`` names the format it came from.

    Its encode / decode are the writing library's own, exactly: every cfg flag that changes them is either
    folded into the canonical weights (where that is exactly equivalent) or the file is refused with a
    one-line error naming the file and the flag. A transcoder (sparsify ``transcode``) reads one site and
    writes another; featgraph's eval and stitch compare ``x_hat`` with the SAE's own input, so it is refused
    unless ``allow_transcoder`` (its encode and decode are then the library's).
    """
    p, fmt = _resolve(path, format)
    sae = _module(fmt).read_sae(p)
    if sae.cfg.extra.get("transcode") and not allow_transcoder:
        raise UnsupportedError(
            f"{p}: transcode=true: a transcoder's decoder writes a different site from the one its encoder "
            "reads, and featgraph's eval/stitch compare x_hat with the SAE's input; load_decoder() reads its "
            "decoder, load_sae(..., allow_transcoder=True) its encode/decode"
        )
    return sae


def save_saelens(sae: Sae, folder: str | Path) -> Path:
    """SAELens folder (``cfg.json`` + ``sae_weights.safetensors``), 6.x cfg layout; bit-identical weights."""
    return _module("saelens").save(sae, Path(folder))


def save_sparsify(sae: Sae, folder: str | Path) -> Path:
    """sparsify hookpoint folder (``cfg.json`` + ``sae.safetensors``); TopK SAEs only."""
    return _module("sparsify").save(sae, Path(folder))


def save_dictionary_learning(sae: Sae, folder: str | Path) -> Path:
    """dictionary_learning folder (``ae.pt`` + ``config.json``) as the class with the same forward pass."""
    return _module("dictionary_learning").save(sae, Path(folder))


def save_gemmascope(sae: Sae, path: str | Path) -> Path:
    """Gemma Scope ``params.npz`` (``path`` is the file, or a folder to hold ``params.npz``); relu/jumprelu
    only."""
    return _module("gemmascope").save(sae, Path(path))
