"""The gated delta rule (GatedDeltaNet's state update), both forms, per value head, in fp32.

    S_t = exp(g_t) S_{t-1};  S_t += k_t (beta_t (v_t - S_t^T k_t))^T;  o_t = S_t^T q_t

S is [dk, dv] per head. recurrent: that loop, token by token (what LiteRT's graph and the decode
path run). chunked: transformers' torch_chunk_gated_delta_rule (prefill), 64 tokens at a time
through a unit lower-triangular solve, then a scan over chunks; equal in exact arithmetic, not in
fp32. q and k arrive L2-normalized; q is scaled by 1/sqrt(dk) here, as both forms do.
Shapes: q, k [T, Hv, dk] (key heads already repeated for their value heads), v [T, Hv, dv],
g, beta [T, Hv]; returns o [T, Hv, dv] and the final state [Hv, dk, dv].
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def recurrent(q, k, v, g, beta):
    T, Hv, dk = q.shape
    q = (q / F32(np.sqrt(dk))).astype(F32)
    S = np.zeros((Hv, dk, v.shape[-1]), F32)  # [Hv, dk, dv]
    out = np.zeros_like(v)  # [T, Hv, dv]
    for t in range(T):
        S = S * np.exp(g[t])[:, None, None]
        kv_mem = (S * k[t][:, :, None]).sum(axis=1)  # [Hv, dv]
        delta = (v[t] - kv_mem) * beta[t][:, None]  # [Hv, dv]
        S = S + k[t][:, :, None] * delta[:, None, :]
        out[t] = (S * q[t][:, :, None]).sum(axis=1)
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
