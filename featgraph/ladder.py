"""A ladder: several SAEs trained at one model site, sorted by width, sharing d_in.

For matching only the decoder is needed, so a :class:`Ladder` holds each SAE's decoder rows (float32 numpy,
``[F, d_in]``) and where it came from, never its encoder. :func:`load_ladder` accepts SAE paths (files or folders in
any format :mod:`featgraph.formats` reads), or one folder whose subfolders are SAEs (other entries are ignored).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from featgraph.errors import ConfigError, SaeFormatError, ShapeMismatchError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LadderEntry:
    """One SAE of a ladder: its name, where it came from, its format, and its decoder rows."""

    name: str
    path: Path
    format: str
    W_dec: np.ndarray  # float32 [F, d_in], rows are features

    @property
    def width(self) -> int:
        return int(self.W_dec.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.W_dec.shape[1])

    def norms(self) -> np.ndarray:
        """Decoder row norms (float32 ``[F]``), computed in float64 for accuracy."""
        return np.linalg.norm(self.W_dec.astype(np.float64), axis=1).astype(np.float32)

    def zero_rows(self) -> np.ndarray:
        """Indices of all-zero decoder rows: they have no direction and match nothing."""
        return np.flatnonzero(~np.any(self.W_dec != 0, axis=1))

    def fingerprint(self) -> str:
        """sha256 of the decoder's shape and float32 bytes: identifies the weights an index was built from."""
        h = hashlib.sha256(f"{self.W_dec.shape[0]}x{self.W_dec.shape[1]}:float32:".encode())
        h.update(np.ascontiguousarray(self.W_dec, dtype=np.float32).data)
        return h.hexdigest()


@dataclasses.dataclass
class Ladder:
    """SAEs sorted by width (ties broken by name) with one shared d_in."""

    entries: list[LadderEntry]

    def __post_init__(self) -> None:
        if not self.entries:
            raise ConfigError("a ladder needs at least one SAE")
        names = [e.name for e in self.entries]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            paths = [str(e.path) for e in self.entries if e.name in dup]
            raise ConfigError(f"duplicate SAE names {dup} (from {paths}); pass distinct --name values")
        d_ins = {e.d_in for e in self.entries}
        if len(d_ins) > 1:
            desc = ", ".join(f"{e.path} has d_in={e.d_in}" for e in self.entries)
            raise ShapeMismatchError(f"the ladder's SAEs must share d_in: {desc}")
        self.entries = sorted(self.entries, key=lambda e: (e.width, e.name))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[LadderEntry]:
        return iter(self.entries)

    def __getitem__(self, i: int) -> LadderEntry:
        return self.entries[i]

    @property
    def d_in(self) -> int:
        return self.entries[0].d_in

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def pairs(self) -> list[tuple[LadderEntry, LadderEntry]]:
        """Adjacent (smaller, larger) pairs in width order."""
        return list(zip(self.entries[:-1], self.entries[1:], strict=True))


def expand_sae_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Each path that is itself an SAE stays; a folder that is not an SAE expands to its SAE subfolders."""
    from featgraph.formats import detect_format

    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise SaeFormatError(f"{p}: no such file or folder")
        if detect_format(p, missing_ok=True) is not None:
            out.append(p)
            continue
        if not p.is_dir():
            detect_format(p)  # raises the precise "unknown format" error
        # Only subfolders count: stray files beside them (notes, an old .npz, plots) are ignored, as documented.
        children = [
            c for c in sorted(p.iterdir()) if c.is_dir() and detect_format(c, missing_ok=True) is not None
        ]
        if not children:
            try:
                detect_format(p)
                detail = ""
            except SaeFormatError as e:  # says what was found and what each format needs
                detail = str(e).removeprefix(f"{p}: ")
            raise SaeFormatError(f"{p}: is neither an SAE nor a folder containing SAE subfolders; {detail}")
        out.extend(children)
    return out


def load_ladder(
    paths: Sequence[str | Path], names: Sequence[str] | None = None, *, format: str = "auto"
) -> Ladder:
    """Load the decoders of a ladder; names default to the file or folder names."""
    from featgraph.formats import load_decoder

    sae_paths = expand_sae_paths(paths)
    if names is not None and len(names) != len(sae_paths):
        raise ConfigError(f"got {len(names)} names for {len(sae_paths)} SAEs ({[str(p) for p in sae_paths]})")
    entries = []
    for i, p in enumerate(sae_paths):
        fmt, W = load_decoder(p, format=format)  # validated there: 2-D, finite, float32, rows are features
        name = names[i] if names is not None else (p.stem if p.is_file() else p.name)
        entry = LadderEntry(name=name, path=p, format=fmt, W_dec=W)
        zeros = entry.zero_rows()
        if zeros.size:
            log.warning("%s: %d all-zero decoder rows (first: %s); they match nothing", p, zeros.size,
                        zeros[:5].tolist())
        entries.append(entry)
    return Ladder(entries)
