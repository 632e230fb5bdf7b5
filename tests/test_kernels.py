"""Each Numba kernel against its plain NumPy twin (q3ref/kernels.py).

Tolerance: |numba - numpy| <= atol + rtol * |numpy| elementwise, stated per check. The twins
are themselves held to transformers by test_fidelity.py.
"""

import numba
import numpy as np
import pytest

from q3ref import kernels as K

RTOL, ATOL = 1e-5, 1e-6


def check(name, got, ref, rtol=RTOL, atol=ATOL):
    err = np.abs(got.astype(np.float64) - ref)
    bad = err > atol + rtol * np.abs(ref)
    if bad.any():
        i = np.unravel_index(np.argmax(err - rtol * np.abs(ref)), err.shape)
        pytest.fail(f"{name}: {bad.sum()} elements beyond atol {atol} + rtol {rtol}*|ref|; worst at "
                    f"{list(map(int, i))}: numba {got[i]:+.8g} vs numpy {ref[i]:+.8g}")


@numba.njit(cache=True)
def _exp_fast_all(x):  # exp_fast is only reachable from jitted code
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = K.exp_fast(x[i])
    return out


def test_exp_fast_float32_ulps():
    """Near-correct rounding over its whole range (measured: 0.98 ulp; np.exp's float32: 2.3)."""
    x = np.linspace(K.EXP_LO, K.EXP_HI, 2_000_003, dtype=np.float32)
    exact = np.exp(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    got = _exp_fast_all(x)
    assert got.dtype == np.float32
    assert np.max(np.abs(got - exact) / ulp) <= 1.5
    assert np.max(np.abs(np.exp(x) - exact) / ulp) <= 3  # the twin, for scale


def test_exp_fast_edges():
    x = np.array([0, -np.inf, -200, np.inf, 200, np.nan], np.float32)
    got = _exp_fast_all(x)
    assert got[0] == 1
    assert got[1] == got[2] == _exp_fast_all(np.array([K.EXP_LO]))[0]  # clamped, not 0:
    assert np.isclose(got[1], 2.0 ** -126, rtol=1e-5)  # attention zeroes masked keys apart
    assert got[3] == got[4] and np.isfinite(got[3]) and got[3] > 2e38  # clamped, not inf
    assert np.isnan(got[5])
    assert _exp_fast_all(np.array([-1.5, 2.0]))[0] == np.exp(-1.5)  # float64: math.exp itself


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 8), (7, 16), (300, 1024), (64, 128)])
def test_rms_norm(shape, dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    w = (1 + 0.1 * rng.standard_normal(shape[-1])).astype(dtype)
    check("rms_norm", K.rms_norm_numba(x, w, 1e-6), K.rms_norm_numpy(x, w, 1e-6))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rope(dtype):
    rng = np.random.default_rng(1)
    pos = rng.integers(0, 4000, 50)
    cos, sin = K.rope_tables(pos, 128, 1e6, dtype)
    x = rng.standard_normal((50, 3, 128)).astype(dtype)
    check("rope", K.rope_numba(x, cos, sin), K.rope_numpy(x, cos, sin))


def test_rope_is_split_half_rotation():
    """Position p rotates the pair (x[j], x[j + Dh/2]) by p * inv_freq[j]; norms are kept."""
    Dh, theta = 8, 1e4
    x = np.random.default_rng(2).standard_normal((1, 1, Dh))
    cos, sin = K.rope_tables(np.array([3]), Dh, theta, np.float64)
    out = K.rope_numpy(x, cos, sin)
    j, ang = 1, 3 * theta ** (-2 * 1 / Dh)
    a, b = x[0, 0, j], x[0, 0, j + Dh // 2]
    assert np.isclose(out[0, 0, j], a * np.cos(ang) - b * np.sin(ang))
    assert np.isclose(out[0, 0, j + Dh // 2], b * np.cos(ang) + a * np.sin(ang))
    assert np.isclose(np.linalg.norm(out), np.linalg.norm(x))


def padded_mask(B, T, rng):
    """Row 0 full; then right-padded, left-padded and (for B > 3) a 1-token row."""
    mask = np.ones((B, T), bool)
    for b in range(1, B):
        n = int(rng.integers(1, T + 1)) if b < 3 else 1
        mask[b] = False
        if b % 2:
            mask[b, :n] = True  # right padding
        else:
            mask[b, T - n:] = True  # left padding
    return mask


@pytest.mark.parametrize("tiles", [(K.Q_TILE, K.K_TILE, K.THREADS_FROM_T), (16, 24, 10**9), (16, 24, 0)],
                         ids=["default-tiles", "small-tiles", "small-tiles-threaded"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rep", [1, 2, 3, 4])
@pytest.mark.parametrize("T", [1, 2, 17, 130, 600])
def test_attention(T, rep, dtype, tiles, monkeypatch):
    # small tiles put many query and key tiles (and tile edges) inside one sequence
    monkeypatch.setattr(K, "Q_TILE", tiles[0])
    monkeypatch.setattr(K, "K_TILE", tiles[1])
    monkeypatch.setattr(K, "THREADS_FROM_T", tiles[2])  # 0: every length on the thread pool
    rng = np.random.default_rng(T * 10 + rep)
    B, Hkv, Dh = 4, 2, 16
    q = rng.standard_normal((B, T, Hkv * rep, Dh)).astype(dtype) * 2
    k = rng.standard_normal((B, T, Hkv, Dh)).astype(dtype) * 2
    v = rng.standard_normal((B, T, Hkv, Dh)).astype(dtype)
    mask = padded_mask(B, T, rng)
    ref = K.attention_numpy(q, k, v, mask)
    got = K.attention_numba(q, k, v, mask)
    assert np.isfinite(ref).all() and np.isfinite(got).all()
    assert (got[~mask] == 0).all() and (ref[~mask] == 0).all()  # pad query rows are zero
    # Outputs are weighted means of v (|v| ~ 1) and may cancel to ~0, so the bound is absolute
    # on v's scale: fp32 online softmax over up to 600 keys (measured: 2.4e-6), fp64 far below.
    check("attention", got, ref, rtol=1e-5, atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 129, 255, 256, 300, 512])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_is_nans_ignored_max(n, dtype):
    """The softmax's vectorized row max is NumPy's NaN-ignoring max (-inf when no score is a
    number), wherever the NaN, -inf and +inf fall: in a vector's lanes or in the tail past them."""
    rng = np.random.default_rng(n)
    S = rng.standard_normal((6, n + 5)).astype(dtype)  # a prefix of n of each row is read
    S[1, rng.integers(0, max(n, 1), 3)] = np.nan
    S[2, :] = np.nan  # no number: -inf, and the caller then looks for the NaN itself
    S[3, rng.integers(0, max(n, 1), 2)] = np.inf
    S[4, :] = -np.inf
    S[5, :n] = -1e30
    S[5, n:] = 1e30  # past n: never read
    for r in range(S.shape[0]):
        want = np.fmax.reduce(S[r, :n], initial=-np.inf)
        if np.isnan(want):
            want = -np.inf
        assert K._row_max(S, r, n) == want, (r, n)


@pytest.mark.parametrize("threads_from_t", [0, 10**9], ids=["threaded", "inline"])
def test_attention_passes_nan_on(threads_from_t, monkeypatch):
    """A NaN query row, or a NaN key, makes NaN exactly where the twin has it: a reference must
    not turn a broken input into zeros."""
    monkeypatch.setattr(K, "Q_TILE", 16)
    monkeypatch.setattr(K, "K_TILE", 24)
    monkeypatch.setattr(K, "THREADS_FROM_T", threads_from_t)
    rng = np.random.default_rng(4)
    T, H, Hkv, Dh = 60, 4, 2, 16
    q = rng.standard_normal((2, T, H, Dh)).astype(np.float32)
    k = rng.standard_normal((2, T, Hkv, Dh)).astype(np.float32)
    v = rng.standard_normal((2, T, Hkv, Dh)).astype(np.float32)
    q[0, 7, 1] = np.nan  # one query row of one head: all its scores are NaN
    k[1, 30, 0] = np.nan  # one key: NaN for every later query of heads 0 and 1
    mask = np.ones((2, T), bool)
    ref = K.attention_numpy(q, k, v, mask)
    got = K.attention_numba(q, k, v, mask)
    assert np.isnan(ref).any()
    assert (np.isnan(got) == np.isnan(ref)).all()
    check("attention", np.nan_to_num(got), np.nan_to_num(ref), rtol=1e-5, atol=1e-5)


def test_attention_numpy_is_softmax_attention():
    """The twin against a direct per-query loop for one small case with left padding."""
    rng = np.random.default_rng(3)
    T, H, Hkv, Dh = 5, 4, 2, 8
    q, k, v = (rng.standard_normal((1, T, h, Dh)) for h in (H, Hkv, Hkv))
    mask = np.array([[False, False, True, True, True]])
    out = K.attention_numpy(q, k, v, mask)
    for i in range(T):
        for h in range(H):
            if not mask[0, i]:
                assert (out[0, i, h] == 0).all()
                continue
            keys = [j for j in range(i + 1) if mask[0, j]]
            s = np.array([q[0, i, h] @ k[0, j, h // 2] for j in keys]) / np.sqrt(Dh)
            p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            assert np.allclose(out[0, i, h], sum(pj * v[0, j, h // 2] for pj, j in zip(p, keys)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silu_mul(dtype):
    rng = np.random.default_rng(4)
    g = (rng.standard_normal((33, 96)) * 8).astype(dtype)
    u = rng.standard_normal((33, 96)).astype(dtype)
    check("silu_mul", K.silu_mul_numba(g, u), K.silu_mul_numpy(g, u))
