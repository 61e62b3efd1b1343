"""SAEs by name (featgraph.hub) against a local Hugging Face cache, with no network.

The cache is written by huggingface_hub itself: featgraph resolves the names once "online" against a local mock of
the hub's file endpoint (``HF_ENDPOINT`` on 127.0.0.1, see :class:`MockHub`), so ``hf_hub_download`` lays out
``models--OWNER--REPO/{blobs,refs,snapshots/<commit>}`` exactly as it does against huggingface.co; then every test
runs with ``HF_HUB_OFFLINE=1`` and the endpoint pointed at a closed port. ``scan_cache_dir`` and
``try_to_load_from_cache`` are shown to read that cache.
The registry is generated from ``tests/fixtures/saelens_pretrained_saes_small.yaml`` (SAELens's layout) by the
repo's own generator.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from featgraph import hub
from featgraph.errors import ConfigError, SaeFormatError
from featgraph.formats import load_decoder, save_gemmascope, save_saelens, save_sparsify
from featgraph.graphml import read_graphml
from featgraph.synthetic import planted_ladder
from tests.conftest import run_main, tiny_sae
from tests.hostile import assert_refused, tree_digest

FIXTURE_YAML = Path(__file__).resolve().parents[1] / "fixtures" / "saelens_pretrained_saes_small.yaml"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_release_registry.py"
FS_REPO = "featgraph-test/tiny-res-fs"
SCOPE_REPO = "featgraph-test/tiny-scope-res"
COMMIT_MAIN = hashlib.sha1(b"main").hexdigest()
COMMIT_V1 = hashlib.sha1(b"v1").hexdigest()
FS_IDS = [f"blocks.1.hook_resid_pre_{w}" for w in (32, 64, 128)]
SCOPE_PATHS = {  # path in the repo -> width; layer_1 has two SAEs of width 1024 (an L0 sweep)
    "layer_0/width_1k/average_l0_3": 1024,
    "layer_1/width_1k/average_l0_4": 1024,
    "layer_1/width_1k/average_l0_9": 1024,
    "layer_1/width_2k/average_l0_5": 2048,
}
D_IN = 16


def _generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_release_registry", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class MockHub:
    """A local stand-in for the hub's file endpoint, ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``, answering
    as huggingface.co does (``X-Repo-Commit``, ``ETag``, ``Content-Length``; 404 with ``X-Error-Code``), so that
    huggingface_hub's own hf_hub_download writes its cache exactly as it does online."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.log: list[tuple[str, str]] = []

    def add(self, repo: str, commit: str, files: dict[str, bytes], refs: tuple[str, ...] = ()) -> None:
        r = self.repos.setdefault(repo, {"refs": {}, "commits": {}})
        r["commits"][commit] = files
        r["refs"].update(dict.fromkeys(refs, commit))

    def _answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        repo, sep, rest = path.lstrip("/").partition("/resolve/")
        if not sep or repo not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, b""
        r = self.repos[repo]
        for rev in sorted({*r["refs"], *r["commits"]}, key=len, reverse=True):
            if rest.startswith(rev + "/"):
                commit = r["refs"].get(rev, rev)
                data = r["commits"][commit].get(rest[len(rev) + 1:])
                if data is None:
                    return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, b""
                etag = hashlib.sha256(data).hexdigest()  # every file as if LFS: the blob is named by its sha256
                return 200, {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}, data
        return 404, {"X-Error-Code": "RevisionNotFound"}, b""

    def __enter__(self) -> str:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub_ = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, body: bool) -> None:
                code, headers, data = hub_._answer(self.path)
                hub_.log.append((self.command, self.path, code))
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
                self._reply(False)

            def do_GET(self) -> None:  # noqa: N802
                self._reply(True)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fetched(self, methods: tuple[str, ...] = ("GET",)) -> list[str]:
        """The repo files served so far (downloaded: GET; looked up: HEAD), as ``repo@revision/path``; an hf://
        folder's format is found by looking up each layout's files, whose 404s are not listed."""
        return sorted({p.lstrip("/").replace("/resolve/", "@", 1) for m, p, code in self.log
                       if m in methods and "/resolve/" in p and code == 200})


def folder_files(root: Path, prefix: str) -> dict[str, bytes]:
    return {"/".join(filter(None, [prefix, p.relative_to(root).as_posix()])): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _go_online(monkeypatch, url: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture
def hubsrc(tmp_path, monkeypatch):
    """Local SAEs, a mock hub serving them (running for the test), HF_HOME in tmp_path, the fixture registry."""
    src = tmp_path / "src"
    decs, _ = planted_ladder([32, 64, 128], D_IN, seed=3)
    fs_local = src / "tiny-res-fs-cached"  # the same SAEs as local folders, named as the release names them
    for i, (sae_id, W) in enumerate(zip(FS_IDS, decs, strict=True)):
        save_saelens(tiny_sae(W_dec=W, seed=i), fs_local / sae_id)
    other64 = src / "v1" / FS_IDS[1]  # another 64-wide SAE: the weights of the older revision v1
    save_saelens(tiny_sae(64, D_IN, seed=99), other64)
    scope_local = src / "scope"
    for i, path in enumerate(SCOPE_PATHS):
        save_gemmascope(tiny_sae(SCOPE_PATHS[path], D_IN, seed=10 + i), scope_local / path)

    mock = MockHub()
    main_files = folder_files(fs_local, "")
    extra = src / "hub-only"  # on the hub, never fetched by the tests: a 256-wide SAE and sparsity files
    save_saelens(tiny_sae(256, D_IN, seed=7), extra / "blocks.1.hook_resid_pre_256")
    main_files.update(folder_files(extra, ""))
    main_files.update({f"{sae_id}/sparsity.safetensors": b"not needed" for sae_id in FS_IDS})
    mock.add(FS_REPO, COMMIT_MAIN, main_files, refs=("main",))
    mock.add(FS_REPO, COMMIT_V1, folder_files(other64, FS_IDS[1]), refs=("v1",))
    mock.add(SCOPE_REPO, COMMIT_MAIN, folder_files(scope_local, ""), refs=("main",))
    sparsify_local = src / "sparsify" / "layers.1"  # cfg.json + sae.safetensors: the layout is found by probing
    save_sparsify(tiny_sae(48, D_IN, seed=5, architecture="topk", k=4), sparsify_local)
    mock.add("featgraph-test/tiny-sparsify", COMMIT_MAIN, folder_files(sparsify_local, "layers.1"), refs=("main",))

    registry = tmp_path / "registry.json.gz"
    assert _generator().main([str(FIXTURE_YAML), "--sae-lens-version", "test", "--out", str(registry)]) == 0
    for var in ("HF_HUB_CACHE", "HF_TOKEN", "TRANSFORMERS_OFFLINE", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv(hub.REGISTRY_ENV, str(registry))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with mock as url:
        yield {"tmp": tmp_path, "cache": tmp_path / "hf" / "hub", "fs_local": fs_local, "other64": other64,
               "scope_local": scope_local, "decs": decs, "mock": mock, "url": url, "sparsify_local": sparsify_local}


NEEDED = sorted(  # every file the tests' names need: weights and configs only
    [f"{FS_REPO}@main/{i}/{f}" for i in FS_IDS for f in ("cfg.json", "sae_weights.safetensors")]
    + [f"{FS_REPO}@v1/{FS_IDS[1]}/{f}" for f in ("cfg.json", "sae_weights.safetensors")]
    + [f"{SCOPE_REPO}@main/{p}/params.npz" for p in SCOPE_PATHS]
)


def _fill_cache(hubsrc, monkeypatch) -> None:
    _go_online(monkeypatch, hubsrc["url"])
    hub.resolve("tiny-res-fs-cached")
    hub.resolve(f"hf://{FS_REPO}@v1/{FS_IDS[1]}")
    for path in SCOPE_PATHS:
        hub.resolve(f"tiny-scope-res/{path}")


@pytest.fixture
def hubenv(hubsrc, monkeypatch):
    """hubsrc's cache filled by featgraph through huggingface_hub from the mock hub; then HF_HUB_OFFLINE=1 and
    HF_ENDPOINT at a closed port, so that a request that slipped through would fail rather than reach out."""
    _fill_cache(hubsrc, monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port
    n_requests = len(hubsrc["mock"].log)
    yield hubsrc
    assert len(hubsrc["mock"].log) == n_requests  # offline: not one request reached the hub


def test_online_fetches_only_the_files_needed(hubsrc, monkeypatch):
    _fill_cache(hubsrc, monkeypatch)
    mock = hubsrc["mock"]
    # no sparsity.safetensors, no SAE that was not named; a file whose bytes are already in blobs/ (v1's cfg.json
    # equals main's) is looked up but not downloaded again
    assert mock.fetched(("HEAD", "GET")) == NEEDED
    downloaded = mock.fetched()
    assert set(downloaded) <= set(NEEDED) and f"{FS_REPO}@v1/{FS_IDS[1]}/sae_weights.safetensors" in downloaded
    _fill_cache(hubsrc, monkeypatch)  # a second run finds every file cached and downloads nothing
    assert mock.fetched() == downloaded
    # online failures are one-line errors too
    with pytest.raises(SaeFormatError, match=r"repo featgraph-test/nope not found on the hub"):
        hub.resolve("hf://featgraph-test/nope/x")
    with pytest.raises(SaeFormatError, match=r"has no revision 'v9'"):
        hub.resolve(f"hf://{FS_REPO}@v9/{FS_IDS[0]}")
    with pytest.raises(SaeFormatError, match=r"has no SAE at 'nowhere'"):
        hub.resolve(f"hf://{FS_REPO}/nowhere")
    # an hf:// folder's layout is found by which files exist (Gemma Scope, dictionary_learning, SAELens, sparsify)
    (local,) = hub.resolve("hf://featgraph-test/tiny-sparsify/layers.1")
    np.testing.assert_array_equal(load_decoder(local)[1], load_decoder(hubsrc["sparsify_local"])[1])
    assert hub.display_name(local) == "layers.1"
    code, _, stderr = run_main("families", "tiny-res-fs", "--out", hubsrc["tmp"] / "out_online", "--quiet")
    assert code == 0, stderr  # online, the release's uncached 256-wide SAE is simply downloaded
    assert f"{FS_REPO}@main/blocks.1.hook_resid_pre_256/sae_weights.safetensors" in mock.fetched()


# -- the registry generator and the shipped registry ----------------------------------------------------------
def test_generator_on_small_yaml(tmp_path):
    gen = _generator()
    out_a, out_b = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    assert gen.main([str(FIXTURE_YAML), "--sae-lens-version", "9.9.9", "--source-commit", "abc", "--out",
                     str(out_a)]) == 0
    gen.main([str(FIXTURE_YAML), "--sae-lens-version", "9.9.9", "--source-commit", "abc", "--out", str(out_b)])
    assert out_a.read_bytes() == out_b.read_bytes()  # same yaml, same bytes
    obj = json.loads(gzip.decompress(out_a.read_bytes()))
    assert obj["source"]["sae_lens_version"] == "9.9.9" and obj["source"]["commit"] == "abc"
    assert obj["source"]["sha256"] == hashlib.sha256(FIXTURE_YAML.read_bytes()).hexdigest()
    reg = hub.load_registry(out_a)
    fs = reg.releases["gpt2-small-res-jb-feature-splitting"]
    assert fs.repo == "jbloom/GPT2-Small-Feature-Splitting-Experiment-Layer-8" and fs.format == "saelens"
    assert [(s.site, s.width, s.neuronpedia) for s in fs.saes] == [
        ("blocks.8.hook_resid_pre", 768, "gpt2-small/8-res_fs768-jb"),
        ("blocks.8.hook_resid_pre", 1536, "gpt2-small/8-res_fs1536-jb"),
        ("blocks.8.hook_resid_pre", 98304, "gpt2-small/8-res_fs98304-jb"),
    ]
    scope = reg.releases["tiny-scope-res"]
    assert scope.format == "gemmascope" and scope.sites == ["layer_0", "layer_1"]
    assert [s.width for s in scope.saes] == list(SCOPE_PATHS.values())  # width_1k -> 1024, width_2k -> 2048
    assert reg.releases["tiny-transcoders"].format is None  # a conversion featgraph has no reader for


@pytest.mark.parametrize(("sae_id", "path", "width", "site"), [
    ("layer_12/width_16k/average_l0_82", "layer_12/width_16k/average_l0_82", 16384, "layer_12"),
    ("layer_20/width_1m/average_l0_11", "layer_20/width_1m/average_l0_11", 1048576, "layer_20"),
    ("embedding/width_4k/average_l0_6", "embedding/width_4k/average_l0_6", 4096, "embedding"),
    ("blocks.12.hook_resid_post", "gemma_2b_blocks.12.hook_resid_post_16384", 16384, "blocks.12.hook_resid_post"),
    ("blocks.0.hook_attn_out", "v5_32k_layer_0", 32768, "blocks.0.hook_attn_out"),
    ("blocks.5.hook_resid_post__trainer_0", "gemma-2-2b_topk_width-2pow14_date-1109/resid_post_layer_5/trainer_0",
     16384, "blocks.5.hook_resid_post"),
    ("resid_post_layer_3_trainer_1", "resid_post_layer_3/trainer_1", None, "resid_post_layer_3"),
    ("l0r_800m_slimpajama", "800M-Slimpajama-0-OpenR1-Math-220k/L0R", None, "l0r_800m_slimpajama"),
])
def test_generator_width_and_site_rules(sae_id, path, width, site):
    gen = _generator()
    assert gen.parse_width(sae_id, path) == width
    assert gen.parse_site(sae_id) == site


def test_shipped_registry_lists_the_posts_ladder(monkeypatch):
    monkeypatch.delenv(hub.REGISTRY_ENV, raising=False)
    assert hub.REGISTRY_PATH.stat().st_size < 1_000_000
    reg = hub.load_registry()
    assert reg.source["sae_lens_version"] and reg.source["commit"]
    rel = reg.releases["gpt2-small-res-jb-feature-splitting"]
    widths = [768 * 2**i for i in range(8)]
    assert [s.width for s in rel.saes] == widths
    assert [s.neuronpedia for s in rel.saes] == [f"gpt2-small/8-res_fs{w}-jb" for w in widths]
    assert rel.sites == ["blocks.8.hook_resid_pre"] and rel.format == "saelens"


# -- the cache is huggingface_hub's ---------------------------------------------------------------------------
def test_cache_is_read_by_huggingface_hub(hubenv):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    info = scan_cache_dir(hubenv["cache"])
    assert not info.warnings
    repos = {r.repo_id: r for r in info.repos}
    assert set(repos) == {FS_REPO, SCOPE_REPO}
    assert {r.commit_hash for r in repos[FS_REPO].revisions} == {COMMIT_MAIN, COMMIT_V1}
    assert {ref for r in repos[FS_REPO].revisions for ref in r.refs} == {"main", "v1"}
    weights = f"{FS_IDS[0]}/sae_weights.safetensors"
    got = try_to_load_from_cache(FS_REPO, weights, cache_dir=hubenv["cache"])
    assert Path(got).read_bytes() == (hubenv["fs_local"] / weights).read_bytes()
    got_v1 = try_to_load_from_cache(FS_REPO, f"{FS_IDS[1]}/sae_weights.safetensors", cache_dir=hubenv["cache"],
                                    revision="v1")
    assert Path(got_v1).read_bytes() == (hubenv["other64"] / "sae_weights.safetensors").read_bytes()


# -- families on a release equals families on the same local folders ------------------------------------------
def test_families_release_equals_local_folders(hubenv):
    tmp = hubenv["tmp"]
    out_hub, out_local = tmp / "out_hub", tmp / "out_local"
    before = tree_digest(tmp)
    code, stdout, stderr = run_main("families", "tiny-res-fs-cached", "--out", out_hub, "--quiet")
    assert code == 0, stderr
    after = tree_digest(tmp)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    # only --out (and the tmp folder's own entry list, which now names it) changed: not the cache, not the cwd
    assert changed and all(k.startswith(str(out_hub)) or k == str(tmp) for k in changed), sorted(changed)[:5]
    code, _, stderr = run_main("families", hubenv["fs_local"], "--out", out_local, "--quiet")
    assert code == 0, stderr
    for name in ("features.parquet", "edges.parquet", "families.parquet"):
        a, b = pl.read_parquet(out_hub / name), pl.read_parquet(out_local / name)
        if name == "features.parquet":  # the same table plus each feature's Neuronpedia link
            urls = a["neuronpedia_url"].to_list()
            want = [f"https://www.neuronpedia.org/tiny-model/1-res_fs{w}-test/{f}"
                    for w, f in zip(a["width"].to_list(), a["feature"].to_list(), strict=True)]
            assert urls == want
            a = a.drop("neuronpedia_url")
        assert a.equals(b), name
        assert a.height > 0
    names = pl.read_parquet(out_hub / "features.parquet")["sae"].unique(maintain_order=True).to_list()
    assert names == FS_IDS  # named by SAE id, not by cache folders
    g_hub, g_local = read_graphml(out_hub / "graph.graphml"), read_graphml(out_local / "graph.graphml")
    assert g_hub.nodes[f"{FS_IDS[1]}:5"]["neuronpedia_url"] == "https://www.neuronpedia.org/tiny-model/1-res_fs64-test/5"
    for _, d in g_hub.nodes(data=True):
        d.pop("neuronpedia_url")
    assert dict(g_hub.nodes(data=True)) == dict(g_local.nodes(data=True))
    assert list(g_hub.edges(data=True)) == list(g_local.edges(data=True))
    s_hub = json.loads((out_hub / "summary.json").read_text())
    s_local = json.loads((out_local / "summary.json").read_text())
    assert s_hub["pairs"] == s_local["pairs"] and s_hub["trees"] == s_local["trees"]
    # provenance: each SAE's release, repo, commit and file hashes, in summary.json and config.json
    src = s_hub["saes"][0]["source"]
    assert (src["release"], src["repo"], src["commit"], src["neuronpedia"]) == (
        "tiny-res-fs-cached", FS_REPO, COMMIT_MAIN, "tiny-model/1-res_fs32-test")
    weights = (hubenv["fs_local"] / FS_IDS[0] / "sae_weights.safetensors").read_bytes()
    assert src["files"][f"{FS_IDS[0]}/sae_weights.safetensors"] == hashlib.sha256(weights).hexdigest()
    config = json.loads((out_hub / "config.json").read_text())
    assert [c["sae_id"] for c in config["sources"]] == FS_IDS
    assert "source" not in s_local["saes"][0] and "sources" not in s_local["config"]  # local runs unchanged


def test_release_provenance_and_neuronpedia(hubenv):
    paths = hub.resolve("tiny-res-fs-cached")
    assert [hub.display_name(p) for p in paths] == FS_IDS
    src = hub.source_of(paths[0])
    assert (src.release, src.sae_id, src.repo, src.revision, src.commit) == (
        "tiny-res-fs-cached", FS_IDS[0], FS_REPO, "main", COMMIT_MAIN)
    weights = (hubenv["fs_local"] / FS_IDS[0] / "sae_weights.safetensors").read_bytes()
    assert src.files[f"{FS_IDS[0]}/sae_weights.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert set(src.files) == {f"{FS_IDS[0]}/cfg.json", f"{FS_IDS[0]}/sae_weights.safetensors"}
    assert src.neuronpedia_url(7) == "https://www.neuronpedia.org/tiny-model/1-res_fs32-test/7"
    assert json.loads(json.dumps(src.to_dict()))["commit"] == COMMIT_MAIN
    one = hub.resolve(f"tiny-res-fs-cached/{FS_IDS[2]}")
    np.testing.assert_array_equal(load_decoder(one[0])[1], hubenv["decs"][2])


# -- Gemma Scope through hf:// and as a release ---------------------------------------------------------------
def test_gemmascope_paths_through_hf_uri(hubenv):
    path = "layer_1/width_2k/average_l0_5"
    want = load_decoder(hubenv["scope_local"] / path / "params.npz")[1]
    for spec in (f"hf://{SCOPE_REPO}/{path}", f"hf://{SCOPE_REPO}/{path}/params.npz",
                 f"hf://{SCOPE_REPO}@main/{path}", f"hf://{SCOPE_REPO}@{COMMIT_MAIN}/{path}"):
        (local,) = hub.resolve(spec)
        np.testing.assert_array_equal(load_decoder(local)[1], want)
        assert hub.display_name(local) == "layer_1-width_2k-average_l0_5"
        assert hub.source_of(local).commit == COMMIT_MAIN


def test_release_sites_and_widths(hubenv):
    with pytest.raises(ConfigError, match=r"2 sites \(layer_0, layer_1\); pick one as tiny-scope-res@SITE"):
        hub.resolve("tiny-scope-res")
    with pytest.raises(ConfigError, match=r"2 SAEs of width 1024 at layer_1"):
        hub.resolve("tiny-scope-res@layer_1")
    with pytest.raises(ConfigError, match=r"no site 'layer_7'; its sites: layer_0, layer_1"):
        hub.resolve("tiny-scope-res@layer_7")
    paths = hub.resolve("tiny-scope-res-canonical")  # one site, one SAE per width: a ladder
    assert [load_decoder(p)[1].shape[0] for p in paths] == [1024, 2048]
    assert [hub.display_name(p) for p in paths] == ["layer_1-width_1k-canonical", "layer_1-width_2k-canonical"]
    (one,) = hub.resolve("tiny-scope-res/layer_0/width_1k/average_l0_3")
    assert load_decoder(one)[1].shape == (1024, D_IN)


def test_families_on_gemmascope_release(hubenv):
    out = hubenv["tmp"] / "out_scope"
    code, stdout, stderr = run_main("families", "tiny-scope-res@layer_0", "tiny-scope-res-canonical@layer_1",
                                    "--out", out, "--quiet")
    # two ladders' SAEs of width 1024 at two sites: refused as a ladder (equal widths), in one line
    assert code == 1 and len(stderr.strip().splitlines()) == 1 and "width 1024" in stderr, stderr
    code, stdout, stderr = run_main("families", "tiny-scope-res-canonical", "--out", out, "--quiet")
    assert code == 0, stderr
    sae = pl.read_parquet(out / "features.parquet")["sae"].unique(maintain_order=True).to_list()
    assert sae == ["layer_1-width_1k-canonical", "layer_1-width_2k-canonical"]


# -- revisions, offline misses, local paths -------------------------------------------------------------------
def test_revision_pin_is_honoured(hubenv):
    path = FS_IDS[1]
    want_main = load_decoder(hubenv["fs_local"] / path)[1]
    want_v1 = load_decoder(hubenv["other64"])[1]
    assert not np.array_equal(want_main, want_v1)
    for spec, want, commit in ((f"hf://{FS_REPO}/{path}", want_main, COMMIT_MAIN),
                               (f"hf://{FS_REPO}@v1/{path}", want_v1, COMMIT_V1),
                               (f"hf://{FS_REPO}@{COMMIT_V1}/{path}", want_v1, COMMIT_V1),
                               (f"hf://{FS_REPO}@v1/{path}/sae_weights.safetensors", want_v1, COMMIT_V1)):
        (local,) = hub.resolve(spec)
        np.testing.assert_array_equal(load_decoder(local)[1], want, err_msg=spec)
        src = hub.source_of(local)
        assert src.commit == commit and hub.display_name(local) == path


def test_missing_files_offline_fail_in_one_line(hubenv):
    tmp = hubenv["tmp"]
    out = tmp / "out_missing"
    # the release lists a 256-wide SAE that the cache does not hold
    err = assert_refused(["families", "tiny-res-fs", "--out", out], inputs=[hubenv["cache"]], out=out,
                         needles=("not in the Hugging Face cache", "HF_HUB_OFFLINE", FS_REPO, "revision main",
                                  "blocks.1.hook_resid_pre_256/cfg.json",
                                  "blocks.1.hook_resid_pre_256/sae_weights.safetensors"))
    assert "blocks.1.hook_resid_pre_32/" not in err  # cached files are not asked for
    assert_refused(["families", f"hf://{FS_REPO}@v1/{FS_IDS[0]}", FS_IDS[0], "--out", out],
                   inputs=[hubenv["cache"]], out=out, needles=("not in the Hugging Face cache", "revision v1"))
    assert_refused(["families", f"hf://{SCOPE_REPO}/layer_9/width_1k/x/params.npz", "--out", out],
                   inputs=[hubenv["cache"]], out=out, needles=("files layer_9/width_1k/x/params.npz",
                                                               f"hf download {SCOPE_REPO} --revision main"))
    # a folder: any one layout's files will do, and the command fetches the folder
    assert_refused(["families", f"hf://{SCOPE_REPO}/layer_9/width_1k/x", "--out", out],
                   inputs=[hubenv["cache"]], out=out, needles=("layer_9/width_1k/x/params.npz; ",
                                                               "--include 'layer_9/width_1k/x/*'"))
    assert_refused(["families", "tiny-scope-res", "--out", out], inputs=[hubenv["cache"]], out=out,
                   needles=("tiny-scope-res@SITE", "layer_0, layer_1"))
    assert_refused(["families", "tiny-transcoders", "--out", out], inputs=[hubenv["cache"]], out=out,
                   needles=("mwhanna_transcoder",))
    assert_refused(["families", "tiny-res-fs-cached/blocks.1.hook_resid_pre_31", "--out", out],
                   inputs=[hubenv["cache"]], out=out, needles=("no SAE id 'blocks.1.hook_resid_pre_31'",))
    assert_refused(["families", "hf://datasets/x/y/z", "--out", out], inputs=[hubenv["cache"]], out=out,
                   needles=("model repos only",))
    # not a name at all: the plain local-path error, unchanged
    assert_refused(["families", "no/such/ladder", "--out", out], inputs=[], out=out,
                   needles=("no/such/ladder: no such file or folder",))


def test_out_may_not_lie_in_the_hub_cache_folders_it_reads(hubenv):
    snap = hubenv["cache"] / "models--featgraph-test--tiny-res-fs" / "snapshots" / COMMIT_MAIN
    out = snap / FS_IDS[0] / "out"
    assert_refused(["families", "tiny-res-fs-cached", "--out", out], inputs=[hubenv["cache"]], out=out,
                   needles=(FS_IDS[0],))


def test_local_path_wins_over_a_name(hubenv):
    # a local folder named like a release (relative to the cwd) is used as it is, never looked up on the hub
    from featgraph.ladder import expand_sae_paths

    shutil.copytree(hubenv["fs_local"], Path("tiny-scope-res"))
    paths = expand_sae_paths(["tiny-scope-res"])
    assert [p.name for p in paths] == sorted(FS_IDS) and all(hub.source_of(p) is None for p in paths)
    assert all(p.resolve().is_relative_to(Path.cwd().resolve()) for p in paths)


def test_releases_command_search(hubenv):
    code, stdout, stderr = run_main("releases", "--search", "TINY-SCOPE")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("registry: registry.json.gz from sae-lens test")
    header = lines[1].split()
    assert header[:5] == ["release", "model", "site", "SAEs", "widths"]
    rows = [ln.split() for ln in lines[2:-1]]
    assert rows == [
        ["tiny-scope-res", "tiny-gemma", "layer_0", "1", "1024", "-", "-", "gemmascope"],
        ["tiny-scope-res", "tiny-gemma", "layer_1", "3", "1024x2,2048", "-", "yes", "gemmascope"],
        ["tiny-scope-res-canonical", "tiny-gemma", "layer_1", "2", "1024,2048", "ladder", "yes", "gemmascope"],
    ]
    assert lines[-1] == "2 releases, 3 sites, 6 SAEs"
    code, stdout, _ = run_main("releases", "--search", "zzz-nothing")
    assert code == 0 and "no release matches 'zzz-nothing'" in stdout


def test_mixed_ladder_links_only_saes_with_a_neuronpedia_id(hubenv):
    # layer_0's SAE has no Neuronpedia id in the registry, layer_1's 2k one has (found by its hub path)
    out = hubenv["tmp"] / "out_mixed"
    code, _, stderr = run_main("families", f"hf://{SCOPE_REPO}/layer_0/width_1k/average_l0_3",
                               f"hf://{SCOPE_REPO}/layer_1/width_2k/average_l0_5", "--out", out, "--quiet")
    assert code == 0, stderr
    f = pl.read_parquet(out / "features.parquet")
    small, large = f.filter(pl.col("width") == 1024), f.filter(pl.col("width") == 2048)
    assert small["neuronpedia_url"].null_count() == 1024
    assert large["neuronpedia_url"][3] == "https://www.neuronpedia.org/tiny-gemma/1-scope-res-2k/3"
    g = read_graphml(out / "graph.graphml")
    assert g.nodes["layer_0-width_1k-average_l0_3:0"]["neuronpedia_url"] == ""
    assert g.nodes["layer_1-width_2k-average_l0_5:3"]["neuronpedia_url"].endswith("/1-scope-res-2k/3")
    sources = json.loads((out / "config.json").read_text())["sources"]
    assert [s["spec"] for s in sources] == [f"hf://{SCOPE_REPO}/layer_0/width_1k/average_l0_3",
                                            f"hf://{SCOPE_REPO}/layer_1/width_2k/average_l0_5"]


def test_eval_and_index_out_may_not_lie_in_the_hub_cache_folders_they_read(hubenv):
    # eval checks --out against the resolved cache folders before it loads any model; index through its ladder
    snap = hubenv["cache"] / "models--featgraph-test--tiny-res-fs" / "snapshots" / COMMIT_MAIN
    out = snap / FS_IDS[0] / "out"
    for command in ("eval", "index"):
        assert_refused([command, "tiny-res-fs-cached", "--out", out], inputs=[hubenv["cache"]], out=out,
                       needles=(FS_IDS[0],))


def test_quiet_hides_download_bars_in_every_command_that_takes_saes(hubenv, monkeypatch):
    # the hub's progress switch as each fetch saw it: off under --quiet, on without it
    from featgraph.hub import fetch

    seen: list[bool] = []
    inner = fetch._fetch_files_inner

    def spy(*args, **kwargs):
        seen.append(fetch._progress)
        return inner(*args, **kwargs)

    monkeypatch.setattr(fetch, "_fetch_files_inner", spy)
    tmp = hubenv["tmp"]
    acts = tmp / "no-acts"
    acts.mkdir()
    commands = {  # each resolves its names before it fails on (or uses) the rest of its inputs
        "index": ["index", "tiny-res-fs-cached"],
        "eval": ["eval", "tiny-res-fs-cached", "--model", str(tmp / "no-model")],
        "stitch": ["stitch", f"tiny-res-fs-cached/{FS_IDS[0]}", f"tiny-res-fs-cached/{FS_IDS[1]}", "--acts", acts],
        "frankenstein": ["frankenstein", "tiny-res-fs-cached", "--acts", acts],
        "report": ["report", "tiny-res-fs-cached", "--acts", acts],
    }
    for command, args in commands.items():
        for quiet in (True, False):
            seen.clear()
            run_main(*args, "--out", tmp / f"out-{command}-{quiet}", *(["--quiet"] if quiet else []))
            assert seen and set(seen) == {not quiet}, (command, quiet, seen)
    assert fetch._progress  # restored after each command


def test_stitch_on_names_records_provenance_and_equals_local_folders(hubenv):
    import torch

    from tests.builders import store_of

    tmp = hubenv["tmp"]
    store_of(torch.randn(2000, D_IN, generator=torch.Generator().manual_seed(0)), tmp / "acts")
    small, large = (f"tiny-res-fs-cached/{i}" for i in FS_IDS[:2])
    out_hub, out_local = tmp / "stitch_hub", tmp / "stitch_local"
    code, _, stderr = run_main("stitch", small, large, "--acts", tmp / "acts", "--out", out_hub, "--quiet")
    assert code == 0, stderr
    code, _, stderr = run_main("stitch", hubenv["fs_local"] / FS_IDS[0], hubenv["fs_local"] / FS_IDS[1],
                               "--acts", tmp / "acts", "--out", out_local, "--quiet")
    assert code == 0, stderr
    s_hub = json.loads((out_hub / "summary.json").read_text())
    s_local = json.loads((out_local / "summary.json").read_text())
    weights = (hubenv["fs_local"] / FS_IDS[1] / "sae_weights.safetensors").read_bytes()
    got = s_hub.pop("sources")
    assert [got[k]["sae_id"] for k in ("small", "large")] == FS_IDS[:2]
    assert (got["large"]["release"], got["large"]["repo"], got["large"]["revision"], got["large"]["commit"]) == (
        "tiny-res-fs-cached", FS_REPO, "main", COMMIT_MAIN)
    assert got["large"]["files"][f"{FS_IDS[1]}/sae_weights.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert (s_hub["small"], s_hub["large"]) == tuple(FS_IDS[:2])  # named by SAE id, not by cache folders
    assert {k: v for k, v in s_hub.items() if k not in ("small", "large")} == {
        k: v for k, v in s_local.items() if k not in ("small", "large")}  # same numbers as the local folders
    config = json.loads((out_hub / "config.json").read_text())
    assert [c["spec"] for c in config["sources"]] == [small, large]
    assert "sources" not in s_local and "sources" not in json.loads((out_local / "config.json").read_text())


def test_report_on_a_release_links_features_to_neuronpedia_and_records_provenance(hubenv):
    import re

    import torch

    from tests.builders import store_of

    tmp = hubenv["tmp"]
    store_of(torch.randn(2000, D_IN, generator=torch.Generator().manual_seed(1)), tmp / "acts")
    out, out_local = tmp / "report_hub", tmp / "report_local"
    common = ("--acts", tmp / "acts", "--retrain-tokens", "500", "--quiet")
    code, _, stderr = run_main("report", "tiny-res-fs-cached", "--out", out, *common)
    assert code == 0, stderr
    code, _, stderr = run_main("report", hubenv["fs_local"], "--out", out_local, *common)
    assert code == 0, stderr
    page = (out / "report.html").read_text()
    # each pair's "most helpful features" table links the LARGE SAE's feature ids, and only to Neuronpedia
    for w in (64, 128):
        prefix = f"https://www.neuronpedia.org/tiny-model/1-res_fs{w}-test/"
        ids = re.findall(rf'<a href="{re.escape(prefix)}(\d+)">(\d+)</a>', page)
        assert ids and all(a == b and int(a) < w for a, b in ids), (w, ids[:3])
    assert set(re.findall(r'href="([^"/]+//[^/"]+)', page)) == {"https://www.neuronpedia.org"}
    assert 'src="http' not in page  # still self-contained: links only, nothing loaded from outside
    local_page = (out_local / "report.html").read_text()
    assert "neuronpedia" not in local_page and "<a href" not in local_page
    for config in (out / "config.json", out / "frankenstein" / "config.json",
                   out / "pairs" / f"{FS_IDS[0]}__{FS_IDS[1]}" / "config.json"):
        sources = json.loads(config.read_text())["sources"]
        assert [s["sae_id"] for s in sources] == FS_IDS and {s["commit"] for s in sources} == {COMMIT_MAIN}
    assert "sources" not in json.loads((out_local / "config.json").read_text())


def test_index_on_names_records_provenance(hubenv):
    """`featgraph index RELEASE` names the exact weights it indexed: each SAE's hub provenance in config.json."""
    tmp = hubenv["tmp"]
    code, _, stderr = run_main("index", "tiny-res-fs-cached", "--out", tmp / "idx", "--device", "cpu", "--quiet")
    assert code == 0, stderr
    config = json.loads((tmp / "idx" / "config.json").read_text())
    assert len(config["sources"]) == len(config["saes"]) == len(FS_IDS)
    for src in config["sources"]:
        assert src["release"] == "tiny-res-fs-cached" and src["sae_id"] in FS_IDS
        assert len(src["commit"]) == 40 and src["files"]
