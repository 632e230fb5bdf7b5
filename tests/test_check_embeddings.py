"""check-embeddings on vectors a broken stack would produce, each bug made here by the test.

The checkpoint is random (hidden size 64, so MRL dims exist) with the real Qwen3 tokenizer. The
buggy vectors are built from q3ref's traced hidden states or from re-tokenized ids, the way the
broken stack would compute them; check-embeddings must name the bug and only that bug."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import q3ref
from q3ref.check_embeddings import candidates, judge, load_texts, load_vectors
from q3ref.checkpoint import make_checkpoint, preset_config
from q3ref.tokenizer import EOS_ID, IM_END_ID
from conftest import TINY

TEXTS = ["What is the capital of China?", "Explain gravity", "The capital of China is Beijing.",
         "Gravity is a force that attracts two bodies towards each other."]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck64")
    make_checkpoint(out, preset_config("tiny", hidden_size=64, intermediate_size=128), 3, TINY / "tokenizer.json.gz")
    return q3ref.Model(out)


@pytest.fixture(scope="module")
def traces(model):
    return [model.trace(t, "query") for t in TEXTS]


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def findings(model, vectors, prompt="query"):
    r = judge(np.asarray(vectors, np.float64), candidates(model, TEXTS, prompt))
    return r, [what for what, _ in r["findings"]]


def test_clean_vectors_pass(model):
    good = model.encode(TEXTS, "query")
    r, found = findings(model, good)
    assert found == [] and r["fit"] == "last token" and min(r["cosine_expected"]) > 0.99999
    # a quantized export's noise (cosine ~0.999) is not a bridge bug
    noisy = unit(good + np.random.default_rng(0).normal(0, 0.03 / 8, good.shape))
    r, found = findings(model, noisy)
    assert found == [] and 0.99 < min(r["cosine_expected"]) < 0.9999
    # documents embedded as documents
    assert findings(model, model.encode(TEXTS), prompt=None)[1] == []


def with_ids(model, edit):
    return model.encode_ids([edit(ids) for ids in model.tokenize(TEXTS, "query")])


@pytest.mark.parametrize("bug, make, words", [
    ("mean pooling", lambda m, tr: unit(np.stack([t["norm"].mean(axis=0) for t in tr])), "mean-pooled"),
    ("first token", lambda m, tr: unit(np.stack([t["norm"][0] for t in tr])), "pooled at the first token"),
    ("no EOS", lambda m, tr: with_ids(m, lambda s: s[:-1]), "without the trailing <|endoftext|>"),
    ("double EOS", lambda m, tr: with_ids(m, lambda s: s + [EOS_ID]), "<|endoftext|> appended twice"),
    ("im_end", lambda m, tr: with_ids(m, lambda s: s[:-1] + [IM_END_ID]), "<|im_end|> (151645)"),
    ("no instruction", lambda m, tr: m.encode(TEXTS), "without the query instruction"),
])
def test_each_direction_bug_is_named(model, traces, bug, make, words):
    r, found = findings(model, make(model, traces))
    assert len(found) == 1 and words in found[0], (bug, found, r["scores"])
    assert all(fix.endswith(".") for _, fix in r["findings"])


def test_instruction_added_to_documents(model):
    r, found = findings(model, model.encode(TEXTS, "query"), prompt=None)
    assert len(found) == 1 and "with the query instruction prepended" in found[0], found


def test_un_normalized(model, traces):
    raw = np.stack([t["pooled"] for t in traces])
    r, found = findings(model, raw)
    assert len(found) == 1 and found[0].startswith("not normalized"), found
    # two bugs at once: mean-pooled and never normalized
    r, found = findings(model, np.stack([t["norm"].mean(axis=0) for t in traces]))
    assert len(found) == 2 and "mean-pooled" in found[0] and found[1].startswith("not normalized"), found


def test_mrl_without_renormalizing(model):
    full = model.encode(TEXTS, "query")
    r, found = findings(model, full[:, :32])
    assert len(found) == 1 and found[0].startswith("MRL truncated without renormalizing"), found
    assert findings(model, unit(full[:, :32]))[1] == []  # truncated and renormalized: correct


def test_only_some_texts_differ(model):
    good = model.encode(TEXTS, "query")
    mixed = good.copy()
    mixed[1] = model.encode(TEXTS[1])  # one query sent without its instruction
    r, found = findings(model, mixed)
    assert len(found) == 1 and found[0].startswith("texts [1] differ"), found
    assert "1: no instruction" in found[0]


def test_nan_rows(model):
    v = model.encode(TEXTS, "query")
    v[2, 5] = np.nan
    assert findings(model, v)[1][0].startswith("the vectors hold NaN")


def test_cli(model, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    good, mean = tmp_path / "good.npy", tmp_path / "mean.json"
    np.save(good, model.encode(TEXTS, "query"))
    traces = [model.trace(t, "query") for t in TEXTS]
    mean.write_text(json.dumps({"data": [{"embedding": unit(t["norm"].mean(axis=0)).tolist()} for t in traces]}))
    run = lambda *a: subprocess.run([sys.executable, "-m", "q3ref", "check-embeddings", *map(str, a),  # noqa: E731
                                     "--weights", str(model.path)], capture_output=True, text=True)
    ok = run(good, "--texts", texts, "--query")
    assert ok.returncode == 0 and "ok:" in ok.stdout, ok.stdout + ok.stderr
    bad = run(mean, "--texts", texts, "--query", "--json")
    assert bad.returncode == 1, bad.stderr
    report = json.loads(bad.stdout)
    assert report["fit"] == "mean pooling" and "mean-pooled" in report["findings"][0][0]
    wrong_count = tmp_path / "two.txt"
    wrong_count.write_text("a\nb\n")
    err = run(good, "--texts", wrong_count)
    assert err.returncode == 2 and err.stderr.count("\n") == 1 and "4 vectors but 2 texts" in err.stderr


@pytest.mark.parametrize("body, msg", [("[[1, 2], [3]]", "cannot read vectors"), ('{"vectors": []}', "needs an \"embeddings\" or a \"data\" key, found ['vectors']"),
                                       ("not json", "cannot read vectors"),
                                       (np.array(["a", "b"]), "got shape [2], dtype <U1")])
def test_bad_vector_files(tmp_path, body, msg):
    if isinstance(body, str):
        f = tmp_path / "v.json"
        f.write_text(body)
    else:
        f = tmp_path / "v.npy"
        np.save(f, body)
    with pytest.raises(q3ref.Q3RefError, match=re.escape(msg)):
        load_vectors(f)


def test_texts_file(tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps(["a\nb", "c"]))
    assert load_texts(f) == ["a\nb", "c"]
    f = tmp_path / "t.txt"
    f.write_text("a\n\nb\n")
    with pytest.raises(q3ref.Q3RefError, match="text 2 is empty"):
        load_texts(f)


def test_whitespace_convention_is_named_either_way(model):
    """Texts with outer whitespace: vectors a sentence-transformers 5 stack made (stripped) against
    q3ref's default (kept, sentence-transformers 6), and the reverse with --strip."""
    texts = ["  What is the capital of China?  ", "Explain gravity", " The capital of China is Beijing.\n"]
    old = model.encode(texts, strip=True)
    r = judge(np.asarray(old, np.float64), candidates(model, texts))
    assert len(r["findings"]) == 1 and "stripped of outer whitespace" in r["findings"][0][0], r["findings"]
    new = model.encode(texts)
    r = judge(np.asarray(new, np.float64), candidates(model, texts, strip=True))
    assert len(r["findings"]) == 1 and "outer whitespace kept" in r["findings"][0][0], r["findings"]
    assert judge(np.asarray(new, np.float64), candidates(model, texts))["findings"] == []
