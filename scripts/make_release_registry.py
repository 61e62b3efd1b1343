#!/usr/bin/env python3
"""Generate featgraph's release registry (``featgraph/hub/registry/releases.json.gz``) from SAELens's
``pretrained_saes.yaml``. Regenerate it with this script; never edit the output by hand.

The shipped registry was made from the yaml of the SAELens repository (jbloomAus/SAELens) at tag v6.18.0:

    python3 scripts/make_release_registry.py pretrained_saes.yaml --sae-lens-version 6.18.0 \\
        --source-commit 91ca16ccd0684e4dd6323cd4f23ded734339ec54 --out featgraph/hub/registry/releases.json.gz

Only what featgraph needs is kept: per release the hub repo, the model, SAELens's conversion function and the
featgraph format it implies (or null where featgraph reads none); per SAE its id, its path in the repo, its model
site, its width and its Neuronpedia id. The output is gzipped, sorted JSON written with mtime 0, so the same yaml
always gives the same bytes.

Width (d_sae): the yaml's ``d_sae`` where an SAE entry has one (v6.18.0 has none), else parsed from the id or path
by the first rule that applies, else null (unknown until the SAE is loaded):

1. ``width_<N>k`` / ``width_<N>m`` (Gemma Scope) or a leading ``v5_<N>k_`` (OpenAI v5 SAEs): these names round
   a power of two to thousands (16k = 16384, 65k = 65536, 1m = 1048576), so the width is the power of two
   nearest to N * 1e3 (or N * 1e6);
2. ``width-2pow<N>`` (SAEBench): 2**N;
3. the number right after the hook name, ``hook_<site>_<N>`` (``blocks.8.hook_resid_pre_768``,
   ``gemma_2b_blocks.12.hook_resid_post_16384``), in the id, then in the path;
4. ``_ds<N>_`` (dictionary size in attention-SAE file names): N.

Site: the transformer-lens hook in the id (``blocks.8.hook_resid_pre``), else the first folder of a Gemma
Scope-style id (``layer_12``, ``embedding``), else the id up to ``layer_<N>``, else the whole id (one SAE per
site).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

# SAELens conversion function -> the featgraph format that reads what it downloads (None: featgraph reads none)
CONVERSION_FORMATS: dict[str | None, str] = {
    None: "saelens",
    "gemma_2": "gemmascope",
    "dictionary_learning_1": "dictionary_learning",
}
SAE_FIELDS = ["id", "path", "site", "width", "neuronpedia"]
_HOOK = re.compile(r"(blocks\.\d+\.hook_[a-z]+(?:_[a-z]+)*)")
_HOOK_WIDTH = re.compile(r"hook_[a-z]+(?:_[a-z]+)*_(\d+)(?![\d.])")
_ROUNDED = re.compile(r"(?:width_|^v5_)(\d+)([km])(?=[_/]|$)")
_POW2 = re.compile(r"width-2pow(\d+)")
_DS = re.compile(r"_ds(\d+)_")
_LAYER = re.compile(r"^(.*?layer_\d+)(?=[_/]|$)")


def parse_width(sae_id: str, path: str) -> int | None:
    """The width named by an SAE id or path (rules in the module docstring), or None."""
    for text in (sae_id, path):
        m = _ROUNDED.search(text)
        if m:
            n = int(m.group(1)) * (1000 if m.group(2) == "k" else 1_000_000)
            return 2 ** round(math.log2(n))
    for text in (sae_id, path):
        m = _POW2.search(text)
        if m:
            return 2 ** int(m.group(1))
    for text in (sae_id, path):
        m = _HOOK_WIDTH.search(text)
        if m:
            return int(m.group(1))
    m = _DS.search(path)
    return int(m.group(1)) if m else None


def parse_site(sae_id: str) -> str:
    """The model site an SAE id names (rules in the module docstring)."""
    m = _HOOK.search(sae_id)
    if m:
        return m.group(1)
    if "/width_" in sae_id:
        return sae_id.split("/", 1)[0]
    m = _LAYER.match(sae_id)
    return m.group(1) if m else sae_id


def build_registry(data: dict[str, Any], *, source: dict[str, Any]) -> dict[str, Any]:
    """The registry dict for the parsed yaml ``data``; ``source`` records where the yaml came from."""
    if not isinstance(data, dict):
        raise ValueError("pretrained_saes.yaml: the top level must be a mapping of release names")
    releases: dict[str, Any] = {}
    for name, rel in sorted(data.items()):
        if not isinstance(rel, dict) or not isinstance(rel.get("saes"), list) or "repo_id" not in rel:
            raise ValueError(f"pretrained_saes.yaml: release {name!r} lacks repo_id or a saes list")
        conversion = rel.get("conversion_func")
        rows = []
        for sae in rel["saes"]:
            if not isinstance(sae, dict) or "id" not in sae or "path" not in sae:
                raise ValueError(f"pretrained_saes.yaml: release {name!r} has an SAE without id and path: {sae!r}")
            sae_id, path = str(sae["id"]), str(sae["path"])
            d_sae = sae.get("d_sae")
            width = int(d_sae) if isinstance(d_sae, int) else parse_width(sae_id, path)
            rows.append([sae_id, path, parse_site(sae_id), width, sae.get("neuronpedia")])
        releases[name] = {
            "repo": rel["repo_id"],
            "model": rel.get("model"),
            "conversion": conversion,
            "format": CONVERSION_FORMATS.get(conversion),
            "saes": rows,
        }
    return {"source": source, "sae_fields": SAE_FIELDS, "releases": releases}


def write_registry(registry: dict[str, Any], out: Path) -> None:
    """Gzipped compact JSON with a fixed mtime: the same registry gives the same bytes."""
    raw = json.dumps(registry, sort_keys=True, separators=(",", ":")).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("yaml", type=Path, help="SAELens's sae_lens/pretrained_saes.yaml")
    ap.add_argument("--sae-lens-version", required=True, help="the sae-lens version the yaml belongs to")
    ap.add_argument("--source-commit", default=None, help="the SAELens git commit the yaml came from")
    ap.add_argument("--source-repo", default="jbloomAus/SAELens")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "featgraph" / "registry"
                    / "releases.json.gz")
    args = ap.parse_args(argv)
    import yaml  # PyYAML (a huggingface_hub dependency); only the generator reads YAML

    text = args.yaml.read_bytes()
    data = yaml.safe_load(text)
    source = {
        "file": "sae_lens/pretrained_saes.yaml",
        "repo": args.source_repo,
        "commit": args.source_commit,
        "sae_lens_version": args.sae_lens_version,
        "sha256": hashlib.sha256(text).hexdigest(),
    }
    registry = build_registry(data, source=source)
    write_registry(registry, args.out)
    n = sum(len(r["saes"]) for r in registry["releases"].values())
    print(f"wrote {args.out}: {len(registry['releases'])} releases, {n} SAEs, {args.out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
