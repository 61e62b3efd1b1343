"""A planted multi-site, multi-width, multi-seed collection for the atlas tests, with its ground truth.

One stream ``blocks.<L>.hook_resid_post`` at layers 1, 2, 3, each a ladder of widths 32 and 64 at d = 64, plus a
second seed of the layer-2 width-64 SAE and a two-width ladder at ``blocks.2.hook_mlp_out`` (another stream: flow
must not cross streams). Planted, all far from tau = 0.7 (random unit vectors at d = 64 reach cos ~0.5 at most):

- flow at width 32: rows ``0..19`` of layer L+1 are carried from ``carry[L][i]`` of layer L (cos 0.9-0.97), rows
  ``20..31`` are fresh directions (from nowhere); so some chains run through all three layers;
- families at each layer: rows ``0..15`` of the width-64 SAE copy base rows ``copy[L][i]`` (cos 0.97-0.99), rows
  ``16..39`` are 2 children each of 12 split parents (cos 0.8-0.9), the rest fresh;
- seeds: rows ``0..47`` of seed 1 are ``perm[i]`` of seed 0 at cos 0.95-0.99, the rest fresh.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

D = 64
LAYERS = (1, 2, 3)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _near(parent: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    r = rng.standard_normal(parent.shape[-1])
    r -= (r @ parent) * parent
    return cos * parent + np.sqrt(1 - cos * cos) * r / np.linalg.norm(r)


@dataclasses.dataclass
class Planted:
    manifest: Path
    decoders: dict[str, np.ndarray]  # SAE name -> float32 decoder
    carry: dict[int, np.ndarray]  # layer L -> parent in layer L-1's width-32 SAE of rows 0..19 of layer L's
    copy: dict[int, np.ndarray]  # layer L -> base row copied by rows 0..15 of layer L's width-64 SAE
    split: dict[int, np.ndarray]  # layer L -> parent of rows 16..39 (2 each)
    perm: np.ndarray  # seed 1 row i (< 48) copies seed 0 row perm[i]


def _ladder64(base: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = rng.permutation(base.shape[0])
    copy, split = order[:16], order[16:28]
    rows = [_near(base[p], rng.uniform(0.97, 0.99), rng) for p in copy]
    rows += [_near(base[p], rng.uniform(0.8, 0.9), rng) for p in split for _ in range(2)]
    rows += list(_unit(rng.standard_normal((64 - len(rows), D))))
    return np.asarray(rows), copy, np.repeat(split, 2)


def build_collection(root: Path, *, seed: int = 0, fmt: str = "toml") -> Planted:
    """Write the SAEs under ``root/saes`` and the manifest ``root/atlas.<fmt>``; return the truth."""
    from tests.conftest import tiny_sae

    rng = np.random.default_rng(seed)
    units: dict[str, np.ndarray] = {}
    carry, copy, split = {}, {}, {}
    base = _unit(rng.standard_normal((32, D)))
    for L in LAYERS:
        if L > 1:
            carry[L] = rng.permutation(32)[:20]
            fresh = _unit(rng.standard_normal((12, D)))
            base = np.vstack([np.asarray([_near(base[p], rng.uniform(0.9, 0.97), rng) for p in carry[L]]), fresh])
        units[f"l{L}-w32"] = base
        units[f"l{L}-w64"], copy[L], split[L] = _ladder64(base, rng)
    perm = rng.permutation(64)[:48]
    s0 = units["l2-w64"]
    units["l2-w64-seed1"] = np.vstack([np.asarray([_near(s0[p], rng.uniform(0.95, 0.99), rng) for p in perm]),
                                       _unit(rng.standard_normal((16, D)))])
    mlp = _unit(rng.standard_normal((16, D)))
    units["mlp2-w16"] = mlp
    units["mlp2-w48"], _, _ = _ladder64(np.vstack([mlp, _unit(rng.standard_normal((16, D)))]), rng)
    units["mlp2-w48"] = units["mlp2-w48"][:48]
    decoders = {n: (u * rng.uniform(0.5, 2.0, (u.shape[0], 1))).astype(np.float32) for n, u in units.items()}
    entries = []
    for i, (name, W) in enumerate(decoders.items()):
        tiny_sae(W_dec=W, seed=i).save(root / "saes" / name)
        layer = int(name[1]) if name.startswith("l") else 2
        site = f"blocks.{layer}.hook_resid_post" if name.startswith("l") else "blocks.2.hook_mlp_out"
        entries.append({"path": f"saes/{name}", "name": name, "site": site,
                        "seed": 1 if name.endswith("seed1") else 0, "width": int(W.shape[0])})
    manifest = root / f"atlas.{fmt}"
    write_manifest(manifest, entries, defaults={"model": "planted"})
    return Planted(manifest, decoders, carry, copy, split, perm)


def write_manifest(path: Path, entries: list[dict], defaults: dict | None = None) -> Path:
    """A manifest file (TOML or JSON by suffix) with these entries."""
    import json

    if path.suffix == ".json":
        obj = {"sae": entries, **({"defaults": defaults} if defaults else {})}
        path.write_text(json.dumps(obj, indent=1))
        return path
    lines = []
    if defaults:
        lines.append("[defaults]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in defaults.items()]
    for e in entries:
        lines.append("\n[[sae]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in e.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
