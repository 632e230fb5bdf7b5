"""Batching and padding: a batch, left- or right-padded, gives what one-at-a-time runs give."""

import numpy as np
import pytest

import q3ref
from q3ref import model as M
from conftest import STRESS


@pytest.fixture(scope="module")
def model():
    return q3ref.Model(STRESS)


def seqs():
    rng = np.random.default_rng(9)
    return [rng.integers(0, 1000, n) for n in (1, 5, 40, 13, 40, 2)]


def single(model, s, dim=None):
    return M.embed(model.weights, model.cfg, s[None], np.ones((1, len(s)), bool), dim)[0]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("kernels", ["numba", "numpy"])
def test_padded_batch_equals_single_runs(model, side, kernels):
    model.kernels = kernels
    ids, mask = q3ref.pad(seqs(), side)
    # Make the pad ids hostile: values at pad positions must not matter.
    ids[~mask] = 999
    taps = {}
    batch = M.embed(model.weights, model.cfg, ids, mask, taps=taps)
    assert all(np.isfinite(v).all() for v in taps.values())  # pad rows never make NaN
    for b, s in enumerate(seqs()):
        one = single(model, s)
        assert np.abs(batch[b] - one).max() <= 1e-6, (side, b, np.abs(batch[b] - one).max())


def test_encode_keeps_input_order_and_is_unit(model):
    vecs = model.encode_ids(seqs(), batch_size=4)
    assert vecs.dtype == np.float32 and vecs.shape == (6, 48)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-6)
    for b, s in enumerate(seqs()):
        assert np.abs(vecs[b] - single(model, s)).max() <= 1e-6


def test_mrl_truncates_then_renormalizes(model):
    s = seqs()[2]
    hidden = M.forward(model.weights, model.cfg, s[None], np.ones((1, len(s)), bool))  # [1, T, D]
    full = hidden[0, -1]  # [D], the last token before normalization
    v = model.encode_ids([s], dim=32)[0]
    assert v.shape == (32,) and np.isclose(np.linalg.norm(v), 1, atol=1e-6)
    assert np.allclose(v, full[:32] / np.linalg.norm(full[:32]), atol=1e-6)


@pytest.mark.parametrize("dim", [0, 31, 49, -1, 3.5])
def test_bad_dim(model, dim):
    with pytest.raises(q3ref.Q3RefError, match="--dim"):
        model.encode_ids(seqs()[:1], dim=dim)


def test_api_misuse_is_a_q3ref_error(model):
    a, b = model.encode_ids(seqs()[:2]), model.encode_ids(seqs()[:1], dim=32)
    with pytest.raises(q3ref.Q3RefError, match="similarity of 48-dim and 32-dim vectors"):
        model.similarity(a, b)
    with pytest.raises(q3ref.Q3RefError, match="trace takes one text or one sequence's token ids"):
        model.trace(["one text", "another"])


def test_pool_last_under_mixed_padding():
    hidden = np.arange(2 * 4 * 1, dtype=np.float32).reshape(2, 4, 1)
    mask = np.array([[True, True, False, False], [False, True, True, True]])
    assert M.pool_last(hidden, mask)[:, 0].tolist() == [1.0, 7.0]
