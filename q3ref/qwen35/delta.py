"""The gated delta rule (GatedDeltaNet's state update), both forms, per value head, in fp32.

    S_t = exp(g_t) S_{t-1};  S_t += k_t (beta_t (v_t - S_t^T k_t))^T;  o_t = S_t^T q_t

S is [dk, dv] per head. recurrent: that loop, token by token (what LiteRT's graph and the decode
path run). chunked: transformers' torch_chunk_gated_delta_rule (prefill), 64 tokens at a time
through a unit lower-triangular solve, then a scan over chunks; equal in exact arithmetic, not in
fp32. q and k arrive L2-normalized; q is scaled by 1/sqrt(dk) here, as both forms do.
Shapes: q, k [T, Hv, dk] (key heads already repeated for their value heads), v [T, Hv, dv],
g, beta [T, Hv]; returns o [T, Hv, dv] and the final state [Hv, dk, dv].

Each form is a plain NumPy twin (the definition, `recurrent`, `chunked`) beside a Numba kernel
(`recurrent_numba`, `chunked_numba`), held to its twin by tests/test_qwen35.py. The kernels run
each head on its own, in fp32, with loops in the twins' order of terms but not their summation
order (fastmath reassociates the dot products), so they agree with the twins to fp32 rounding.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..kernels import JIT

F32 = np.float32


def recurrent(q, k, v, g, beta, state=None, scaled=False):
    """state: the [Hv, dk, dv] to start from (zeros: a fresh sequence); scaled: q already carries
    its 1/sqrt(dk) (as the inputs of LiteRT's gated_delta_update op do)."""
    T, Hv, dk = q.shape
    q = q if scaled else (q / F32(np.sqrt(dk))).astype(F32)
    S = np.zeros((Hv, dk, v.shape[-1]), F32) if state is None else np.array(state, F32)  # [Hv, dk, dv]
    out = np.zeros_like(v)  # [T, Hv, dv]
    for t in range(T):
        S = S * np.exp(g[t])[:, None, None]
        kv_mem = (S * k[t][:, :, None]).sum(axis=1)  # [Hv, dv]
        delta = (v[t] - kv_mem) * beta[t][:, None]  # [Hv, dv]
        S = S + k[t][:, :, None] * delta[:, None, :]
        out[t] = (S * q[t][:, :, None]).sum(axis=1)
    return out, S


@numba.njit(**JIT)
def _recurrent_numba(q, k, v, g, beta, scale, out, S):
    T, Hv, dk = q.shape
    dv = v.shape[2]
    kv_mem = np.empty(dv, np.float32)
    for h in range(Hv):
        for t in range(T):
            decay = np.float32(math.exp(g[t, h]))
            kv_mem[:] = 0
            for i in range(dk):  # S *= decay, and S^T k, in one pass over the state
                for j in range(dv):
                    S[h, i, j] *= decay
                    kv_mem[j] += S[h, i, j] * k[t, h, i]
            for j in range(dv):
                kv_mem[j] = (v[t, h, j] - kv_mem[j]) * beta[t, h]  # now delta
                out[t, h, j] = 0
            for i in range(dk):  # S += k delta^T, and S^T q
                qi = q[t, h, i] * scale
                for j in range(dv):
                    S[h, i, j] += k[t, h, i] * kv_mem[j]
                    out[t, h, j] += S[h, i, j] * qi


def recurrent_numba(q, k, v, g, beta, state=None, scaled=False):
    q, k, v, g, beta = (np.ascontiguousarray(x, F32) for x in (q, k, v, g, beta))
    out = np.empty_like(v)  # [T, Hv, dv]
    S = np.zeros((q.shape[1], q.shape[2], v.shape[2]), F32) if state is None else np.array(state, F32)  # [Hv, dk, dv]
    scale = F32(1) if scaled else F32(1) / F32(math.sqrt(q.shape[2]))
    _recurrent_numba(q, k, v, g, beta, scale, out, S)
    return out, S


def unit_lower_solve(A, B):  # A [..., n, n] unit lower-triangular, B [..., n, m] -> A^-1 B
    X = np.zeros_like(B)
    for i in range(A.shape[-1]):  # forward substitution, row by row
        X[..., i, :] = B[..., i, :] - np.einsum("...j,...jm->...m", A[..., i, :i], X[..., :i, :])
    return X


def chunked(q, k, v, g, beta, chunk=64):
    T, Hv, dk = q.shape
    dv = v.shape[-1]
    pad = (-T) % chunk
    q, k, v = (np.pad(x.transpose(1, 0, 2), ((0, 0), (0, pad), (0, 0))) for x in (q, k, v))  # [Hv, T', .]
    g, beta = (np.pad(x.T, ((0, 0), (0, pad))) for x in (g, beta))  # [Hv, T']
    q = (q * F32(dk ** -0.5)).astype(F32)
    n = (T + pad) // chunk
    v_beta, k_beta = v * beta[..., None], k * beta[..., None]
    q, k, k_beta, v_beta = (x.reshape(Hv, n, chunk, -1) for x in (q, k, k_beta, v_beta))  # [Hv, n, c, .]
    g = g.reshape(Hv, n, chunk)
    upper = np.triu(np.ones((chunk, chunk), bool), 1)
    cum = np.cumsum(g, axis=-1, dtype=F32)  # [Hv, n, c]
    pair = np.exp(np.where(upper, -np.inf, cum[..., :, None] - cum[..., None, :]), dtype=F32)  # [Hv, n, c, c]
    ut = (k_beta @ k.swapaxes(-1, -2)) * pair
    intra = (q @ k.swapaxes(-1, -2)) * pair
    decayed_k_beta = k_beta * np.exp(cum)[..., None]
    A = np.tril(ut, -1) + np.eye(chunk, dtype=F32)  # the solve reads only the strict lower part
    new_values, k_cumdecay = unit_lower_solve(A, v_beta), unit_lower_solve(A, decayed_k_beta)
    S = np.zeros((Hv, dk, dv), F32)
    out = np.zeros((Hv, n, chunk, dv), F32)
    q = q * np.exp(cum)[..., None]
    k = k * np.exp(cum[..., -1:] - cum)[..., None]
    chunk_decay = np.exp(cum[..., -1])[..., None, None]  # [Hv, n, 1, 1]
    for i in range(n):
        v_new = new_values[:, i] - k_cumdecay[:, i] @ S  # [Hv, c, dv]
        out[:, i] = q[:, i] @ S + intra[:, i] @ v_new
        S = S * chunk_decay[:, i] + k[:, i].swapaxes(-1, -2) @ v_new
    return out.reshape(Hv, -1, dv)[:, :T].transpose(1, 0, 2), S


@numba.njit(**JIT)
def _chunked_numba(q, k, v, g, beta, chunk, out, S):
    T, Hv, dk = q.shape
    dv = v.shape[2]
    c = chunk
    scale = np.float32(1) / np.float32(math.sqrt(dk))
    cum = np.empty(c, np.float32)
    A = np.empty((c, c), np.float32)  # strict lower part: -(k_beta k^T) * decay, the solve's matrix
    nv = np.empty((c, dv), np.float32)  # new values: A^-1 v_beta, then less the carried state's share
    kc = np.empty((c, dk), np.float32)  # k_cumdecay: A^-1 (k_beta exp(cum))
    for h in range(Hv):
        for t0 in range(0, T, c):
            n = min(c, T - t0)  # the last chunk is short; transformers pads it with zeros, which add nothing
            acc = np.float32(0)
            for i in range(n):
                acc += g[t0 + i, h]
                cum[i] = acc
            for i in range(n):  # forward substitution of the unit lower-triangular system, row by row
                b = beta[t0 + i, h]
                for j in range(i):
                    s = np.float32(0)
                    for d in range(dk):
                        s += k[t0 + i, h, d] * k[t0 + j, h, d]
                    A[i, j] = b * s * np.float32(math.exp(cum[i] - cum[j]))
                for d in range(dv):
                    nv[i, d] = v[t0 + i, h, d] * b
                for d in range(dk):
                    kc[i, d] = k[t0 + i, h, d] * b * np.float32(math.exp(cum[i]))
                for j in range(i):
                    a = A[i, j]
                    for d in range(dv):
                        nv[i, d] -= a * nv[j, d]
                    for d in range(dk):
                        kc[i, d] -= a * kc[j, d]
            for i in range(n):  # v_new = new_values - k_cumdecay S (the state carried in from earlier chunks)
                for d in range(dk):
                    kcd = kc[i, d]
                    for e in range(dv):
                        nv[i, e] -= kcd * S[h, d, e]
            for i in range(n):  # o = (q exp(cum)) S + (q k^T * decay, causal) v_new
                qs = np.float32(math.exp(cum[i])) * scale
                for e in range(dv):
                    out[t0 + i, h, e] = 0
                for d in range(dk):
                    qd = q[t0 + i, h, d] * qs
                    for e in range(dv):
                        out[t0 + i, h, e] += qd * S[h, d, e]
                for j in range(i + 1):
                    s = np.float32(0)
                    for d in range(dk):
                        s += q[t0 + i, h, d] * k[t0 + j, h, d]
                    w = s * scale * np.float32(math.exp(cum[i] - cum[j]))
                    for e in range(dv):
                        out[t0 + i, h, e] += w * nv[j, e]
            last = cum[c - 1] if n == c else cum[n - 1]  # zero-padded g adds nothing to the cumulative sum
            decay = np.float32(math.exp(last))
            for d in range(dk):  # S = S exp(cum_last) + (k exp(cum_last - cum))^T v_new
                for e in range(dv):
                    S[h, d, e] *= decay
                for j in range(n):
                    kd = k[t0 + j, h, d] * np.float32(math.exp(last - cum[j]))
                    for e in range(dv):
                        S[h, d, e] += kd * nv[j, e]


def chunked_numba(q, k, v, g, beta, chunk=64):
    q, k, v, g, beta = (np.ascontiguousarray(x, F32) for x in (q, k, v, g, beta))
    out = np.empty_like(v)  # [T, Hv, dv]
    S = np.zeros((q.shape[1], q.shape[2], v.shape[2]), F32)  # [Hv, dk, dv]
    _chunked_numba(q, k, v, g, beta, chunk, out, S)
    return out, S


FORMS = {("chunked", "numpy"): chunked, ("chunked", "numba"): chunked_numba,
         ("recurrent", "numpy"): recurrent, ("recurrent", "numba"): recurrent_numba}
