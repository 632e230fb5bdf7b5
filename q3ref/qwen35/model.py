"""The Qwen3.5 text decoder, top to bottom, in transformers' order of operations
(models/qwen3_5/modeling_qwen3_5.py: Qwen3_5DecoderLayer, Qwen3_5GatedDeltaNet, Qwen3_5Attention,
Qwen3_5RMSNorm, Qwen3_5RMSNormGated). One sequence, fp32, names as in config.py; T tokens.

Two kinds of layer share the pre-norm residual block and the SwiGLU MLP:
- linear_attention: GatedDeltaNet, a recurrent state per value head (delta.py);
- full_attention: GQA with an output gate and partial RoPE.
Norms are zero-centred, x * rsqrt(mean(x^2) + eps) * (1 + w), except the gated norm inside
GatedDeltaNet, which multiplies by w itself (no +1) and then by silu(z).
Taps: layers.{i}.{input_norm, mixer, attn_residual, post_norm, mlp, out}, and for GatedDeltaNet
layers also qkv, conv, the delta rule's inputs (q scaled by 1/sqrt(dk), k, v, beta, g), core,
gated_norm and the states after the last token (conv_state: the last C inputs of the conv,
recurrent_state); for attention layers k_rope and v (the K/V cache rows) and gated_attn; then norm
and logits (the last position's).
"""

from __future__ import annotations

import numpy as np

from . import delta

F32 = np.float32


def rms_norm(x, w, eps, plus_one=True):  # [..., n] -> [..., n]; zero-centred (1 + w) unless plus_one=False
    x = np.asarray(x, F32)
    normed = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + F32(eps))  # x * rsqrt(mean(x^2) + eps)
    return normed * ((F32(1) + w) if plus_one else w)


def l2norm(x, eps=1e-6):  # [..., n]: x * rsqrt(sum(x^2) + eps), as FLA and transformers
    return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + F32(eps))


def silu(x):
    return x / (F32(1) + np.exp(-x))


def sigmoid(x):
    return F32(1) / (F32(1) + np.exp(-x))


def softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))).astype(F32)  # torch's threshold 20


def causal_conv(padded, kernel):  # [T + C - 1, channels], [channels, C] -> [T, channels]: depthwise, over time
    C = kernel.shape[1]
    T = padded.shape[0] - C + 1
    return sum(padded[j:j + T] * kernel[:, j] for j in range(C))


def gated_delta_net(x, w, cfg, p, tap, K):  # [T, D] -> [T, D]
    T = x.shape[0]
    Hk, Hv, dk, dv, C = (cfg.linear_num_key_heads, cfg.linear_num_value_heads, cfg.linear_key_head_dim,
                         cfg.linear_value_head_dim, cfg.linear_conv_kernel_dim)
    a = p + "linear_attn."
    qkv = tap(p + "qkv", K["linear"](x, w[a + "in_proj_qkv.weight"]))  # [T, 2*Hk*dk + Hv*dv]
    z = K["linear"](x, w[a + "in_proj_z.weight"]).reshape(T, Hv, dv)  # [T, Hv, dv]
    b = K["linear"](x, w[a + "in_proj_b.weight"])  # [T, Hv]
    a_ = K["linear"](x, w[a + "in_proj_a.weight"], w[a + "dt_bias"])  # [T, Hv]: a + dt_bias (exported as the FC's bias)

    # Causal depthwise conv over time (kernel C, the C-1 earlier inputs padded with zeros), then SiLU.
    padded = np.concatenate([np.zeros((C - 1, qkv.shape[1]), F32), qkv])  # [T + C - 1, channels]
    conv = tap(p + "conv", K["silu"](K["conv"](padded, w[a + "conv1d.weight"][:, 0, :])))  # [T, channels]
    tap(p + "conv_state", padded[-C:].T)  # [channels, C]: what decoding continues from

    q, k, v = np.split(conv, [Hk * dk, 2 * Hk * dk], axis=1)
    q, k, v = q.reshape(T, Hk, dk), k.reshape(T, Hk, dk), tap(p + "v", v.reshape(T, Hv, dv))
    q, k = K["l2norm"](q), tap(p + "k", K["l2norm"](k))  # [T, Hk, dk] each
    tap(p + "q", q * F32(dk ** -0.5))  # what the delta rule reads (both forms scale q inside)
    rep = Hv // Hk  # each key head serves `rep` consecutive value heads (repeat_interleave)
    q, k = np.repeat(q, rep, axis=1), np.repeat(k, rep, axis=1)  # [T, Hv, dk] each
    beta = tap(p + "beta", K["sigmoid"](b))  # [T, Hv]
    decay = -np.exp(w[a + "A_log"].astype(np.float64)).astype(F32)  # [Hv], rounded once (NumPy's fp32 exp is not)
    g = tap(p + "g", K["softplus"](a_) * decay)  # [T, Hv]: log decay, <= 0
    core, state = K["delta"](q, k, v, g, beta)  # [T, Hv, dv], [Hv, dk, dv]
    core = tap(p + "core", core)
    tap(p + "recurrent_state", state)  # [Hv, dk, dv]
    gated = K["norm"](core, w[a + "norm.weight"], cfg.rms_norm_eps, plus_one=False) * K["silu"](z)  # [T, Hv, dv]
    gated = tap(p + "gated_norm", gated)
    return K["linear"](gated.reshape(T, Hv * dv), w[a + "out_proj.weight"])  # [T, D]


def rope_inv_freq(cfg):  # -> [R/2]: 1 / theta^(2i/R) in fp32, as transformers computes it
    R = cfg.rotary_dim
    return F32(1) / (F32(cfg.rope_theta) ** (np.arange(0, R, 2, dtype=F32) / F32(R)))


def rope_tables(T, cfg, cos=np.cos, sin=np.sin, inv_freq=None):  # -> cos, sin [T, R]: the first R dims of each head rotate
    inv_freq = rope_inv_freq(cfg) if inv_freq is None else inv_freq  # [R/2]
    angles = np.arange(T, dtype=F32)[:, None] * inv_freq[None, :]  # [T, R/2]
    angles = np.concatenate([angles, angles], axis=1)  # [T, R]
    return cos(angles), sin(angles)


def causal_attention(q, k, v):  # [H, T, Dh] x3 -> [H, T, Dh]: softmax(q k^T / sqrt(Dh)) v, causal
    T, Dh = q.shape[1:]
    scores = (q @ k.transpose(0, 2, 1)) * F32(Dh ** -0.5)  # [H, T, T] (batched BLAS; einsum took 0.1 s a layer)
    scores = np.where(np.tril(np.ones((T, T), bool)), scores, -np.inf)
    p = np.exp(scores - scores.max(axis=-1, keepdims=True))  # [H, T, T]
    p = p / p.sum(axis=-1, keepdims=True)
    return p @ v  # [H, T, Dh]


def attention(x, w, cfg, p, tap, K):  # [T, D] -> [T, D]
    T = x.shape[0]
    H, Hkv, Dh, R = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.rotary_dim
    a = p + "self_attn."
    qg = K["linear"](x, w[a + "q_proj.weight"]).reshape(T, H, 2 * Dh)  # [T, H, 2*Dh]: each head's query, then its gate
    q, gate = qg[..., :Dh], qg[..., Dh:].reshape(T, H * Dh)
    q = K["norm"](q, w[a + "q_norm.weight"], cfg.rms_norm_eps)  # [T, H, Dh]
    k = K["norm"](K["linear"](x, w[a + "k_proj.weight"]).reshape(T, Hkv, Dh), w[a + "k_norm.weight"], cfg.rms_norm_eps)
    v = tap(p + "v", K["linear"](x, w[a + "v_proj.weight"]).reshape(T, Hkv, Dh))  # [T, Hkv, Dh]: the V cache rows
    cos, sin = K["rope_tables"](T, cfg)  # [T, R] each

    def rope(t):  # rotate_half on the first R dims, the rest pass through
        r, rest = t[..., :R], t[..., R:]
        rotated = np.concatenate([-r[..., R // 2:], r[..., :R // 2]], axis=-1)
        return np.concatenate([r * cos[:, None] + rotated * sin[:, None], rest], axis=-1)

    q, k = rope(q), tap(p + "k_rope", rope(k))  # k_rope [T, Hkv, Dh]: the K cache rows
    rep = H // Hkv
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)  # [T, H, Dh] each
    q, k, v = q.transpose(1, 0, 2), k.transpose(1, 0, 2), v.transpose(1, 0, 2)  # [H, T, Dh] each
    out = K["attention"](q, k, v).transpose(1, 0, 2).reshape(T, H * Dh)  # [T, H*Dh]
    out = tap(p + "gated_attn", out * K["sigmoid"](gate))
    return K["linear"](out, w[a + "o_proj.weight"])  # [T, D]


def mlp(x, w, p, K):  # [T, D] -> [T, D]: SwiGLU, down(silu(gate(x)) * up(x))
    m = p + "mlp."
    act = K["silu"](K["linear"](x, w[m + "gate_proj.weight"])) * K["linear"](x, w[m + "up_proj.weight"])  # [T, F]
    return K["linear"](act, w[m + "down_proj.weight"])  # [T, D]


PLAIN = {"linear": lambda x, W, bias=None: x @ W.T if bias is None else x @ W.T + bias,  # [N, in], [out, in] -> [N, out]
         "norm": rms_norm, "l2norm": l2norm, "silu": silu, "sigmoid": sigmoid, "softplus": softplus,
         "rope_tables": rope_tables, "attention": causal_attention,
         "rows": lambda rows: rows,  # the embedding rows looked up, as the graph stores them
         "conv": causal_conv}  # [T + C - 1, channels] (C - 1 rows of history first), [channels, C] -> [T, channels]


def forward(weights, cfg, ids, taps=None, form="chunked", kernels="numba", sim=None):
    """ids [T] -> the last position's logits [V]. form: the delta rule's "chunked" (transformers'
    prefill) or "recurrent" (token by token) form; kernels: its Numba kernel or its NumPy twin;
    sim: replacements for PLAIN's entries that compute as a quantized graph does (litert.py)."""
    K = {**PLAIN, "delta": delta.FORMS[form, kernels], **(sim or {})}
    def tap(name, x):
        if taps is not None:
            taps[name] = x
        return x

    w = weights
    x = K["rows"](w["embed_tokens.weight"][np.asarray(ids)])  # [T, D]
    for i, kind in enumerate(cfg.layer_types):
        p = f"layers.{i}."
        h = tap(p + "input_norm", K["norm"](x, w[p + "input_layernorm.weight"], cfg.rms_norm_eps))
        h = gated_delta_net(h, w, cfg, p, tap, K) if kind == "linear_attention" else attention(h, w, cfg, p, tap, K)
        x = tap(p + "attn_residual", x + tap(p + "mixer", h))
        h = tap(p + "post_norm", K["norm"](x, w[p + "post_attention_layernorm.weight"], cfg.rms_norm_eps))
        x = tap(p + "out", x + tap(p + "mlp", mlp(h, w, p, K)))
    x = tap("norm", K["norm"](x, w["norm.weight"], cfg.rms_norm_eps))
    return tap("logits", K["linear"](x[-1:], weights.head())[0])  # [V]: only the last position's
