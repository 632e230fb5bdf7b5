"""Qwen3-Reranker against the model card's own transformers recipe (tests/fixtures/transformers/
reranker.npz, scripts/make_reranker_fixtures.py): two random reranker checkpoints, re-made here
and checked by sha256, one with a tied head (like 0.6B) and one with lm_head.weight (4B, 8B)."""

import hashlib
import json

import numpy as np
import pytest

import q3ref
from conftest import FIXTURES, TINY, cli, one_line_exit_2
from q3ref.checkpoint import make_checkpoint, preset_config
from q3ref.errors import Q3RefError

Z = np.load(FIXTURES / "transformers/reranker.npz")
META = json.loads((FIXTURES / "transformers/reranker.json").read_text())
BASE_TOKENIZER = FIXTURES / "qwen3-tokenizer/tokenizer.json.gz"


@pytest.fixture(scope="module", params=["tied", "untied"])
def reranker(request, tmp_path_factory):
    name, spec = request.param, META["checkpoints"][request.param]
    out = tmp_path_factory.mktemp(name)
    make_checkpoint(out, preset_config("tiny", tie_word_embeddings=spec["tie_word_embeddings"]), spec["seed"],
                    BASE_TOKENIZER, preset="tiny", reranker=True)
    assert hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest() == spec["sha256"]
    return name, q3ref.Model(out)


def test_checkpoint_is_recognized_and_its_head_read(reranker):
    name, model = reranker
    assert model.kind == "reranker" and (model.weights.lm_head is None) == (name == "tied")
    from q3ref.rerank import answer_ids

    spec = META["checkpoints"][name]
    assert answer_ids(model.tokenizer) == (spec["yes_id"], spec["no_id"])


def test_ids_are_the_cards_exactly(reranker):
    name, model = reranker
    for k, pair in enumerate(META["checkpoints"][name]["pairs"]):
        got = model.rerank_ids(pair["query"], pair["document"], pair["instruction"])
        assert got == Z[f"{name}/{k}/input_ids"].tolist(), pair


def test_scores_match_the_card_within_1e_5(reranker):
    name, model = reranker
    pairs = META["checkpoints"][name]["pairs"]
    for instruction in sorted({p["instruction"] or "" for p in pairs}):
        rows = [k for k, p in enumerate(pairs) if (p["instruction"] or "") == instruction]
        for query in sorted({pairs[k]["query"] for k in rows}):
            ks = [k for k in rows if pairs[k]["query"] == query]
            got = model.rerank(query, [pairs[k]["document"] for k in ks], instruction or None)
            want = np.array([float(Z[f"{name}/{k}/score"]) for k in ks])
            assert np.abs(got - want).max() <= 1e-5, (query, got, want)


def test_every_tap_and_the_yes_no_logits(reranker):
    name, model = reranker
    ids = Z[f"{name}/0/input_ids"].tolist()
    taps = model.trace(ids)
    for tap in [k.split("/", 2)[2] for k in Z.files if k.startswith(f"{name}/taps/")]:
        want, got = Z[f"{name}/taps/{tap}"], taps[tap]
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert rel <= 1e-5, (tap, rel)
    yes_no = model.weights.head_rows([META["checkpoints"][name]["yes_id"], META["checkpoints"][name]["no_id"]])
    logits = taps["norm"][-1] @ yes_no.T
    assert np.allclose(logits, [float(Z[f"{name}/0/yes"]), float(Z[f"{name}/0/no"])], rtol=1e-5, atol=1e-5)


def test_cli_rerank_json(reranker):
    name, model = reranker
    r = cli("rerank", "What is the capital of China?", "The capital of China is Beijing.", "x",
            "--weights", model.path, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    k = [i for i, p in enumerate(META["checkpoints"][name]["pairs"])
         if p["instruction"] is None and p["query"] == "What is the capital of China?" and p["document"] == "x"][0]
    assert abs(out["scores"][1] - float(Z[f"{name}/{k}/score"])) <= 1e-5


def test_bad_input(reranker):
    _, model = reranker
    one_line_exit_2(cli("rerank", "query", "--weights", model.path), "DOC")  # no documents
    one_line_exit_2(cli("rerank", "a long query " * 20, "doc", "--weights", model.path, "--max-length", "64"),
                    "no room for the document")
    one_line_exit_2(cli("embed", "hello", "--weights", model.path), "Qwen3-Reranker checkpoint")
    one_line_exit_2(cli("rerank", "q", "d", "--weights", TINY), "embedding checkpoint")
    with pytest.raises(Q3RefError, match="no documents"):
        model.rerank("q", [])
