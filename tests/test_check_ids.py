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
