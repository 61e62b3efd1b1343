"""``featgraph report --explain``: the explain step over the report's own store, so that a user with a store needs
no separate ``featgraph explain`` run before the report's explorer.

:func:`check_explain` runs before the stitching passes (seconds): the store has token ids whose rows are whole
contexts, every SAE's d_in is the store's, and the tokenizer loads. :func:`explain_into` then runs
:func:`featgraph.explain.run_explain` (the one definition of the pass and its tables) into ``<out>/examples/``
inside the report's temporary folder; the folder is byte for byte what ``featgraph explain SAE... --acts STORE``
writes for the same SAEs, names, tokenizer and ``--n-tokens`` (the report's limit: explain reads the contexts that
hold the rows the stitching passes read), minus nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXAMPLES_DIR = "examples"


def check_explain(cfg: Any, saes: Sequence[Any], names: Sequence[str]) -> None:
    """Refuse, before any slow work, a store explain cannot use with these SAEs (module docstring)."""
    from featgraph.explain.run import check_explainable, open_store

    store, layout = open_store(cfg.acts, cfg.n_tokens)
    # the tokenizer is loaded now to fail in seconds; run_explain loads it again (cached on disk) to name it
    check_explainable(store, layout, [(sae.d_in, f"the SAE {name}") for sae, name in zip(saes, names, strict=True)],
                      cfg.tokenizer)


def explain_into(cfg: Any, out_dir: Path) -> Path:
    """Run explain over ``cfg.acts`` for the report's SAEs (its names) into ``out_dir / examples``."""
    from featgraph.explain.config import ExplainConfig
    from featgraph.explain.run import run_explain

    target = Path(out_dir) / EXAMPLES_DIR
    run_explain(ExplainConfig(saes=tuple(cfg.saes), names=tuple(cfg.names), out=str(target), acts=cfg.acts,
                              tokenizer=cfg.tokenizer, n_tokens=cfg.n_tokens, progress=cfg.progress))
    return target
