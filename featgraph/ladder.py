"""A ladder: several SAEs trained at one model site, sorted by width, sharing d_in.

For matching only the decoder is needed, so a :class:`Ladder` holds each SAE's decoder rows (float32 numpy,
``[F, d_in]``) and where it came from, never its encoder. :func:`load_ladder` accepts SAE paths (files or folders in
any format :mod:`featgraph.formats` reads), or one folder whose subfolders are SAEs (other entries are ignored).

An SAE is identified by its weights file (``sae.safetensors``, ``params.npz``, ``ae.pt``, ...) resolved to a real
path and its (device, inode): a folder and its weights file, a symlink, ``a/../a`` and a hard link are all the
same SAE, and one SAE given twice is refused before anything is loaded. A byte-for-byte copy elsewhere has
another inode; it is caught after loading by comparing decoders of equal shape (exact, and free when the widths
differ, which every command that pairs SAEs requires anyway), so no file is hashed whole just to compare it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
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
    # families and frankenstein pair adjacent widths, so two SAEs of one width make no ladder; an index (each SAE
    # indexed alone, e.g. two seeds to search across) may hold equal widths
    allow_equal_widths: bool = False

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
        self.entries = [self.entries[i] for i in width_order([e.width for e in self.entries],
                                                             [e.name for e in self.entries])]
        for i, a in enumerate(self.entries):
            for b in self.entries[i + 1:]:
                if b.width != a.width:
                    break  # sorted by width: only equal widths can be the same SAE
                if a.W_dec.shape == b.W_dec.shape and np.array_equal(a.W_dec, b.W_dec):
                    raise ConfigError(f"{a.path} and {b.path} have identical decoders: the same SAE given twice")
                if not self.allow_equal_widths:
                    raise ConfigError(
                        f"{a.path} and {b.path} both have width {a.width}: a ladder needs SAEs of different "
                        "widths (adjacent widths are paired)"
                    )

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
            # not a local path: a SAELens release, RELEASE/SAE_ID or hf://... name resolves into the Hugging Face
            # cache (featgraph.hub); a local path that exists always wins over a name
            from featgraph.hub import looks_like_name, resolve

            if looks_like_name(str(raw)):
                out.extend(resolve(str(raw)))
                continue
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
    check_distinct_saes(out)
    return out


# the weights file of each format's folder (a .npz or .pt file path is its own weights file)
WEIGHTS_FILES = {
    "gemmascope": "params.npz",
    "dictionary_learning": "ae.pt",
    "saelens": "sae_weights.safetensors",
    "featgraph": "sae.safetensors",
    "sparsify": "sae.safetensors",
}


@dataclasses.dataclass(frozen=True)
class SaeIdentity:
    """Which SAE a path names: its weights file, resolved, and that file's (device, inode)."""

    weights: Path
    device: int
    inode: int


def sae_identity(path: str | Path) -> SaeIdentity:
    """The identity of the SAE at ``path`` (a folder, its cfg.json or weights file, a ``.npz`` or ``.pt``)."""
    from featgraph.formats import detect_format

    p = Path(path)
    fmt = detect_format(p, missing_ok=True)  # None: a format forced by the caller; the path is its own identity
    if fmt is None or fmt in ("gemmascope", "dictionary_learning") and not p.is_dir():
        weights = p
    elif p.is_dir():
        weights = p / WEIGHTS_FILES[fmt]
    else:
        weights = p.parent / WEIGHTS_FILES[fmt]
    real = Path(os.path.realpath(weights))
    try:
        st = os.stat(real)
    except OSError as e:
        raise SaeFormatError(f"{p}: its weights file {weights} cannot be read ({e.strerror})") from e
    return SaeIdentity(real, st.st_dev, st.st_ino)


def check_distinct_saes(paths: Sequence[str | Path]) -> list[SaeIdentity]:
    """Each path's :class:`SaeIdentity`; the same SAE under two paths is a :class:`ConfigError` naming both."""
    seen: dict[tuple[int, int], Path] = {}
    ids = []
    for p in map(Path, paths):
        ident = sae_identity(p)
        first = seen.setdefault((ident.device, ident.inode), p)
        if first is not p:
            raise ConfigError(f"the same SAE is given twice: {first} and {p} (both are {ident.weights})")
        ids.append(ident)
    return ids


def default_names(paths: Sequence[Path]) -> list[str]:
    """Each SAE's name: the file stem for a file, the folder name for a folder."""
    from featgraph.hub import display_name  # an SAE resolved from a name is named by its SAE id, not cache folders

    return [display_name(p) or (p.stem if p.is_file() else p.name) for p in paths]


def load_saes(
    paths: Sequence[str | Path], names: Sequence[str] = (), *, distinct_widths: bool = True
) -> tuple[list, list[str]]:
    """Full SAEs (:class:`featgraph.sae.Sae`) from paths (a folder of SAE folders expands) and their names.

    Refused: the same SAE twice (by identity, or a copy with an identical decoder), a wrong number of ``names``
    or duplicate names, SAEs of different d_in, and with ``distinct_widths`` (frankenstein and report pair
    adjacent widths) two SAEs of one width.
    """
    from featgraph.formats import load_sae

    found = expand_sae_paths(list(paths))
    if names and len(names) != len(found):
        raise ConfigError(f"got {len(names)} --name values for {len(found)} SAEs ({[str(p) for p in found]})")
    names = list(names) or default_names(found)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"duplicate SAE names {dup} (from {[str(p) for p in found]}); pass distinct --name values")
    saes = [load_sae(p) for p in found]
    check_loaded_saes(saes, found, distinct_widths=distinct_widths)
    return saes, names


def check_loaded_saes(saes: Sequence, paths: Sequence[Path], *, distinct_widths: bool) -> None:
    """Loaded SAEs (from ``paths``) must share d_in; two of one width are refused with ``distinct_widths``, and
    otherwise when their decoders are identical (a copy of one SAE under another path)."""
    if len({s.d_in for s in saes}) > 1:
        desc = ", ".join(f"{p} has d_in={s.d_in}" for s, p in zip(saes, paths, strict=True))
        raise ShapeMismatchError(f"the SAEs must share d_in: {desc}")
    for i in range(len(saes)):
        for j in range(i + 1, len(saes)):
            a, b = saes[i], saes[j]
            if a.n_features != b.n_features:
                continue
            if distinct_widths:
                raise ConfigError(f"{paths[i]} and {paths[j]} both have width {a.n_features}: the SAEs must have "
                                  "different widths (adjacent widths are paired)")
            if a.W_dec.shape == b.W_dec.shape and bool((a.W_dec == b.W_dec).all()):
                raise ConfigError(f"{paths[i]} and {paths[j]} have identical decoders: the same SAE given twice")


def load_stitch_pair(small: str | Path, large: str | Path) -> tuple[list, list[str]]:
    """``([small_sae, large_sae], [small_name, large_name])`` for ``featgraph stitch SMALL LARGE``.

    Each argument must be exactly one SAE (a ladder folder is refused naming it: stitching its first two SAEs
    silently is not what was asked), they must be different SAEs, share d_in, and SMALL must be narrower than
    LARGE.
    """
    from featgraph.formats import detect_format, load_sae

    paths = resolve_stitch_pair(small, large)
    for role, p in zip(("SMALL", "LARGE"), paths, strict=True):
        if detect_format(p, missing_ok=True) is None:
            if p.is_dir():
                n = len(expand_sae_paths([p]))  # raises when it is no SAE folder at all
                raise ConfigError(f"{role} {p} is a folder of {n} SAEs; stitch takes exactly one SAE as SMALL and "
                                  "one as LARGE")
            detect_format(p)  # raises the precise "not an SAE" error
    check_distinct_saes(paths)
    saes = [load_sae(p) for p in paths]
    check_loaded_saes(saes, paths, distinct_widths=False)
    if saes[0].n_features >= saes[1].n_features:
        raise ConfigError(
            f"SMALL must be narrower than LARGE: SMALL {paths[0]} has width {saes[0].n_features}, LARGE "
            f"{paths[1]} has width {saes[1].n_features}"
        )
    return saes, default_names(paths)


def load_ladder(
    paths: Sequence[str | Path],
    names: Sequence[str] | None = None,
    *,
    format: str = "auto",
    distinct_widths: bool = True,
) -> Ladder:
    """Load the decoders of a ladder; names default to the file or folder names.

    The same SAE twice is refused (see :func:`check_distinct_saes`); so are two SAEs of one width unless
    ``distinct_widths`` is False (``featgraph index``: each SAE is indexed on its own).
    """
    from featgraph.formats import load_decoder

    sae_paths = expand_sae_paths(paths)
    if names is not None and len(names) != len(sae_paths):
        raise ConfigError(f"got {len(names)} names for {len(sae_paths)} SAEs ({[str(p) for p in sae_paths]})")
    entries = []
    for i, p in enumerate(sae_paths):
        fmt, W = load_decoder(p, format=format)  # validated there: 2-D, finite, float32, rows are features
        name = names[i] if names is not None else default_names([p])[0]
        entry = LadderEntry(name=name, path=p, format=fmt, W_dec=W)
        zeros = entry.zero_rows()
        if zeros.size:
            log.warning("%s: %d all-zero decoder rows (first: %s); they match nothing", p, zeros.size,
                        zeros[:5].tolist())
        entries.append(entry)
    return Ladder(entries, allow_equal_widths=not distinct_widths)


def width_order(widths: Sequence[int], names: Sequence[str]) -> list[int]:
    """Positions sorted the way a ladder is: by width, ties by name (the one rule, as :class:`Ladder` sorts)."""
    return sorted(range(len(widths)), key=lambda i: (int(widths[i]), str(names[i])))


def resolve_stitch_pair(small: str | Path, large: str | Path) -> list[Path]:
    """SMALL and LARGE as local paths: a path that exists stays; a name (``RELEASE/SAE_ID``, ``hf://...``) resolves
    through :func:`expand_sae_paths` into the hub cache and must name exactly one SAE."""
    paths = []
    for role, raw in (("SMALL", small), ("LARGE", large)):
        p = Path(raw)
        if not p.exists():
            found = expand_sae_paths([raw])
            if len(found) != 1:
                raise ConfigError(f"{role} {raw} names {len(found)} SAEs; stitch takes exactly one SAE as SMALL and "
                                  "one as LARGE")
            p = found[0]
        paths.append(p)
    return paths
