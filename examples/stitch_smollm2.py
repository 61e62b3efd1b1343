"""Stitching on the bundled SmolLM2-135M ladder: the post's add / swap / Frankenstein experiments, on a CPU.

    python examples/stitch_smollm2.py --ladder ladders/smollm2-135m --work /tmp/featgraph-stitch

1. Held-out activations: the documents ``split_documents`` holds out of the default corpus (the ladder was
   trained on the others), packed into 128-token contexts (BOS + 127), at the ladder's hook; BOS position left
   out.
2. ``--work/pair``: every table and figure of "Can we add / swap features" for the first pair (576 -> 1152),
   through :func:`featgraph.stitch.run_stitch` (the entry point of ``featgraph stitch``).
3. ``--work/frankenstein`` (:func:`featgraph.stitch.run_frankenstein`): Frankenstein's SAE across the whole
   ladder, decoder retrained on training-split activations (``--train-store``, e.g. the store the ladder was
   trained on) or, without one, on half the held-out tokens (the other half evaluates); compared with the
   ladder's SAEs on MSE, L0 and CE recovered.
4. ``--work/report.html``: both, on one self-contained page.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from featgraph.activations import (
    ActivationStore,
    collect_activations,
    default_corpus,
    load_model,
    split_documents,
    tokenize_contexts,
)
from featgraph.config import FrankensteinConfig, StitchConfig
from featgraph.ladder import load_ladder
from featgraph.report import render_html, write_html
from featgraph.stitch import run_frankenstein, run_stitch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ladder", type=Path, default=Path("ladders/smollm2-135m"))
    p.add_argument("--work", type=Path, default=Path("/tmp/featgraph-stitch"))
    p.add_argument("--contexts", type=int, default=800, help="held-out contexts (127 tokens each) to collect")
    p.add_argument(
        "--heldout-store",
        type=Path,
        default=None,
        help="an existing held-out store at the ladder's hook (skips collection)",
    )
    p.add_argument("--ce-contexts", type=int, default=24, help="held-out contexts for CE (full forwards: slow)")
    p.add_argument("--train-store", type=Path, default=None, help="training-split store for decoder retraining")
    p.add_argument("--retrain-tokens", type=int, default=300_000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tau", type=float, default=0.7)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    progress = not args.quiet

    ladder = load_ladder([args.ladder])  # decoders only: the pair is the two narrowest SAEs, in the ladder's order
    hook = load_sae_hook(ladder[0].path)
    model = load_model()  # loaded once: collection and CE share it (the run_* entry points take it)
    if args.heldout_store is not None:
        store = ActivationStore(args.heldout_store)
    else:
        _, held_docs = split_documents(default_corpus(), eval_fraction=0.05)
        tokens = tokenize_contexts(model, held_docs, 128, bos=True)[: args.contexts]
        store = collect_activations(
            model,
            tokens,
            hook,
            args.work / "heldout",
            progress=progress,
            extra={"split": "heldout", "corpus": "default"},
        )
    if store.hook_name != hook:
        raise SystemExit(f"{store.folder} holds {store.hook_name}, the ladder reads {hook}")
    # without a training store, frankenstein evaluates on the first half of the held-out tokens and retrains on
    # the second; the pair is analysed on the same first half, so both sections describe the same tokens
    eval_tokens = store.n_tokens if args.train_store is not None else store.n_tokens // 2
    common = {"acts": str(store.folder), "tau": args.tau, "ce_contexts": args.ce_contexts, "progress": progress}
    pair = run_stitch(
        StitchConfig(small=str(ladder[0].path), large=str(ladder[1].path), out=str(args.work / "pair"),
                     n_tokens=eval_tokens, **common),
        model=model,
    )
    print(json.dumps(pair.analysis.summary, indent=2, default=str))
    frank = run_frankenstein(
        FrankensteinConfig(saes=(str(args.ladder),), out=str(args.work / "frankenstein"),
                           train_acts=None if args.train_store is None else str(args.train_store),
                           retrain_tokens=args.retrain_tokens, lr=args.lr, **common),
        model=model,
    )
    print(frank.analysis.table)
    page = render_html(f"Stitching the SmolLM2-135M ladder ({hook})", [pair.analysis], frank.analysis, None,
                       {"stitch": pair.config, "frankenstein": frank.config})
    write_html(page, args.work / "report.html")
    print(f"wrote {args.work}")


def load_sae_hook(path: Path) -> str | None:
    from featgraph.formats import load_sae

    return load_sae(path).cfg.hook_name


if __name__ == "__main__":
    main()
