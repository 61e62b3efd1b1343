"""Resolving SAE names researchers use: SAELens release names and Hugging Face hub paths.

Three spellings are accepted wherever an SAE path is (``featgraph.ladder.expand_sae_paths`` sends every argument
that does not exist as a local path here; **a local path that exists always wins over a name**):

- ``RELEASE``: every SAE of a SAELens release at one model site, as a ladder. A release with SAEs at several
  sites (Gemma Scope: one per layer) is refused with the list of its sites; pick one as ``RELEASE@SITE``
  (``gemma-scope-2b-pt-res-canonical@layer_12``). A site with several SAEs of one width (Gemma Scope's L0
  sweeps) is refused too: name those SAEs one by one.
- ``RELEASE/SAE_ID``: one SAE of a release (``gpt2-small-res-jb-feature-splitting/blocks.8.hook_resid_pre_768``).
- ``hf://OWNER/REPO[@REVISION][/PATH]``: a folder or file in a hub model repo (huggingface_hub's own URI
  syntax, parsed by ``huggingface_hub.parse_hf_uri``), e.g.
  ``hf://google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82``. ``@REVISION`` pins a branch, tag or
  commit.

Releases come from featgraph's registry (``featgraph/hub/registry/releases.json.gz``, generated from SAELens's
``pretrained_saes.yaml`` by ``scripts/make_release_registry.py``; ``FEATGRAPH_RELEASE_REGISTRY`` points at
another registry file, as the tests do). sae-lens itself is not needed.

Files are fetched with ``huggingface_hub.hf_hub_download`` into its normal cache (``HF_HUB_CACHE``, else
``HF_HOME/hub``), with its progress bars (hidden by ``HF_HUB_DISABLE_PROGRESS_BARS=1``, :func:`set_progress` or
:func:`progress_bars`, which ``featgraph families --quiet`` uses) and its token lookup (``HF_TOKEN``, ``hf auth
login``). Only the files a reader needs are fetched: SAELens ``cfg.json`` + ``sae_weights.safetensors`` (not
``sparsity.safetensors``), Gemma Scope ``params.npz``, dictionary_learning ``ae.pt`` + ``config.json``. With
``HF_HUB_OFFLINE=1`` (or with the hub unreachable) a name whose files are in the cache works, and one whose files
are not fails in one line naming the repo, revision and files to download.

Every resolved SAE's provenance (:class:`HubSource`: release, SAE id, Neuronpedia id, repo, requested revision,
commit hash, and the cache blob id of each file) is kept by local path: :func:`source_of` returns it, so a result
can name exactly the weights it came from, and :meth:`HubSource.neuronpedia_url` gives a feature's dashboard.
"""

from __future__ import annotations

from pathlib import Path

from featgraph.errors import ConfigError, SaeFormatError, UnsupportedError
from featgraph.hub.fetch import (
    _FOLDER_LAYOUTS,
    _FORMAT_FILES,
    _AbsentOnHub,
    _fetch_files,
    _few,
    _local_sae_path,
    _missing_error,
    _NotCached,
)
from featgraph.hub.provenance import HubSource, remember
from featgraph.hub.releases import RegistrySae, Release, load_registry


# -- resolution -----------------------------------------------------------------------------------------------
def looks_like_name(raw: str) -> bool:
    """True when ``raw`` is an ``hf://`` URI or starts with a release name of the registry."""
    if raw.startswith("hf://"):
        return True
    head = raw.split("/", 1)[0].split("@", 1)[0]
    try:
        return head in load_registry().releases
    except ConfigError:
        return False


def resolve(raw: str) -> list[Path]:
    """Local paths (in the hub cache) of the SAEs ``raw`` names; a SaeFormatError when it names nothing."""
    if raw.startswith("hf://"):
        return [_resolve_uri(raw)]
    reg = load_registry()
    head, _, sae_id = raw.partition("/")
    name, _, site = head.partition("@")
    if name not in reg.releases:
        raise SaeFormatError(f"{raw}: no such file or folder")
    rel = reg.releases[name]
    if rel.format is None:
        raise UnsupportedError(
            f"{raw}: release {name} (repo {rel.repo}) uses SAELens's {rel.conversion!r} conversion, which no "
            "featgraph reader implements; featgraph reads releases in SAELens, Gemma Scope and dictionary_learning "
            "layouts"
        )
    if sae_id:
        if site:
            raise ConfigError(f"{raw}: give either RELEASE@SITE (a ladder) or RELEASE/SAE_ID (one SAE), not both")
        match = [s for s in rel.saes if s.sae_id == sae_id]
        if not match:
            ids = [s.sae_id for s in rel.saes]
            raise SaeFormatError(f"{raw}: release {name} has no SAE id {sae_id!r}; its ids: {_few(ids)}")
        chosen = match
    else:
        chosen = _select_site(rel, site, raw)
    return _fetch_many([(rel, s) for s in chosen], raw)


def _select_site(rel: Release, site: str, raw: str) -> list[RegistrySae]:
    sites = rel.sites
    if not site:
        if len(sites) > 1:
            raise ConfigError(
                f"{raw}: release {rel.name} has SAEs at {len(sites)} sites ({_few(sites)}); pick one as "
                f"{rel.name}@SITE (e.g. {rel.name}@{sites[0]}) or one SAE as {rel.name}/SAE_ID "
                f"(`featgraph releases --search {rel.name}` lists them)"
            )
        site = sites[0]
    if site not in sites:
        raise ConfigError(f"{raw}: release {rel.name} has no site {site!r}; its sites: {_few(sites)}")
    saes = [s for s in rel.saes if s.site == site]
    by_width: dict[int, list[str]] = {}
    for s in saes:
        if s.width is not None:
            by_width.setdefault(s.width, []).append(s.sae_id)
    dup = {w: ids for w, ids in by_width.items() if len(ids) > 1}
    if dup:
        w, ids = min(dup.items())
        raise ConfigError(
            f"{raw}: {len(ids)} SAEs of width {w} at {site} ({_few(ids, 3)}): a ladder takes one SAE per width; "
            f"name them one by one as {rel.name}/SAE_ID"
        )
    return sorted(saes, key=lambda s: (s.width is None, s.width or 0, s.sae_id))


def _fetch_many(items: list[tuple[Release, RegistrySae]], raw: str) -> list[Path]:
    """Fetch every SAE's files, then report every file missing from the cache at once."""
    out, missing = [], []
    for rel, s in items:
        try:
            out.append(_fetch_registry_sae(rel, s, raw))
        except _NotCached as e:
            missing.append(e)
        except _AbsentOnHub as e:
            raise SaeFormatError(f"{raw}: repo {rel.repo} has no file {e.args[0]} (SAE {s.sae_id} of release "
                                 f"{rel.name}); the registry may be older than the repo") from e
    if missing:
        files = [f for e in missing for f in e.files]
        raise _missing_error(raw, missing[0].repo, missing[0].revision, files)
    return out


def _fetch_registry_sae(rel: Release, s: RegistrySae, raw: str) -> Path:
    assert rel.format is not None
    required, optional = _FORMAT_FILES[rel.format]
    fetched = _fetch_files(rel.repo, None, s.path, required, optional, raw)
    local = _local_sae_path(fetched, s.path, rel.format)
    remember(local, HubSource(
        name=s.sae_id.replace("/", "-"), spec=raw, repo=rel.repo, revision="main", commit=fetched.commit,
        path=s.path, files=fetched.blobs, release=rel.name, sae_id=s.sae_id, neuronpedia=s.neuronpedia,
        width=s.width,
    ))
    return local


def _resolve_uri(raw: str) -> Path:
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError

    try:
        uri = parse_hf_uri(raw)
    except HfUriError as e:
        raise SaeFormatError(f"{raw}: not an hf://OWNER/REPO[@REVISION][/PATH] name ({e.msg})") from e
    if uri.type != "model":
        raise SaeFormatError(f"{raw}: featgraph reads SAEs from model repos only, not a {uri.type} repo")
    path = uri.path_in_repo.strip("/")
    leaf = path.rsplit("/", 1)[-1]
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    # a file path names its format; a folder's format is found by which layout's files exist
    if leaf.endswith(".npz"):
        layouts, folder, files = ["gemmascope"], folder, {"gemmascope": ((leaf,), ())}
    elif leaf.endswith(".pt"):
        layouts, files = ["dictionary_learning"], {"dictionary_learning": ((leaf,), ("config.json",))}
    elif leaf in ("cfg.json", "sae_weights.safetensors"):
        layouts, files = ["saelens"], dict(_FORMAT_FILES)
    elif leaf == "sae.safetensors":
        layouts, files = ["sparsify"], dict(_FORMAT_FILES)
    else:
        layouts, folder, files = list(_FOLDER_LAYOUTS), path, dict(_FORMAT_FILES)
    missing: list[str] = []
    for fmt in layouts:
        required, optional = files[fmt]
        try:
            fetched = _fetch_files(uri.id, uri.revision, folder, required, optional, raw, probing=len(layouts) > 1)
        except _NotCached as e:
            missing.append(" + ".join(e.files))
            continue
        except _AbsentOnHub:
            continue
        is_file = leaf.endswith((".npz", ".pt"))
        target = path if is_file else folder
        local = _local_sae_path(fetched, target, fmt)
        # the default name: the SAE's folder in the repo (its file's stem when the file is not the format's
        # fixed file name), the repo's name at the root
        name = path.rsplit(".", 1)[0] if is_file and leaf not in ("params.npz", "ae.pt") else folder
        name = name or uri.id.split("/")[1]
        known = _registry_entry(uri.id, target)  # a registry SAE named by its hub path keeps its Neuronpedia id
        remember(local, HubSource(
            name=name.replace("/", "-"), spec=raw, repo=uri.id, revision=uri.revision or "main",
            commit=fetched.commit, path=target, files=fetched.blobs, release=known and known.release,
            sae_id=known and known.sae_id, neuronpedia=known and known.neuronpedia, width=known and known.width,
        ))
        return local
    if missing:
        # offline (or hub unreachable): nothing of any layout is cached
        rev = uri.revision or "main"
        if len(layouts) > 1:
            raise _missing_error(raw, uri.id, rev, missing, folder=folder)
        raise _missing_error(raw, uri.id, rev, missing[0].split(" + "))
    raise SaeFormatError(f"{raw}: repo {uri.id} has no SAE at {path or 'its root'!r} (looked for "
                         f"{', '.join(' + '.join(files[f][0]) for f in layouts)})")


def _registry_entry(repo: str, path: str) -> RegistrySae | None:
    try:
        releases = load_registry().releases.values()
    except ConfigError:
        return None
    return next((s for r in releases if r.repo == repo for s in r.saes if s.path == path), None)
