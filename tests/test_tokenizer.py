"""Tokenization against the real Qwen3 tokenizer, in both published variants.

Expected ids come from the real tokenizer: the fixture ids were made by `tokenizers` running the
embedding variant's own TemplateProcessing (scripts/make_fixtures.py); the base file is the
verbatim Qwen3 tokenizer (tests/fixtures/qwen3-tokenizer/SOURCE.md).
"""

import gzip
import shutil

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer

from q3ref.errors import Q3RefError
from q3ref.tokenizer import EOS_ID, IM_END_ID, Tokenizer
from conftest import FIXTURES, TINY
from scripts_texts import CARD_DOCS, CARD_QUERIES

BASE = FIXTURES / "qwen3-tokenizer/tokenizer.json.gz"
EMBEDDING = TINY / "tokenizer.json.gz"


@pytest.fixture(scope="module", params=["embedding-template", "base-no-template"])
def tok(request):
    return Tokenizer(EMBEDDING if request.param == "embedding-template" else BASE)


@pytest.fixture(scope="module")
def card_ids():
    z = np.load(FIXTURES / "transformers/tiny.npz")
    return {c: z[f"{c}/input_ids"].tolist() for c in ("query0", "query1", "doc0", "doc1")}


def test_variants_differ_as_published():
    assert Tokenizer(EMBEDDING).template_appends_eos
    assert not Tokenizer(BASE).template_appends_eos
    raw = HFTokenizer.from_str(gzip.decompress(BASE.read_bytes()).decode())
    assert raw.encode("hello").ids[-1] != EOS_ID  # base file: the caller must append the EOS


def test_card_strings_exact_ids(tok, card_ids):
    assert tok.encode(CARD_QUERIES[0], "query") == card_ids["query0"]
    assert tok.encode(CARD_QUERIES[1], "query") == card_ids["query1"]
    assert tok.encode(CARD_DOCS[0]) == card_ids["doc0"]
    assert tok.encode(CARD_DOCS[1], "document") == card_ids["doc1"]


def test_exactly_one_trailing_endoftext(tok, card_ids):
    for ids in (tok.encode("hello world"), tok.encode("x", "query")):
        assert ids[-1] == EOS_ID and ids.count(EOS_ID) == 1 and IM_END_ID not in ids


def test_query_prompt_has_no_space_after_query_colon(tok):
    ids = tok.encode("Explain gravity", "query")
    text = tok.decode(ids)
    assert text == ("Instruct: Given a web search query, retrieve relevant passages that answer "
                    "the query\nQuery:Explain gravity<|endoftext|>")


def test_custom_instruction(tok):
    ids = tok.encode("how tall is it?", instruction="Find the height of a building")
    assert tok.decode(ids) == "Instruct: Find the height of a building\nQuery:how tall is it?<|endoftext|>"


def test_whitespace_is_kept_like_sentence_transformers_6(tok):
    ids = tok.encode("  how tall?  ", instruction="T")
    assert tok.decode(ids) == "Instruct: T\nQuery:  how tall?  <|endoftext|>"
    assert tok.encode(" The capital of China is Beijing. \n") != tok.encode("The capital of China is Beijing.")


def test_strip_is_of_prompt_plus_text_like_sentence_transformers_5(tok):
    # sentence-transformers <= 5.x prepended the prompt, then stripped the whole string: spaces the
    # user typed after the prompt stay (a bridge that strips the text alone gives other ids).
    ids = tok.encode("  how tall?  ", instruction="T", strip=True)
    assert tok.decode(ids) == "Instruct: T\nQuery:  how tall?<|endoftext|>"
    assert (tok.encode("  The capital of China is Beijing. \n", strip=True)
            == tok.encode("The capital of China is Beijing."))


def test_truncation_keeps_eos_last(tok, card_ids):
    full = card_ids["doc1"]
    for n in (2, 5, len(full) - 1, len(full), len(full) + 10):
        ids = tok.encode(CARD_DOCS[1], max_length=n)
        assert ids == full[: min(n, len(full)) - 1] + [EOS_ID]


def test_truncation_matches_template_tokenizer():
    """The real template tokenizer's own truncation keeps its EOS too; q3ref agrees."""
    hf = HFTokenizer.from_str(gzip.decompress(EMBEDDING.read_bytes()).decode())
    hf.enable_truncation(7)
    assert Tokenizer(BASE).encode(CARD_DOCS[1], max_length=7) == hf.encode(CARD_DOCS[1]).ids


@pytest.mark.parametrize("bad, strip", [("", False), ("", True), ("   ", True), ("\n", True)])
def test_empty_text_is_an_error(tok, bad, strip):
    with pytest.raises(Q3RefError, match="empty text"):
        tok.encode(bad, strip=strip)


def test_encode_equals_sentence_transformers_6_and_strip_equals_5():
    """tests/fixtures/transformers/st6.npz: sentence-transformers 6.2's own encode (modules.json,
    last-token Pooling, Normalize) on texts with outer whitespace, CJK, emoji and prompts; and
    the same encode on the stripped prompt + text, what sentence-transformers <= 5.x computed."""
    import json

    import numpy as np

    import q3ref
    from conftest import FIXTURES, TINY

    z = np.load(FIXTURES / "transformers/st6.npz")
    meta = json.loads((FIXTURES / "transformers/st6.json").read_text())
    model = q3ref.Model(TINY)
    texts = [t["text"] for t in meta["texts"]]
    for i, t in enumerate(meta["texts"]):
        assert float(model.encode(t["text"], t["prompt_name"]) @ z["st6"][i]) >= 0.99999, t
        assert float(model.encode(t["text"], t["prompt_name"], strip=True) @ z["stripped"][i]) >= 0.99999, t
    # the conventions differ exactly where there is outer whitespace to strip
    differs = [float(a @ b) < 0.99999 for a, b in zip(z["st6"], z["stripped"])]
    assert differs == [(t["prompt_name"] is None and t["text"] != t["text"].strip())
                       or (t["prompt_name"] is not None and t["text"] != t["text"].rstrip()) for t in meta["texts"]], texts


def test_non_qwen_tokenizer_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(Q3RefError, match="cannot load tokenizer"):
        Tokenizer(tmp_path / "tokenizer.json")


def test_plain_json_file_loads_like_gz(tmp_path, card_ids):
    plain = tmp_path / "tokenizer.json"
    with gzip.open(EMBEDDING) as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert Tokenizer(plain).encode(CARD_DOCS[0]) == card_ids["doc0"]
