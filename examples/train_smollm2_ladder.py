"""Train the bundled SAE ladder on SmolLM2-135M (offline, CPU) and write its metrics table.

    python examples/train_smollm2_ladder.py --work /tmp/featgraph-smollm2 --out ladders/smollm2-135m

Steps (each resumes or is skipped when its output exists, so a killed run can be restarted with the same command):
1. the pinned ``stdlib`` corpus (Python's pydoc topics and the full standard-library sources: text every install of
   the same Python version has; 2,471,166 training tokens, 137,033 held out on CPython 3.11.7), split by document
   into training text and held-out text (5% of documents, by a hash of their names); the stores record the
   document names, the Python version and a sha256 of the token ids, and
   ``--reproduce ladders/smollm2-135m/train_config.json`` stops unless the re-collected ids are the same;
   ``--corpus default`` reads the smaller default corpus (pydoc topics + stdlib docstrings, ~0.54 M tokens) instead;
2. 128-token contexts (BOS + 127 text tokens) in a seeded order; activations at ``blocks.3.hook_resid_pre``
   (BOS position left out) written to two stores under ``--work``: ``train`` (all 19,458 training contexts)
   and ``heldout`` (all 1,079 held-out contexts);
3. one ReLU + L1 SAE per width plus a same-width seed control (``--control 1152:1``), all trained in the same
   pass over the same shuffled batches, so the ladder's SAEs differ only in width and the control only in its
   init seed; the training state is checkpointed under ``--work/checkpoint`` every 1,000 steps and a restarted
   run resumes there; saved in fp16 to ``--out/l3-<width>`` and ``--out/seed-control/l3-1152-seed1``, each with
   its ``health.json`` (featgraph.training.health on the held-out store);
4. metrics on held-out tokens only: reconstruction and health on the held-out store, CE on the first 64 held-out
   contexts through the full model; novel / random-like shares per adjacent pair and the seed control's
   overlap; ``--out/metrics.parquet`` and ``--out/METRICS.md``.

The recipe (``featgraph.training``; why each value): batch 256 for 2 epochs of the stdlib corpus (19,305 steps):
the budget that matters is steps, and on the smaller default corpus features that fire rarely learned the training
tokens rather than the text (useless on held-out tokens: a generalisation gap), so the corpus is 4.6x larger;
L1 0.4: at L1 0.8 for 38,611 steps L0 fell with width (25 / 21 / 14 / 10.5) and the 4608-wide SAE had 12.7% rare
and 19.5% useless features, so the penalty is halved to keep every width in the post's tens; Adam lr 1e-3 with a
1% warm-up and a linear decay over the last 20%; L1 warm-up over 5%; encoder initialised as the decoder's
transpose; b_dec at the geometric median; dead features (silent for 50,000 tokens) resampled during the first half.

Why ``blocks.3.hook_resid_pre``: an early residual stream (layer 3 of 30), in the spirit of the post's
early-to-middle site, and the cheapest one on a shared 2-core CPU (``stop_at_layer=4`` skips 26 of 30 blocks
when collecting activations).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from featgraph.activations import (
    ActivationStore,
    collect_activations,
    load_model,
)
from featgraph.activations.text import CORPORA, check_provenance, corpus_contexts_with_provenance

HOOK = "blocks.3.hook_resid_pre"
# the recipe (see the module docstring for why each value)
L1 = 0.4
LR = 1e-3
EPOCHS = 2.0  # 19,305 steps of 256 over the stdlib corpus's 2,471,166 training tokens
CORPUS = "stdlib"
DEAD_WINDOW = 50_000
# warm-ups and the resampling window, as fractions of the steps: 193 steps of LR warm-up, 965 of L1 warm-up,
# resampling up to step 9,652 (half-way, so resampled features have the second half to settle)
LR_WARMUP_FRACTION = 0.01
L1_WARMUP_FRACTION = 0.05
RESAMPLE_UNTIL = 0.5


def build_stores(model, work: Path, *, context_size: int, n_train: int | None, n_heldout: int | None, seed: int,
                 quiet: bool, expected: dict | None = None,
                 corpus: str = "default") -> tuple[ActivationStore, ActivationStore]:
    """The train and held-out stores; with ``expected`` (a ladder's train_config.json) the token ids must match."""
    stores = []
    for split, n in (("train", n_train), ("heldout", n_heldout)):
        # seeded order mixes the documents inside every shard; a prefix of it is what the budget allows
        tokens, prov = corpus_contexts_with_provenance(model, split=split, context_size=context_size,
                                                       n_contexts=n, seed=seed, corpus=corpus)
        logging.info("%s: %d contexts of %d tokens from %d documents (token ids sha256 %s)", split, len(tokens),
                     context_size, prov["n_documents"], prov["token_ids_sha256"][:16])
        recorded = ((expected or {}).get(f"{split}_store") or {}).get("extra", {}).get("provenance")
        if expected is not None:
            # reproducing a bundled ladder: other text must stop the run, not train on it
            check_provenance(recorded or {}, prov, where=f"{split} store of the ladder being reproduced")
        stores.append(collect_activations(model, tokens, HOOK, work / split, progress=not quiet,
                                          extra={"split": split, "corpus": corpus, "seed": seed,
                                                 "provenance": prov}))
    return stores[0], stores[1]


def pair_stats(folders: list[Path], control: Path | None) -> str:
    """Markdown: novel / random-like shares per adjacent pair and the seed control's overlap with its twin."""
    from featgraph.matching import is_novel
    from featgraph.sae import Sae
    from featgraph.training.health import max_cos_to, random_max_cos_threshold

    saes = [Sae.load(f) for f in folders]
    lines = ["| pair | novel (max cos <= 0.7) | random-like (max cos < p99 of random) | p99 of random |",
             "|---|---|---|---|"]
    for small, large in zip(saes[:-1], saes[1:], strict=True):
        mc = max_cos_to(large.W_dec.detach(), small.W_dec.detach())
        thr = random_max_cos_threshold(small.W_dec.detach())
        lines.append(f"| {small.n_features} -> {large.n_features} | {is_novel(mc, 0.7).mean():.1%} | "
                     f"{(mc < thr).mean():.1%} | {thr:.3f} |")
    text = "\n".join(lines) + "\n"
    if control is not None:
        ctrl = Sae.load(control)
        twin = next(s for s, f in zip(saes, folders, strict=True) if s.n_features == ctrl.n_features)
        mc = max_cos_to(ctrl.W_dec.detach(), twin.W_dec.detach())
        matched = (~is_novel(mc, 0.7)).mean()
        text += (f"\nSeed control: {control.name} (same run, another init seed): {matched:.1%} of its "
                 f"features have max cos > 0.7 to the ladder's {twin.n_features}-wide SAE (median max cos "
                 f"{float(np.median(mc)):.3f}); the null baseline for 'novel'.\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/featgraph-smollm2"),
                   help="activation stores and the training checkpoint (resumed when the run restarts)")
    p.add_argument("--out", type=Path, default=Path("ladders/smollm2-135m"))
    p.add_argument("--widths", default="576,1152,2304,4608")
    p.add_argument("--control", default="1152:1", help="WIDTH:SEED of the seed control ('' for none)")
    p.add_argument("--context-size", type=int, default=128)
    p.add_argument("--corpus", choices=sorted(CORPORA), default=CORPUS,
                   help="pinned offline corpus: 'stdlib' (the bundled ladder's: pydoc topics + the full stdlib "
                        "sources) or 'default' (pydoc topics + stdlib docstrings, about 1/4.6 of the tokens)")
    p.add_argument("--train-contexts", type=int, default=None, help="default: every training context")
    p.add_argument("--heldout-contexts", type=int, default=None, help="default: every held-out context")
    p.add_argument("--ce-contexts", type=int, default=64, help="held-out contexts for the CE metrics")
    p.add_argument("--l1", type=float, default=L1)
    p.add_argument("--lr", type=float, default=LR)
    p.add_argument("--epochs", type=float, default=EPOCHS)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster on a busy shared CPU)")
    p.add_argument("--reproduce", type=Path, default=None,
                   help="a ladder's train_config.json: stop unless the re-collected token ids match it")
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    expected = json.loads(args.reproduce.read_text()) if args.reproduce else None
    model = load_model()
    train_store, held_store = build_stores(model, args.work, context_size=args.context_size,
                                           n_train=args.train_contexts, n_heldout=args.heldout_contexts,
                                           seed=args.seed, quiet=args.quiet, expected=expected,
                                           corpus=args.corpus)
    if args.collect_only:
        return

    from featgraph.io.files import atomic_write, write_json
    from featgraph.tables import write_parquet
    from featgraph.training import TrainConfig, train_ladder
    from featgraph.training.evaluate import evaluate_ladder, metrics_markdown

    widths = [int(w) for w in args.widths.split(",")]
    controls = [tuple(int(v) for v in args.control.split(":"))] if args.control else []
    cfg = TrainConfig(architecture="relu", l1_coefficient=args.l1, lr=args.lr, batch_size=args.batch_size,
                      epochs=args.epochs, seed=args.seed, dead_window=DEAD_WINDOW,
                      lr_warmup_fraction=LR_WARMUP_FRACTION, l1_warmup_fraction=L1_WARMUP_FRACTION,
                      resample_until=RESAMPLE_UNTIL)
    folders = train_ladder(train_store, widths, cfg, args.out, name_prefix="l3", save_dtype=torch.float16,
                           progress=not args.quiet, controls=controls, checkpoint_dir=args.work / "checkpoint",
                           health_acts=held_store, health_note=f"held-out store ({held_store.n_tokens} tokens)")
    control = None
    if controls:  # outside the ladder's SAE subfolders, so `featgraph families ladders/...` sees one SAE per width
        control = args.out / "seed-control" / folders[-1].name
        if control.exists():
            shutil.rmtree(control)
        control.parent.mkdir(parents=True, exist_ok=True)
        folders[-1].rename(control)
        folders = folders[:-1]
    ce_tokens = held_store.tokens()[: args.ce_contexts]
    table = evaluate_ladder(folders + ([control] if control else []), acts=held_store, model=model,
                            tokens=ce_tokens, hook_name=HOOK, progress=not args.quiet)
    write_parquet(table, args.out / "metrics.parquet")  # the one Parquet writer (atomic, fixed settings)
    md = metrics_markdown(table, note=f"held-out: {held_store.n_tokens} tokens for reconstruction and health, "
                                      f"{ce_tokens.numel()} tokens ({len(ce_tokens)} contexts) for CE")
    md += "\n" + pair_stats(folders, control)
    atomic_write(args.out / "METRICS.md", lambda path: path.write_text(md))
    both = (("train", train_store), ("heldout", held_store))
    stores = {f"{k}_store": st.meta | {"shards": None} for k, st in both}
    write_json(args.out / "train_config.json",
               {**{k: v for k, v in vars(args).items() if k != "reproduce"}, "work": str(args.work),
                "out": str(args.out), "hook_name": HOOK, "train": dataclasses.asdict(cfg), **stores})
    print(md)
    print(json.dumps({"saes": [str(f) for f in folders], "control": str(control) if control else None}))


if __name__ == "__main__":
    main()
