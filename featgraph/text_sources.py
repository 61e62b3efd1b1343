"""Offline English text and its packing into fixed-length token contexts.

The default corpus needs no download: Python's ``pydoc_data.topics`` and the docstrings of the standard
library (read with ``ast``, never imported: some stdlib modules act on import), plus Debian's ``fortunes`` and
the King James Bible (``bible-kjv``) where those packages are installed. Every text is a :class:`Document`
with a stable name, so a train/held-out split by document name is the same on every machine that has the same
sources.
"""

from __future__ import annotations

import ast
import logging
import re
import shutil
import subprocess
import sysconfig
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from featgraph.errors import ConfigError

log = logging.getLogger(__name__)

FORTUNES_DIR = Path("/usr/share/games/fortunes")
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")


class Document(NamedTuple):
    name: str  #: stable id, e.g. ``"pydoc:assert"`` or ``"file:/data/a.txt"``; the held-out split hashes it
    text: str


# -- sources -------------------------------------------------------------------------------------------------
def pydoc_topics() -> list[Document]:
    import pydoc_data.topics as topics

    return [Document(f"pydoc:{k}", v) for k, v in sorted(topics.topics.items())]


def stdlib_docstrings() -> list[Document]:
    """One document per stdlib source file: its module, class and function docstrings."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test", "__pycache__", "lib2to3"}
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if skip & set(rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [
            tree,
            *(
                n
                for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            ),
        ]
        parts = [d for n in nodes if (d := ast.get_docstring(n))]
        if parts:
            docs.append(Document(f"stdlib:{rel.as_posix()}", "\n\n".join(parts)))
    return docs


def fortunes() -> list[Document]:
    """Debian's fortune files (one document per file; the offensive ``off/`` set is skipped)."""
    if not FORTUNES_DIR.is_dir():
        return []
    docs = []
    for path in sorted(FORTUNES_DIR.iterdir()):
        if path.is_file() and not path.suffix and not path.is_symlink():
            quotes = path.read_text(encoding="utf-8", errors="replace").split("\n%\n")
            docs.append(
                Document(f"fortunes:{path.name}", "\n\n".join(q.strip() for q in quotes if q.strip()))
            )
    return docs


def bible_kjv() -> list[Document]:
    """The King James Bible via Debian's ``bible`` tool, one document per book, verse references removed."""
    exe = shutil.which("bible")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("bible-kjv is installed but could not be read: %s", e)
        return []
    books: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        m = re.match(r"(\d?[A-Za-z]+)(\d+):(\d+) (.*)", line)
        if m:
            books.setdefault(m.group(1), []).append(m.group(4))
    return [Document(f"kjv:{book}", " ".join(verses)) for book, verses in books.items()]


def default_corpus(*, include_debian: bool = True) -> list[Document]:
    """pydoc topics + stdlib docstrings (always there), then fortunes and the KJV Bible where installed."""
    docs = pydoc_topics() + stdlib_docstrings()
    if include_debian:
        docs += fortunes() + bible_kjv()
    return docs


def text_source(paths: str | Path | Sequence[str | Path]) -> list[Document]:
    """Documents from text files and folders (folders are searched recursively for .txt/.md/.rst/.text)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    docs = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
            if not files:
                raise ConfigError(f"{p}: folder holds no text files ({', '.join(TEXT_SUFFIXES)})")
        elif p.is_file():
            files = [p]
        else:
            raise ConfigError(f"{p}: no such file or folder")
        docs += [Document(f"file:{f}", f.read_text(encoding="utf-8", errors="replace")) for f in files]
    return docs


def split_documents(
    docs: Iterable[Document], eval_fraction: float = 0.05
) -> tuple[list[Document], list[Document]]:
    """(train, held_out): a document is held out when the CRC32 of its name is in the first ``eval_fraction``.

    Hashing names (not positions) keeps the split stable when sources are added or reordered, and it makes
    held-out text disjoint from training text by construction.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    train, held = [], []
    for d in docs:
        (held if zlib.crc32(d.name.encode()) / 2**32 < eval_fraction else train).append(d)
    return train, held


# -- tokenisation --------------------------------------------------------------------------------------------
def tokenize_contexts(
    model_or_tokenizer: Any,
    texts: Iterable[Document | str],
    context_size: int,
    *,
    bos: bool = True,
    max_contexts: int | None = None,
) -> Any:
    """Pack documents into a ``[n_contexts, context_size]`` int64 tensor.

    Documents are tokenised without special tokens and concatenated with the EOS id between them, then cut
    into contexts. BOS handling is explicit: with ``bos=True`` every context starts with the BOS id followed
    by ``context_size - 1`` text tokens (so position 0 is always BOS, which the activation store leaves out);
    with ``bos=False`` contexts are plain ``context_size``-token windows. The last partial context is dropped.
    """
    import torch

    tok = getattr(model_or_tokenizer, "tokenizer", model_or_tokenizer)
    if tok is None:
        raise ConfigError("the model has no tokenizer; pass token ids instead of text")
    if context_size < 2:
        raise ConfigError(f"context_size must be >= 2, got {context_size}")
    strings = [t.text if isinstance(t, Document) else str(t) for t in texts]
    sep = tok.eos_token_id if tok.eos_token_id is not None else tok.bos_token_id
    body = context_size - 1 if bos else context_size
    ids: list[int] = []
    for start in range(0, len(strings), 256):  # batches keep the fast tokenizer busy without huge lists
        for seq in tok(strings[start : start + 256], add_special_tokens=False)["input_ids"]:
            ids.extend(seq)
            ids.append(sep)
        if max_contexts is not None and len(ids) >= max_contexts * body:
            break
    n = len(ids) // body
    if max_contexts is not None:
        n = min(n, max_contexts)
    if n == 0:
        raise ConfigError(f"text holds {len(ids)} tokens, fewer than one context of {context_size}")
    out = torch.tensor(ids[: n * body], dtype=torch.long).view(n, body)
    if bos:
        bos_id = tok.bos_token_id if tok.bos_token_id is not None else sep
        out = torch.cat([torch.full((n, 1), bos_id, dtype=torch.long), out], dim=1)
    return out


def corpus_contexts(
    model_or_tokenizer: Any,
    paths: Sequence[str | Path] | None = None,
    *,
    split: str = "train",
    context_size: int = 128,
    n_contexts: int | None = None,
    seed: int = 0,
    eval_fraction: float = 0.05,
) -> Any:
    """Contexts from one side of the document split: ``split="train"`` or ``"heldout"``.

    Text is ``paths`` (files/folders) or the default offline corpus, split by :func:`split_documents`, packed
    by :func:`tokenize_contexts` (BOS first), then put in a seeded random order and cut to ``n_contexts``: a
    smaller ``n_contexts`` gives a prefix of a larger one, so stores of different sizes share their first
    contexts.
    """
    import torch

    if split not in ("train", "heldout"):
        raise ConfigError(f"split must be 'train' or 'heldout', got {split!r}")
    docs = text_source(paths) if paths else default_corpus()
    train, held = split_documents(docs, eval_fraction=eval_fraction)
    chosen = train if split == "train" else held
    if not chosen:
        raise ConfigError(
            f"the {split} side of the split holds no documents ({len(docs)} documents in all, "
            f"eval_fraction={eval_fraction}); pass more or larger text files"
        )
    tokens = tokenize_contexts(model_or_tokenizer, chosen, context_size, bos=True)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(tokens), generator=g)
    if n_contexts is not None:
        if n_contexts > len(tokens):
            log.warning("asked for %d %s contexts, the text gives %d", n_contexts, split, len(tokens))
        order = order[:n_contexts]
    return tokens[order]
