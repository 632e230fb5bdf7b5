"""The four non-matmul kernels of the decoder, each as a plain NumPy twin and a Numba kernel.

The NumPy twin is the textbook formula and the definition; the Numba kernel is the fast
path and is held to its twin by tests/test_kernels.py. Matrix products are not here: they go
through BLAS (`x @ w.T`) in model.py.

    rms_norm(x [N, C], w [C], eps)                 -> [N, C]
    rope_tables(pos [N], Dh, theta, dtype)         -> cos, sin [N, Dh]
    rope(x [N, Hx, Dh], cos [N, Dh], sin [N, Dh])  -> [N, Hx, Dh]
    attention(q [B, T, H, Dh], k, v [B, T, Hkv, Dh], mask [B, T] bool) -> [B, T, H, Dh]

The attention "kernel" is Numba for the masked online softmax and BLAS for its two products.
    silu_mul(gate [N, F], up [N, F])               -> [N, F]
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Reassociation and fused multiply-add let the compiler vectorize the loops; NaN and Inf
# semantics stay strict because masked scores are -inf.
# The kernels are serial on purpose: they run between BLAS calls, and a Numba thread pool next
# to OpenBLAS's spinning threads made attention 2x slower on 2 cores (140 ms vs 65 ms per layer
# at T=512). The two cores go to BLAS.
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


# ---------------------------------------------------------------------------- RMSNorm
def rms_norm_numpy(x, w, eps):
    """x * rsqrt(mean(x^2) + eps) * w over the last axis (transformers Qwen3RMSNorm).

    Plain `w`, not `1 + w` (that is Gemma). Computed in x's float dtype, as transformers does
    in fp32.
    """
    var = np.mean(x * x, axis=-1, keepdims=True)  # [N, 1]
    return x * (1.0 / np.sqrt(var + x.dtype.type(eps))) * w  # [N, C]


@numba.njit(cache=True, fastmath=FAST)
def _rms_norm_numba(x, w, eps, out):
    n, c = x.shape
    for r in range(n):
        ss = x.dtype.type(0)  # in x's dtype, as transformers; reassociation lets it vectorize
        for j in range(c):
            ss += x[r, j] * x[r, j]
        inv = x.dtype.type(1) / math.sqrt(ss / c + x.dtype.type(eps))
        for j in range(c):
            out[r, j] = x[r, j] * inv * w[j]


def rms_norm_numba(x, w, eps):
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)  # [N, C]
    _rms_norm_numba(x, w.astype(x.dtype, copy=False), eps, out)
    return out


# ---------------------------------------------------------------------------- RoPE
def rope_tables(pos, head_dim, theta, dtype=np.float32):
    """cos, sin [N, Dh] for integer positions, computed in `dtype` as transformers does.

    transformers (Qwen3RotaryEmbedding, default rope): inv_freq = 1 / theta**(arange(0, Dh, 2)/Dh)
    in fp32, angle = position * inv_freq in fp32, then the half-table duplicated:
    emb = cat(freqs, freqs). An fp32 angle at position 30000 is already off by ~1e-3 rad from
    the exact one; that is part of what exported graphs are compared against, so fp32 mode
    keeps it and fp64 mode ("the reference for the reference") does not.
    """
    dtype = np.dtype(dtype)
    inv_freq = dtype.type(1.0) / dtype.type(theta) ** (np.arange(0, head_dim, 2, dtype=dtype) / dtype.type(head_dim))  # [Dh/2]
    angles = np.asarray(pos, dtype=dtype)[:, None] * inv_freq[None, :]  # [N, Dh/2]
    angles = np.concatenate([angles, angles], axis=-1)  # [N, Dh]
    return np.cos(angles), np.sin(angles)


def rope_numpy(x, cos, sin):
    """Split-half RoPE: x*cos + rotate_half(x)*sin with rotate_half(x) = cat(-x2, x1).

    This is transformers' / GPT-NeoX's convention (first half of the head dim pairs with the
    second half), not llama2.c's interleaved pairs.
    """
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)  # [N, Hx, Dh]
    return x * cos[:, None, :] + rotated * sin[:, None, :]  # [N, Hx, Dh]


@numba.njit(cache=True, fastmath=FAST)
def _rope_numba(x, cos, sin, out):
    n, hx, dh = x.shape
    half = dh // 2
    for r in range(n):
        for h in range(hx):
            for j in range(half):
                a, b = x[r, h, j], x[r, h, j + half]
                out[r, h, j] = a * cos[r, j] - b * sin[r, j]
                out[r, h, j + half] = b * cos[r, j + half] + a * sin[r, j + half]


def rope_numba(x, cos, sin):
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)  # [N, Hx, Dh]
    _rope_numba(x, np.ascontiguousarray(cos, x.dtype), np.ascontiguousarray(sin, x.dtype), out)
    return out


# ---------------------------------------------------------------------------- attention
def attention_numpy(q, k, v, mask):
    """Causal GQA attention with a key-padding mask, one full score matrix per sequence.

    Query head h reads KV head h // (H // Hkv) (transformers repeat_kv). Key j is visible to
    query i when j <= i and mask[j]; softmax in the input dtype (fp32, as transformers).
    A padded query row sees no key: its output is defined as 0, never NaN (transformers uses
    finfo.min instead of -inf for the same reason; 0 * NaN would leak into real rows).
    """
    B, T, H, Dh = q.shape
    rep = H // k.shape[2]
    out = np.zeros_like(q)  # [B, T, H, Dh]
    causal = np.tril(np.ones((T, T), dtype=bool))  # [T, T]
    for b in range(B):
        visible = causal & mask[b][None, :] & mask[b][:, None]  # [T, T], pad rows see nothing
        kb = np.repeat(k[b], rep, axis=1).transpose(1, 2, 0)  # [H, Dh, T]
        vb = np.repeat(v[b], rep, axis=1).transpose(1, 0, 2)  # [H, T, Dh]
        scores = q[b].transpose(1, 0, 2) @ kb * q.dtype.type(Dh ** -0.5)  # [H, T, T]
        scores = np.where(visible, scores, -np.inf)  # [H, T, T]
        row_max = scores.max(axis=-1, keepdims=True)  # [H, T, 1]
        row_max = np.where(np.isfinite(row_max), row_max, 0)
        p = np.exp(scores - row_max)  # [H, T, T], 0 where masked
        denom = p.sum(axis=-1, keepdims=True)  # [H, T, 1]
        probs = p / np.where(denom > 0, denom, 1)  # [H, T, T]
        out[b] = (probs @ vb).transpose(1, 0, 2)  # [T, H, Dh]
    return out


# Tile sizes of the streaming attention: a query tile's score block is at most
# [Q_TILE * H/Hkv, K_TILE] fp32 (1 MB at GQA 2:1), whatever T is. Measured on 2 cores
# (0.6B shapes): 128 x 1024 was among the fastest at T=512 and T=2048.
Q_TILE, K_TILE = 128, 1024


@numba.njit(cache=True, fastmath=FAST)
def _online_softmax_tile(S, m, l, corr, q0, k0, rep, kmask, scale):
    """One key tile of the online softmax, in place.

    S [R, Tk]: raw scores q.k of query rows (row r is query q0 + r // rep) against keys k0..;
    on return S holds p = exp(s*scale - m_new), 0 where masked. m, l [R]: running max and sum,
    updated; corr [R]: exp(m_old - m_new), by which the caller rescales its accumulator.
    """
    R, Tk = S.shape
    ninf = S.dtype.type(-np.inf)
    for r in range(R):
        qi = q0 + r // rep
        mx = m[r] if kmask[qi] else ninf  # a padded query row sees no key: output 0
        for j in range(Tk if kmask[qi] else 0):
            kj = k0 + j
            if kj > qi or not kmask[kj]:
                S[r, j] = ninf
            else:
                S[r, j] *= scale
                if S[r, j] > mx:
                    mx = S[r, j]
        if mx == ninf:  # nothing visible yet (padded query row, or keys all padded so far)
            corr[r] = 1
            for j in range(Tk):
                S[r, j] = 0
            continue
        corr[r] = math.exp(m[r] - mx)  # 0 on the first visible tile, where m = -inf
        total = S.dtype.type(0)
        for j in range(Tk):
            p = math.exp(S[r, j] - mx)  # exp(-inf) = 0 for masked keys
            S[r, j] = p
            total += p
        l[r] = l[r] * corr[r] + total
        m[r] = mx


def attention_numba(q, k, v, mask):
    """Streaming causal GQA attention: BLAS for the two products, Numba for the softmax.

    For each sequence, KV head g and tile of Q_TILE queries, the H/Hkv query heads that share g
    are stacked as rows, so each K and V tile is read once per group; key tiles past the causal
    diagonal are skipped. Online softmax (running max and sum, fp32): memory is O(T), not O(T^2).
    """
    B, T, H, Dh = q.shape
    Hkv = k.shape[2]
    rep = H // Hkv
    scale = q.dtype.type(Dh ** -0.5)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    out = np.zeros_like(q)  # [B, T, H, Dh]
    for b in range(B):
        for g in range(Hkv):
            K = np.ascontiguousarray(k[b, :, g])  # [T, Dh]
            V = np.ascontiguousarray(v[b, :, g])  # [T, Dh]
            for q0 in range(0, T, Q_TILE):
                q1 = min(q0 + Q_TILE, T)
                Q = q[b, q0:q1, g * rep:(g + 1) * rep].reshape(-1, Dh)  # [R, Dh], R = (q1-q0)*rep
                R = Q.shape[0]
                m = np.full(R, -np.inf, q.dtype)  # [R] running max
                l = np.zeros(R, q.dtype)  # [R] running sum
                corr = np.empty(R, q.dtype)  # [R]
                acc = np.zeros((R, Dh), q.dtype)  # [R, Dh]
                for k0 in range(0, q1, K_TILE):  # keys beyond the last query are never visible
                    k1 = min(k0 + K_TILE, q1)
                    S = Q @ K[k0:k1].T  # [R, Tk]
                    _online_softmax_tile(S, m, l, corr, q0, k0, rep, mask[b], scale)
                    acc *= corr[:, None]
                    acc += S @ V[k0:k1]  # [R, Dh]
                safe = np.where(l > 0, l, 1)[:, None]  # padded query rows: l = 0, acc = 0
                out[b, q0:q1, g * rep:(g + 1) * rep] = (acc / safe).reshape(q1 - q0, rep, Dh)
    return out


# ---------------------------------------------------------------------------- SwiGLU
def silu_mul_numpy(gate, up):
    """silu(gate) * up, silu(x) = x * sigmoid(x) = x / (1 + exp(-x))."""
    return gate / (1 + np.exp(-gate)) * up  # [N, F]


@numba.njit(cache=True, fastmath=FAST)
def _silu_mul_numba(gate, up, out):
    n, f = gate.shape
    for r in range(n):
        for j in range(f):
            g = gate[r, j]
            out[r, j] = g / (1 + math.exp(-g)) * up[r, j]


def silu_mul_numba(gate, up):
    gate, up = np.ascontiguousarray(gate), np.ascontiguousarray(up)
    out = np.empty_like(gate)  # [N, F]
    _silu_mul_numba(gate, up, out)
    return out


def linear(x, w):  # [N, in], [out, in] -> [N, out]: BLAS, with W used as stored (transposed view)
    return x @ w.T


KERNELS = {
    "numpy": dict(rms_norm=rms_norm_numpy, rope=rope_numpy, attention=attention_numpy,
                  silu_mul=silu_mul_numpy, linear=linear),
    "numba": dict(rms_norm=rms_norm_numba, rope=rope_numba, attention=attention_numba,
                  silu_mul=silu_mul_numba, linear=linear),
}
