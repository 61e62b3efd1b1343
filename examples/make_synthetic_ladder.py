"""Write a small synthetic SAE ladder with planted copies, splits and novel features (featgraph folder format).

    python examples/make_synthetic_ladder.py --out ladders/synthetic

Each SAE folder also gets ``planted.json`` next to it in the ladder root, the ground truth a user can compare
``featgraph families`` against.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from featgraph.io.files import write_json
from featgraph.sae import Sae, SaeConfig
from featgraph.synthetic import planted_ladder, random_sae_tensors


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="ladders/synthetic", show_default=True)
@click.option("--widths", default="256,512,1024,2048", show_default=True)
@click.option("--d-in", default=64, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(out: str, widths: str, d_in: int, seed: int) -> None:
    ws = [int(w) for w in widths.split(",")]
    decoders, truths = planted_ladder(ws, d_in, seed=seed)
    root = Path(out)
    for i, W in enumerate(decoders):
        t = {k: torch.from_numpy(v) for k, v in random_sae_tensors(W, seed=seed + i).items()}
        cfg = SaeConfig(d_in=d_in, n_features=W.shape[0], hook_name="synthetic", model_name="synthetic")
        Sae.from_tensors(t, cfg).save(root / f"synthetic-{W.shape[0]}")
    planted = {
        f"synthetic-{ws[i]}->synthetic-{ws[i + 1]}": {
            "novel": int((t.parent_of < 0).sum()),
            "reconstruction": int((t.parent_of >= 0).sum()),
        }
        for i, t in enumerate(truths)
    }
    write_json(root / "planted.json", planted)
    click.echo(f"wrote {len(ws)} SAEs to {root}: {json.dumps(planted)}")


if __name__ == "__main__":
    main()
