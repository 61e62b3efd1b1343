"""Stitching on the bundled SmolLM2-135M ladder: the post's add / swap / Frankenstein experiments, on a CPU.

    python examples/stitch_smollm2.py --ladder ladders/smollm2-135m --work /tmp/featgraph-stitch

1. Held-out activations: the documents ``split_documents`` holds out of the default corpus (the ladder was
   trained on the others), packed into 128-token contexts (BOS + 127), at the ladder's hook; BOS position left
   out.
2. ``--work/pair``: every table and figure of "Can we add / swap features" for the first pair (576 -> 1152).
3. ``--work/frankenstein``: Frankenstein's SAE across the whole ladder, decoder retrained on training-split
   activations (``--train-store``, e.g. the store the ladder was trained on) or, without one, on half the
   held-out tokens (the other half evaluates); compared with the ladder's SAEs on MSE, L0 and CE recovered.
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
from featgraph.formats import load_sae
from featgraph.ladder import expand_sae_paths
from featgraph.report import render_html, write_html
from featgraph.stitch import Evaluator, analyze_frankenstein, analyze_pair, write_frankenstein, write_pair


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

    paths = expand_sae_paths([args.ladder])
    saes = [load_sae(q) for q in paths]
    names = [q.name for q in paths]
    order = sorted(range(len(saes)), key=lambda i: saes[i].n_features)
    saes, names = [saes[i] for i in order], [names[i] for i in order]
    hook = saes[0].cfg.hook_name

    model = load_model()
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
    acts = store.read()
    if args.train_store is not None:
        eval_acts, train_acts, split = (
            acts,
            ActivationStore(args.train_store),
            f"train store {args.train_store}",
        )
    else:
        half = acts.shape[0] // 2
        eval_acts, train_acts, split = acts[:half], acts[half:], "held-out halves"
    ce_tokens = store.tokens()[: args.ce_contexts]
    config = {
        **{k: str(v) for k, v in vars(args).items()},
        "hook_name": hook,
        "names": names,
        "n_tokens_heldout": int(acts.shape[0]),
        "n_tokens_ce": int(ce_tokens[:, 1:].numel()),
        "split": split,
    }

    ev = Evaluator(eval_acts, model=model, tokens=ce_tokens, hook_name=hook)  # caches each SAE's metrics
    pair = analyze_pair(
        saes[0],
        saes[1],
        eval_acts,
        small_name=names[0],
        large_name=names[1],
        tau=args.tau,
        evaluator=ev,
        ladder=list(zip(saes, names, strict=True)),
        progress=progress,
    )
    write_pair(pair, args.work / "pair", config)
    print(json.dumps(pair.summary, indent=2, default=str))

    frank = analyze_frankenstein(
        saes,
        names,
        train_acts=train_acts,
        tau=args.tau,
        n_tokens=args.retrain_tokens,
        lr=args.lr,
        evaluator=ev,
        progress=progress,
    )
    write_frankenstein(frank, args.work / "frankenstein", config)
    print(frank.table)
    page = render_html(f"Stitching the SmolLM2-135M ladder ({hook})", [pair], frank, None, config)
    write_html(page, args.work / "report.html")
    print(f"wrote {args.work}")


if __name__ == "__main__":
    main()
