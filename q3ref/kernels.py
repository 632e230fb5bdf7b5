"""The four non-matmul kernels of the decoder, each as a plain NumPy twin and a Numba kernel.

The NumPy twin is the textbook formula and the definition; the Numba kernel is the fast
path and is held to its twin by tests/test_kernels.py. Matrix products are not here: they go
through BLAS (`x @ w.T`) in model.py.

    rms_norm(x [N, C], w [C], eps)                 -> [N, C]
    rope_tables(pos [N], Dh, theta, dtype)         -> cos, sin [N, Dh]
    rope(x [N, Hx, Dh], cos [N, Dh], sin [N, Dh])  -> [N, Hx, Dh]
    attention(q [B, T, H, Dh], k, v [B, T, Hkv, Dh], mask [B, T] bool) -> [B, T, H, Dh]
    silu_mul(gate [N, F], up [N, F])               -> [N, F]
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Reassociation and fused multiply-add let the compiler vectorize the dot products; NaN and
# Inf semantics stay strict because masked scores are -inf.
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


# ---------------------------------------------------------------------------- RMSNorm
def rms_norm_numpy(x, w, eps):
    """x * rsqrt(mean(x^2) + eps) * w over the last axis (transformers Qwen3RMSNorm).

    Plain `w`, not `1 + w` (that is Gemma). Computed in x's float dtype, as transformers does
    in fp32.
    """
    var = np.mean(x * x, axis=-1, keepdims=True)  # [N, 1]
    return x * (1.0 / np.sqrt(var + x.dtype.type(eps))) * w  # [N, C]


@numba.njit(cache=True, fastmath=FAST, parallel=True)
def _rms_norm_numba(x, w, eps, out):
    n, c = x.shape
    for r in numba.prange(n):
        ss = 0.0  # float64 accumulator: the sum of squares is the only long reduction here
        for j in range(c):
            ss += x[r, j] * x[r, j]
        inv = x.dtype.type(1.0) / x.dtype.type(math.sqrt(ss / c + eps))
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


@numba.njit(cache=True, fastmath=FAST, parallel=True)
def _rope_numba(x, cos, sin, out):
    n, hx, dh = x.shape
    half = dh // 2
    for r in numba.prange(n):
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


@numba.njit(cache=True, fastmath=FAST, parallel=True)
def _attention_numba(q, k, v, mask, out):
    # One query token per parallel task; the H // Hkv query heads of a group walk the keys
    # together so each key row is read once per group. Online softmax (running max m, running
    # sum l, rescaled accumulator): memory grows with T, never T^2.
    B, T, H, Dh = q.shape
    Hkv = k.shape[2]
    rep = H // Hkv
    scale = q.dtype.type(Dh ** -0.5)
    for task in numba.prange(B * T):
        b, i = task // T, task % T
        if not mask[b, i]:
            out[b, i] = 0  # padded query row: defined as zero
            continue
        m = np.empty(rep, dtype=q.dtype)
        l = np.empty(rep, dtype=q.dtype)
        acc = np.empty((rep, Dh), dtype=q.dtype)
        s = np.empty(rep, dtype=q.dtype)
        for g in range(Hkv):
            m[:] = -np.inf
            l[:] = 0
            acc[:] = 0
            for j in range(i + 1):
                if not mask[b, j]:
                    continue
                for r in range(rep):
                    h = g * rep + r
                    dot = q.dtype.type(0)
                    for d in range(Dh):
                        dot += q[b, i, h, d] * k[b, j, g, d]
                    s[r] = dot * scale
                for r in range(rep):
                    if s[r] > m[r]:
                        corr = math.exp(m[r] - s[r])  # 0 on the first key (m = -inf)
                        l[r] *= corr
                        for d in range(Dh):
                            acc[r, d] *= corr
                        m[r] = s[r]
                    p = math.exp(s[r] - m[r])
                    l[r] += p
                    for d in range(Dh):
                        acc[r, d] += p * v[b, j, g, d]
            for r in range(rep):
                for d in range(Dh):
                    out[b, i, g * rep + r, d] = acc[r, d] / l[r]


def attention_numba(q, k, v, mask):
    q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    out = np.empty_like(q)  # [B, T, H, Dh]
    _attention_numba(q, k, v, np.ascontiguousarray(mask, dtype=np.bool_), out)
    return out


# ---------------------------------------------------------------------------- SwiGLU
def silu_mul_numpy(gate, up):
    """silu(gate) * up, silu(x) = x * sigmoid(x) = x / (1 + exp(-x))."""
    return gate / (1 + np.exp(-gate)) * up  # [N, F]


@numba.njit(cache=True, fastmath=FAST, parallel=True)
def _silu_mul_numba(gate, up, out):
    n, f = gate.shape
    for r in numba.prange(n):
        for j in range(f):
            g = gate[r, j]
            out[r, j] = g / (1 + math.exp(-g)) * up[r, j]


def silu_mul_numba(gate, up):
    gate, up = np.ascontiguousarray(gate), np.ascontiguousarray(up)
    out = np.empty_like(gate)  # [N, F]
    _silu_mul_numba(gate, up, out)
    return out


KERNELS = {
    "numpy": dict(rms_norm=rms_norm_numpy, rope=rope_numpy, attention=attention_numpy,
                  silu_mul=silu_mul_numpy),
    "numba": dict(rms_norm=rms_norm_numba, rope=rope_numba, attention=attention_numba,
                  silu_mul=silu_mul_numba),
}
