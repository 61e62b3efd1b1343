"""Short automatic feature labels, and reading them back from a ``featgraph explain`` output.

The rule (:func:`make_label`), deterministic given the feature's top tokens:

1. take the feature's tokens by summed activation, highest first (``top_tokens_by_act`` in feature_stats.parquet);
2. make each one readable: strip surrounding whitespace; a token that is whitespace only is shown by its escapes
   (``\\n``, ``\\t``, ``␣`` for a space); other control characters as ``\\xNN``; ``|`` becomes ``\\|`` so that
   the separator stays unambiguous; cut to :data:`MAX_TOKEN_CHARS` characters (``…`` marks a cut);
3. drop repeats (``" Monday"`` and ``"Monday"`` read the same), keep the first :data:`LABEL_TOKENS`;
4. join them with ``|``: ``Monday|Tuesday|Friday``. A feature that never fired gets ``""``.

:func:`read_labels` is what ``featgraph families``, ``compare`` and the explorer call to put these labels on nodes
and rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

LABEL_TOKENS = 3
MAX_TOKEN_CHARS = 16
STATS_FILE = "feature_stats.parquet"
_WHITESPACE = {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "␣", "\u00a0": "␣"}


def readable_token(token: str) -> str:
    """One token as it appears in a label (rule 2 of the module docstring)."""
    stripped = token.strip()
    if not stripped:
        stripped = "".join(_WHITESPACE.get(c, f"\\x{ord(c):02x}") for c in token) or "∅"
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in stripped).replace("|", "\\|")
    return out if len(out) <= MAX_TOKEN_CHARS else out[: MAX_TOKEN_CHARS - 1] + "…"


def make_label(tokens_by_act: Sequence[str], n: int = LABEL_TOKENS) -> str:
    """The label of a feature from its top tokens by summed activation (see the module docstring)."""
    seen: list[str] = []
    for t in tokens_by_act:
        r = readable_token(t)
        if r not in seen:
            seen.append(r)
        if len(seen) == n:
            break
    return "|".join(seen)


def read_labels(examples_dir: str | os.PathLike[str]) -> dict[str, dict[int, str]]:
    """``{sae name: {feature: label}}`` from ``examples_dir/feature_stats.parquet`` (a ``featgraph explain`` output;
    the parquet file itself may be given too).

    Only the columns ``sae`` (string), ``feature`` (any integer type) and ``label`` (string; null reads as ``""``)
    are needed. A missing or unreadable file, a missing column or one of the wrong type, a null sae or feature, or
    one (sae, feature) twice is a :class:`~featgraph.errors.SaeFormatError` naming the file.
    """
    import polars as pl

    from featgraph.errors import SaeFormatError
    from featgraph.io.readers import require_file

    path = Path(examples_dir)
    if path.is_dir() or not path.suffix == ".parquet":
        path = path / STATS_FILE
    if not path.exists():
        raise SaeFormatError(f"{path}: file not found (a featgraph explain output holds {STATS_FILE})")
    require_file(path)  # a FIFO or device named *.parquet is refused before it is read
    try:
        df = pl.read_parquet(path, columns=["sae", "feature", "label"])
    except Exception as e:  # polars: ColumnNotFoundError, ComputeError for a corrupt file, ...
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise SaeFormatError(f"{path}: not a feature_stats table with columns sae, feature, label ({first})") from e
    want = {"sae": df.schema["sae"] == pl.String, "feature": df.schema["feature"].is_integer(),
            "label": df.schema["label"] == pl.String}
    bad = [c for c, ok in want.items() if not ok]
    if bad:
        raise SaeFormatError(f"{path}: columns {bad} have the wrong type ({ {c: str(df.schema[c]) for c in bad} }; "
                             "want sae and label strings, feature an integer)")
    nulls = [c for c in ("sae", "feature") if df[c].null_count()]
    if nulls:
        raise SaeFormatError(f"{path}: null values in column(s) {nulls}")
    if df.select(pl.struct("sae", "feature").is_duplicated().any()).item():
        dup = df.filter(pl.struct("sae", "feature").is_duplicated()).row(0)
        raise SaeFormatError(f"{path}: (sae, feature) = ({dup[0]!r}, {dup[1]}) appears more than once")
    labels: dict[str, dict[int, str]] = {}
    for sae, feature, label in df.iter_rows():
        labels.setdefault(sae, {})[int(feature)] = label or ""
    return labels
