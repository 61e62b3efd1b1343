"""Train 1152-wide SAEs at more layers of SmolLM2-135M with the bundled ladder's recipe (offline, CPU).

    python examples/train_smollm2_layers.py --work /tmp/featgraph-layers --out ladders/smollm2-135m-layers

With the bundled ``ladders/smollm2-135m/l3-1152`` (``blocks.3.hook_resid_pre``) this gives one width at three or
more adjacent layers, the real multi-layer collection ``featgraph atlas`` runs on (feature flow across layers).
Everything that could differ from the bundled ladder's run is taken from it, so the SAEs differ only in the layer:

1. the same pinned corpus split and context order: the token ids are checked against the bundled ladder's
   ``train_config.json`` (``--base``; the run stops if the re-collected ids differ);
2. ONE forward pass per batch collects every requested hook (``featgraph.activations.collect.collect_hooks``, up to
   the deepest block) into one store per hook under ``--work/<split>-l<layer>``; a killed collection resumes;
3. per layer, one SAE of ``--width`` trained by ``featgraph.training.train_ladder`` with the bundled run's
   ``TrainConfig`` read back from its ``train_config.json`` (L1, LR, epochs, schedule fractions, dead window,
   batch 256, seed 0 -> the same init seed per width and the same batch order; not a copy of the constants),
   checkpointed under ``--work/checkpoint-l<layer>`` and resumed by a restarted run;
   health.json on that layer's held-out store; saved in fp16 as ``--out/l<layer>-<width>``;
4. metrics per layer on held-out tokens (reconstruction, health and CE through the full model, the ladder
   script's ``evaluate_ladder``), ``--out/METRICS.md``, ``--out/metrics.parquet``, ``--out/train_config.json``
   and ``--out/manifest.json``: one entry per SAE (path relative to the manifest, model, site, layer, width, seed)
   for ``featgraph atlas``, with the bundled layer-3 SAE referenced in place (``--base``), not copied.

Each step is skipped when its output exists, so the same command finishes a killed run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from featgraph.activations import load_model
from featgraph.activations.collect import collect_hooks
from featgraph.activations.text import check_provenance, corpus_contexts_with_provenance


def hook_of(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def build_stores(model, work: Path, layers: list[int], *, context_size: int, seed: int, quiet: bool,
                 expected: dict | None, corpus: str = "default") -> dict[int, tuple]:
    """``{layer: (train_store, heldout_store)}``: each split's contexts run through the model once for all layers."""
    per_split = {}
    for split in ("train", "heldout"):
        tokens, prov = corpus_contexts_with_provenance(model, split=split, context_size=context_size,
                                                       n_contexts=None, seed=seed, corpus=corpus)
        logging.info("%s: %d contexts of %d tokens from %d documents (token ids sha256 %s)", split, len(tokens),
                     context_size, prov["n_documents"], prov["token_ids_sha256"][:16])
        if expected is not None:  # the bundled ladder's corpus, or stop: other text would not be comparable
            recorded = (expected.get(f"{split}_store") or {}).get("extra", {}).get("provenance") or {}
            check_provenance(recorded, prov, where=f"{split} store of the bundled ladder")
        stores = collect_hooks(model, tokens, {hook_of(la): work / f"{split}-l{la}" for la in layers},
                               progress=not quiet,
                               extra={"split": split, "corpus": corpus, "seed": seed, "provenance": prov})
        per_split[split] = stores
    return {la: (per_split["train"][hook_of(la)], per_split["heldout"][hook_of(la)]) for la in layers}


def train_layer(layer: int, train_store, held_store, work: Path, cfg, width: int, quiet: bool) -> Path:
    """One SAE of ``width`` at ``layer`` (skipped when its folder is already finished); its folder."""
    from featgraph.training import train_ladder

    out = work / f"sae-l{layer}"
    folder = out / f"l{layer}-{width}"
    if (folder / "health.json").exists():
        logging.info("layer %d: %s already trained", layer, folder)
        return folder
    (folder,) = train_ladder(train_store, [width], cfg, out, name_prefix=f"l{layer}", save_dtype=torch.float16,
                             progress=not quiet, checkpoint_dir=work / f"checkpoint-l{layer}",
                             health_acts=held_store,
                             health_note=f"held-out store ({held_store.n_tokens} tokens)")
    return folder


def manifest(out: Path, base: Path, base_layer: int, layers: list[int], width: int, seed: int,
             model: str) -> dict:
    """The collection for ``featgraph atlas`` (featgraph.atlas.collection's JSON manifest): one entry per SAE,
    paths relative to the manifest's folder; all on one stream, so the plan is flow between adjacent layers."""
    entries = [(base_layer, base / f"l{base_layer}-{width}")] + [(la, out / f"l{la}-{width}") for la in layers]
    return {"defaults": {"model": model, "seed": seed}, "sae": [
        {"name": f"l{la}-{width}", "path": os.path.relpath(path, out), "site": hook_of(la), "layer": la,
         "width": width} for la, path in sorted(entries)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/featgraph-layers"),
                   help="activation stores and training checkpoints (resumed when the run restarts)")
    p.add_argument("--out", type=Path, default=Path("ladders/smollm2-135m-layers"))
    p.add_argument("--base", type=Path, default=Path("ladders/smollm2-135m"),
                   help="the bundled ladder: its train_config.json pins the corpus and recipe, its l3 SAE joins")
    p.add_argument("--layers", default="4,5", help="layers to train (the base ladder's layer 3 is reused)")
    p.add_argument("--width", type=int, default=1152)
    p.add_argument("--ce-contexts", type=int, default=64, help="held-out contexts for the CE metrics")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster on a busy shared CPU)")
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--train-only", action="store_true",
                   help="train --layers and stop (one process per layer can run side by side; a last run without "
                        "this flag finds them trained and writes the bundle)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)

    base_cfg = json.loads((args.base / "train_config.json").read_text())
    base_layer = int(base_cfg["hook_name"].split(".")[1])
    layers = [int(v) for v in args.layers.split(",")]
    model = load_model()
    stores = build_stores(model, args.work, layers, context_size=base_cfg["context_size"],
                          seed=base_cfg["seed"], quiet=args.quiet, expected=base_cfg,
                          corpus=base_cfg.get("corpus", "default"))  # configs older than --corpus: the default
    if args.collect_only:
        return

    from featgraph.io.files import atomic_write, write_json
    from featgraph.tables import write_parquet
    from featgraph.training import TrainConfig
    from featgraph.training.evaluate import evaluate_ladder, metrics_markdown

    # the bundled run's recipe, read back from its train_config.json (the ladder script's constants made it)
    cfg = TrainConfig(**base_cfg["train"])
    folders = {la: train_layer(la, *stores[la], args.work, cfg, args.width, args.quiet) for la in layers}
    if args.train_only:
        return

    args.out.mkdir(parents=True, exist_ok=True)
    tables, md = [], []
    for la, folder in folders.items():
        dest = args.out / folder.name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(folder, dest)
        held = stores[la][1]
        ce_tokens = held.tokens()[: args.ce_contexts]
        table = evaluate_ladder([dest], acts=held, model=model, tokens=ce_tokens, hook_name=hook_of(la),
                                progress=not args.quiet)
        tables.append(table)
        md.append(metrics_markdown(table, note=f"layer {la}, held-out: {held.n_tokens} tokens for reconstruction "
                                               f"and health, {ce_tokens.numel()} tokens for CE"))
    import polars as pl

    write_parquet(pl.concat(tables), args.out / "metrics.parquet")
    text = "\n".join(md)
    atomic_write(args.out / "METRICS.md", lambda path: path.write_text(text))
    write_json(args.out / "manifest.json", manifest(args.out, args.base, base_layer, layers, args.width,
                                                    base_cfg["seed"], base_cfg["train_store"]["model"]))
    write_json(args.out / "train_config.json",
               {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "hooks": [hook_of(la) for la in layers],
                "train": dataclasses.asdict(cfg),
                "stores": {hook_of(la): {k: s.meta | {"shards": None} for k, s in zip(("train", "heldout"),
                                                                                      stores[la], strict=True)}
                           for la in layers}})
    print(text)
    print(json.dumps({"saes": [str(args.out / f.name) for f in folders.values()]}))


if __name__ == "__main__":
    main()
