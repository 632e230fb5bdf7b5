"""check-ids on the bridge bugs people ship, each made here with the real Qwen3 tokenizer."""

import subprocess
import sys

import pytest
from q3ref.check import check_ids
from q3ref.tokenizer import Tokenizer
from conftest import TINY

TEXT = "Explain gravity"
PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(TINY / "tokenizer.json.gz")


def raw(tok, s):  # the plain tokenizer, as a bridge would call it, no EOS
    return tok.hf.encode(s, add_special_tokens=False).ids


def test_clean_ids_pass(tok):
    assert check_ids(tok, TEXT, raw(tok, PROMPT + TEXT) + [151643], "query") == []
    # the published template tokenizer's own output is what the model expects
    assert check_ids(tok, TEXT, tok.hf.encode(PROMPT + TEXT).ids, "query") == []


@pytest.mark.parametrize("bug, make, words", [
    ("missing EOS", lambda t: raw(t, PROMPT + TEXT), "missing EOS"),
    ("double EOS", lambda t: t.hf.encode(PROMPT + TEXT).ids + [151643], "double EOS"),
    ("im_end", lambda t: raw(t, PROMPT + TEXT) + [151645], "<|im_end|> (151645) used as EOS"),
    ("space after Query:", lambda t: raw(t, PROMPT + " " + TEXT) + [151643], "space after 'Query:'"),
    ("no instruction", lambda t: raw(t, TEXT) + [151643], "instruction is missing"),
    ("other instruction", lambda t: raw(t, "Instruct: Find documents\nQuery:" + TEXT) + [151643], "instruction text differs"),
    ("truncated without EOS", lambda t: raw(t, PROMPT + TEXT)[:10], "truncation dropped the EOS"),
    ("padding inside", lambda t: raw(t, PROMPT)[:5] + [151643] + raw(t, PROMPT + TEXT)[5:] + [151643], "inside the sequence"),
])
def test_each_bug_is_named(tok, bug, make, words):
    findings = check_ids(tok, TEXT, make(tok), "query")
    assert findings, bug
    assert any(words in what for what, _ in findings), (bug, findings)
    assert all(fix.endswith(".") and len(fix) < 200 for _, fix in findings)


def test_cli_exit_status():
    # "hello" is 14990 in the real Qwen3 tokenizer (test_clean_ids_pass covers the rest)
    ok = subprocess.run([sys.executable, "-m", "q3ref", "check-ids", "--text", "hello", "--ids", "14990,151643",
                         "--weights", str(TINY)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("ok"), ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "q3ref", "check-ids", "--text", "hello", "--ids", "14990,151645",
                          "--weights", str(TINY)], capture_output=True, text=True)
    assert bad.returncode == 1 and "151645" in bad.stdout and "fix:" in bad.stdout


def test_whitespace_convention_is_named(tok):
    text = "  How tall is it?  "
    stripped = tok.encode(text, "query", strip=True)
    found = check_ids(tok, text, stripped, "query")
    assert len(found) == 1 and found[0][0].startswith("whitespace stripped"), found
    found = check_ids(tok, text, tok.encode(text, "query"), "query", strip=True)
    assert len(found) == 1 and found[0][0].startswith("whitespace kept"), found
    assert check_ids(tok, text, tok.encode(text, "query"), "query") == []


# ------------------------------------------------------------------ a reranker pair's ids
QUERY, DOC = "What is the capital of China?", "The capital of China is Beijing."
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def card(tok, query=QUERY, doc=DOC, task="Given a web search query, retrieve relevant passages that answer the query"):
    from q3ref.rerank import PREFIX

    return raw(tok, PREFIX) + raw(tok, f"<Instruct>: {task}\n<Query>: {query}\n<Document>: {doc}") + raw(tok, SUFFIX)


def test_reranker_pair_ids_of_the_card_pass_and_match_transformers(tok):
    """The card's ids, built here from its strings, pass; so do the ids transformers made for the
    committed reranker fixture's pairs (tests/fixtures/transformers/reranker.npz)."""
    import json

    import numpy as np

    from conftest import FIXTURES
    from q3ref.check import check_rerank_ids

    assert check_rerank_ids(tok, QUERY, DOC, card(tok)) == []
    meta = json.loads((FIXTURES / "transformers/reranker.json").read_text())["checkpoints"]["tied"]
    z = np.load(FIXTURES / "transformers/reranker.npz")
    ids = [k for k in z.files if k.startswith("tied/") and k.endswith("/input_ids")]
    assert ids
    for k in ids:
        pair = meta["pairs"][int(k.split("/")[1])]
        assert check_rerank_ids(tok, pair["query"], pair["document"], z[k], pair["instruction"]) == [], pair


@pytest.mark.parametrize("bug, make, words", [
    ("EOS appended", lambda t: card(t) + [151643], "EOS (151643) appended"),
    ("no think block", lambda t: card(t)[:-4], "thinking block"),
    ("no template", lambda t: raw(t, f"<Instruct>: Given a web search query, retrieve relevant passages that answer "
                                     f"the query\n<Query>: {QUERY}\n<Document>: {DOC}"), "chat template is missing"),
    ("swapped", lambda t: card(t, DOC, QUERY), "swapped"),
    ("cut from the right", lambda t: card(t)[:40], "truncated from the right"),
    ("left pads", lambda t: [151643] * 3 + card(t), "left padding"),
    ("double newline", lambda t: card(t, task="Given a web search query, retrieve relevant passages that answer the "
                                              "query\n"), "differ from the card's at character"),
])
def test_each_reranker_bug_is_named(tok, bug, make, words):
    from q3ref.check import check_rerank_ids

    findings = check_rerank_ids(tok, QUERY, DOC, make(tok))
    assert len(findings) == 1 and words in findings[0][0], (bug, findings)
    assert findings[0][1].endswith(".") and "\n" not in "".join(findings[0])


def test_reranker_instruction_and_cli(tok):
    from q3ref.check import check_rerank_ids

    task = "Find the passage that answers the question"
    assert check_rerank_ids(tok, QUERY, DOC, card(tok, task=task), task) == []
    found = check_rerank_ids(tok, QUERY, DOC, card(tok), task)
    assert "default instruction" in found[0][0]
    ids = ",".join(map(str, card(tok)[:-4]))
    r = subprocess.run([sys.executable, "-m", "q3ref", "check-ids", "--text", QUERY, "--document", DOC, "--ids", ids,
                        "--weights", str(TINY)], capture_output=True, text=True)
    assert r.returncode == 1 and "thinking block" in r.stdout and "fix:" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "q3ref", "check-ids", "--text", QUERY, "--document", DOC, "--query",
                        "--ids", ids, "--weights", str(TINY)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
