"""The opt-in ``stdlib`` corpus: a deterministic document list, a pinned token hash, loud provenance failures."""

from __future__ import annotations

import pytest

from featgraph.activations import text as ts
from featgraph.errors import ConfigError


class ByteTokenizer:
    """A stand-in tokenizer (UTF-8 bytes + 3): the corpus and its packing are under test, not the BPE."""

    bos_token_id, eos_token_id, name_or_path = 1, 2, "/somewhere/byte-tokenizer"

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[b + 3 for b in t.encode("utf-8")] for t in texts]}


def _heldout(n_contexts: int = 200):
    # the held-out side (33 of 614 documents on 3.11) keeps the byte tokenisation to a small slice
    return ts.corpus_contexts_with_provenance(ByteTokenizer(), split="heldout", context_size=64,
                                              n_contexts=n_contexts, corpus="stdlib")


def test_document_list_is_sorted_deterministic_full_text_and_skips_test_suites():
    a, b = ts.stdlib_sources(), ts.stdlib_sources()
    names = [d.name for d in a]
    assert names == [d.name for d in b] and names == sorted(names) and len(set(names)) == len(names)
    assert all(n.startswith("stdlib-src:") for n in names)
    parts = [set(n.removeprefix("stdlib-src:").split("/")) for n in names]
    assert not any(p & ts.STDLIB_SOURCE_SKIP for p in parts)  # no test suites, site-packages, codec tables
    by_name = {d.name: d.text for d in a}
    # full sources, not docstrings only: code and comments are there
    assert "def JSONArray(" in by_name["stdlib-src:json/decoder.py"]
    assert "# " in by_name["stdlib-src:json/decoder.py"]
    corpus = ts.named_corpus("stdlib")
    assert [d.name for d in corpus] == [d.name for d in ts.pydoc_topics()] + names
    # far larger than the default corpus (570k tokens; parsing it here would cost 10 s): 10.1 M chars on 3.11.7
    assert sum(len(d.text) for d in corpus) > 5_000_000


def test_two_collections_give_the_same_token_hash_and_record_the_corpus():
    a, pa = _heldout()
    b, pb = _heldout()
    assert pa == pb and a.shape == (200, 64) and pa["token_ids_sha256"] == ts.token_ids_sha256(b)
    assert pa["corpus"] == "stdlib" and pa["n_documents"] == len(pa["documents"]) > 0
    assert all(n.startswith(("pydoc:", "stdlib-src:")) for n in pa["documents"])
    ts.check_provenance(pa, pb)  # same ids: no error
    # a smaller collection is a prefix of a larger one (same seeded order)
    small, _ = _heldout(50)
    assert (small == a[:50]).all()


def test_tampered_document_list_or_other_corpus_fails_loudly(monkeypatch):
    _, prov = _heldout()
    dropped = prov["documents"][0]
    tampered = dict(prov, token_ids_sha256="0" * 64, documents=[*prov["documents"][1:], "stdlib-src:evil.py"])
    with pytest.raises(ConfigError) as e:
        ts.check_provenance(tampered, prov, where="stdlib store")
    msg = str(e.value)
    assert msg.startswith("stdlib store:") and "\n" not in msg
    assert dropped in msg and "stdlib-src:evil.py" in msg
    # a store of the default corpus can never pass for the stdlib one (its docstrings left out: speed only)
    monkeypatch.setattr(ts, "stdlib_docstrings", lambda: [])
    _, default = ts.corpus_contexts_with_provenance(ByteTokenizer(), split="heldout", context_size=64,
                                                    n_contexts=200)
    with pytest.raises(ConfigError, match="document"):
        ts.check_provenance(prov, default)


def test_unknown_corpus_and_files_with_a_corpus_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="corpus must be one of default, stdlib, got 'wiki'"):
        ts.named_corpus("wiki")
    (tmp_path / "a.txt").write_text("hello " * 200)
    with pytest.raises(ConfigError, match="both given"):
        ts.corpus_contexts_with_provenance(ByteTokenizer(), [tmp_path / "a.txt"], corpus="stdlib")


def test_cli_refuses_text_with_a_corpus_and_an_unknown_corpus(tmp_path):
    from featgraph.config import CollectConfig
    from tests.hostile import assert_refused

    text = tmp_path / "a.txt"
    text.write_text("hello " * 200)
    out = tmp_path / "store"
    # refused before the model loads, in one line, the input untouched and nothing written
    assert_refused(["collect", "--out", str(out), "--text", str(text), "--corpus", "stdlib"], inputs=[text], out=out,
                   needles=("--text and --corpus stdlib",))
    assert_refused(["collect", "--out", str(out), "--corpus", "wiki"], inputs=[text], out=out, code=2,
                   needles=("wiki",))
    assert CollectConfig(out=str(out)).to_json()["corpus"] == "default"
    with pytest.raises(ConfigError, match="corpus"):
        CollectConfig(out=str(out), corpus="wiki")


def test_train_cli_refuses_text_with_a_corpus_before_collecting(tmp_path):
    from tests.hostile import assert_refused

    text = tmp_path / "a.txt"
    text.write_text("hello " * 200)
    out, acts = tmp_path / "saes", tmp_path / "acts"
    assert_refused(["train", "--widths", "8", "--acts", str(acts), "--out", str(out), "--text", str(text),
                    "--corpus", "stdlib"], inputs=[text], out=out, needles=("--text and --corpus stdlib",))
    assert not acts.exists()  # no store was started
