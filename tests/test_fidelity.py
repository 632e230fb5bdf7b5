"""q3ref against transformers (fp32, eager), every tap, both checkpoints, both kernel paths.

Reference values: tests/fixtures/transformers/*.npz, made by scripts/make_fixtures.py with
transformers' own Qwen3Model; q3ref never made any of them.
Tolerance per tap: max abs error <= 1e-5 x max|reference tap| (the core issue's target). Both
sides compute in fp32, so only summation order differs (measured: worst 8e-7).
"""

import numpy as np
import pytest

import q3ref
from q3ref.model import tap_names
from conftest import FIXTURES, STRESS, TINY, assert_close, close_report

REL = 1e-5
CHECKPOINTS = {"tiny": TINY, "stress": STRESS}


def fixture(name):
    z = np.load(FIXTURES / f"transformers/{name}.npz")
    return {k: z[k] for k in z.files}


def cases(fx):
    return sorted({k.split("/")[0] for k in fx} - {"batch"})


@pytest.fixture(scope="module", params=[(c, k, d) for c in CHECKPOINTS for k in ("numba", "numpy")
                                        for d in ("float32", "float64")],
                ids=lambda p: "-".join(p))
def setup(request):
    ckpt, kernels, dtype = request.param
    return ckpt, q3ref.Model(CHECKPOINTS[ckpt], dtype=dtype, kernels=kernels), fixture(ckpt)


def test_every_tap_matches_transformers(setup):
    # fp64 is held to the same fp32 reference: it differs from it by fp32 rounding, and most by
    # transformers' fp32 RoPE angles (measured: 2.2e-6 at 200 tokens), still inside 1e-5.
    name, model, fx = setup
    failures, checked = [], 0
    for case in cases(fx):
        taps = model.trace(fx[f"{case}/input_ids"])
        assert list(taps)[:-1] == tap_names(model.cfg)  # every tap, in forward order
        for tap in tap_names(model.cfg):
            msg = close_report(f"{case}/{tap}", taps[tap], fx[f"{case}/{tap}"], rel=REL)
            checked += 1
            if msg:
                failures.append(msg)
    assert checked > 100
    assert not failures, f"{len(failures)} of {checked} taps off; first in forward order:\n" + "\n".join(failures[:5])


def test_padded_batch_matches_transformers_batch():
    """A left-, right- and un-padded batch that transformers ran as one batch, with its mask."""
    fx = fixture("stress")
    model = q3ref.Model(STRESS)
    ids, mask = fx["batch/input_ids"], fx["batch/attention_mask"].astype(bool)
    got = q3ref.model.embed(model.weights, model.cfg, ids, mask)
    assert_close("batch/embedding", got, fx["batch/embedding"], rel=REL)
    got32 = q3ref.model.embed(model.weights, model.cfg, ids, mask, dim=32)
    assert_close("batch/embedding_dim32", got32, fx["batch/embedding_dim32"], rel=REL)
    assert np.allclose(np.linalg.norm(got32, axis=1), 1, atol=1e-6)


def test_encode_matches_card_strings_end_to_end(tiny_model):
    """Text in, vector out: tokenizer + forward + pooling against transformers' embeddings."""
    fx = fixture("tiny")
    from scripts_texts import CARD_QUERIES, CARD_DOCS

    q = tiny_model.encode(CARD_QUERIES, prompt_name="query")
    d = tiny_model.encode(CARD_DOCS)
    assert_close("query embeddings", q, np.stack([fx["query0/embedding"], fx["query1/embedding"]]), rel=REL)
    assert_close("doc embeddings", d, np.stack([fx["doc0/embedding"], fx["doc1/embedding"]]), rel=REL)
