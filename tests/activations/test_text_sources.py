"""text_sources: the default corpus is pinned (same token hash on every collection) and provenance fails loudly."""

from __future__ import annotations

import shutil

import pytest

from featgraph.activations import text as ts
from featgraph.errors import ConfigError


class ByteTokenizer:
    """A stand-in tokenizer (UTF-8 bytes + 3): the corpus and its packing are under test, not the BPE."""

    bos_token_id, eos_token_id, name_or_path = 1, 2, "/somewhere/byte-tokenizer"

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[b + 3 for b in t.encode("utf-8")] for t in texts]}


def test_two_collections_of_the_default_corpus_give_the_same_token_hash():
    a, pa = ts.corpus_contexts_with_provenance(ByteTokenizer(), split="heldout", context_size=64, n_contexts=300)
    b, pb = ts.corpus_contexts_with_provenance(ByteTokenizer(), split="heldout", context_size=64, n_contexts=300)
    assert pa["token_ids_sha256"] == pb["token_ids_sha256"] == ts.token_ids_sha256(b)
    assert pa == pb and a.shape == (300, 64)
    assert pa["corpus"] == "default" and pa["n_documents"] == len(pa["documents"]) > 0
    assert all(n.startswith(("pydoc:", "stdlib:")) for n in pa["documents"])  # nothing machine-specific
    assert pa["tokenizer"] == "byte-tokenizer"  # the folder name, not a machine's path
    ts.check_provenance(pa, pb)  # same ids: no error
    stdlib = [n for n in pa["documents"] if n.startswith("stdlib:")]
    assert stdlib == sorted(stdlib) and not any("site-packages" in n or "/test/" in n for n in stdlib)


def test_provenance_mismatch_fails_naming_what_differs():
    docs = ts.pydoc_topics()[:40]
    prov = ts.corpus_provenance(docs, ts.tokenize_contexts(ByteTokenizer(), docs, 64), corpus="default",
                                split="train", seed=0, eval_fraction=0.05, tokenizer=ByteTokenizer())
    other = dict(prov, token_ids_sha256="0" * 64, documents=prov["documents"][1:], python="3.0.1")
    with pytest.raises(ConfigError) as e:
        ts.check_provenance(other, prov, where="train store")
    msg = str(e.value)
    assert msg.startswith("train store:") and "\n" not in msg
    assert prov["python"] in msg and "3.0.1" in msg and prov["documents"][0] in msg
    with pytest.raises(ConfigError, match="context_size 64 here, 128 recorded"):
        ts.check_provenance(dict(prov, token_ids_sha256="1" * 64, context_size=128), prov)


def test_debian_sources_are_opt_in_and_missing_ones_are_an_error(monkeypatch):
    monkeypatch.setattr(ts, "stdlib_docstrings", lambda: [])
    assert not any(d.name.startswith(("fortunes:", "kjv:")) for d in ts.default_corpus())
    monkeypatch.setattr(ts, "FORTUNES_DIR", ts.Path("/nonexistent/fortunes"))
    if shutil.which("bible"):
        monkeypatch.setattr(ts, "bible_kjv", lambda: [])
    with pytest.raises(ConfigError, match="fortunes, bible-kjv not installed"):
        ts.default_corpus(include_debian=True)

