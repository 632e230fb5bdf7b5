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


def test_strip_is_of_prompt_plus_text(tok):
    # sentence-transformers prepends the prompt, then strips the whole string: spaces the user
    # typed after the prompt stay (a bridge that strips the text alone gives other ids).
    ids = tok.encode("  how tall?  ", instruction="T")
    assert tok.decode(ids) == "Instruct: T\nQuery:  how tall?<|endoftext|>"


def test_text_is_stripped_like_sentence_transformers(tok):
    assert tok.encode("  The capital of China is Beijing. \n") == tok.encode("The capital of China is Beijing.")


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


@pytest.mark.parametrize("bad", ["", "   ", "\n"])
def test_empty_text_is_an_error(tok, bad):
    with pytest.raises(Q3RefError, match="empty text"):
        tok.encode(bad)


def test_non_qwen_tokenizer_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(Q3RefError, match="cannot load tokenizer"):
        Tokenizer(tmp_path / "tokenizer.json")


def test_plain_json_file_loads_like_gz(tmp_path, card_ids):
    plain = tmp_path / "tokenizer.json"
    with gzip.open(EMBEDDING) as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert Tokenizer(plain).encode(CARD_DOCS[0]) == card_ids["doc0"]
