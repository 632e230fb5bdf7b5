"""The Qwen3-Embedding forward pass, top to bottom, in transformers' order of operations.

Source: transformers `models/qwen3/modeling_qwen3.py` (Qwen3DecoderLayer, Qwen3Attention,
Qwen3MLP, Qwen3RMSNorm) and sentence-transformers' last-token pooling.
Dimension names (see config.py): B batch, T tokens, N = B*T rows, D hidden, H query heads,
Hkv KV heads, Dh head dim, F MLP width.

Every intermediate can be recorded into a `taps` dict under its tap name
(`layers.{i}.q_norm`, `norm`, ...); in the dict each tap keeps its batch axis, [B, T, ...].
A `force` dict {tap name: [B, T, ...]} replaces an intermediate right after it is made, so the
rest of the forward runs on it: teacher forcing, which the diff uses to measure each stage's
own error on an exported graph's inputs, apart from the error it inherits.
Weights are read by their checkpoint names. Projections are K["linear"](x, W) = x @ W.T with W
stored [out, in]; a quantization simulation (quant.py) swaps in its own product, and an fp16
one adds K["round"], applied to every tap (op output), or to the taps in K["rounded"] only.
An export that computes some RMSNorms otherwise (ONNX Runtime fuses all but one in an int8
graph) names them in K["rms_norm_at"] {tap name: kernel}.
"""

from __future__ import annotations

import numpy as np

from .config import Config
from .errors import Q3RefError
from .kernels import KERNELS, rope_tables

# Per-layer tap names in forward order, with their shapes (one sequence: no B axis).
LAYER_TAPS = {
    "input_norm": "T, D", "q": "T, H, Dh", "k": "T, Hkv, Dh", "v": "T, Hkv, Dh",
    "q_norm": "T, H, Dh", "k_norm": "T, Hkv, Dh", "q_rope": "T, H, Dh", "k_rope": "T, Hkv, Dh",
    "attn": "T, H, Dh", "o_proj": "T, D", "attn_residual": "T, D", "post_norm": "T, D",
    "gate": "T, F", "up": "T, F", "act": "T, F", "down": "T, D", "out": "T, D",
}
TOP_TAPS = {"embed": "T, D", "norm": "T, D", "pooled": "D", "embedding": "dim"}
# A reranker's head in place of `embedding`: the LM head's (yes, no) rows on the pooled row, and
# their softmax, (P(yes), P(no)) (llama.cpp's rank pooling keeps both; the card's score is P(yes)).
RANK_TAPS = {"logits": "2", "score": "2"}


def tap_names(cfg: Config, head="embedding") -> list[str]:
    """All tap names of one forward, in the order they are made. head: "embedding", or "rank"
    for a reranker's logits and score."""
    first, *last = TOP_TAPS  # embed before the layers; norm, pooled, embedding after
    names = [first]
    for i in range(cfg.num_hidden_layers):
        names += [f"layers.{i}.{stage}" for stage in LAYER_TAPS]
    return names + (last if head == "embedding" else [*last[:-1], *RANK_TAPS])


def forward(weights, cfg: Config, input_ids, mask, kernels="numba", taps=None, progress=None,
            positions=None, force=None):
    """input_ids, mask [B, T] -> final-norm hidden states [B, T, D].

    mask marks real tokens (left, right or mixed padding). By default positions count real
    tokens only, so a padded sequence sees the same RoPE angles as it does alone; transformers
    and exported graphs use arange(T) even under left padding (equal in exact arithmetic, since
    RoPE is relative), which `positions` [B, T] reproduces when a tap must match theirs.
    """
    K = KERNELS[kernels] if isinstance(kernels, str) else kernels  # a name, or a dict (quant.py)
    B, T = input_ids.shape
    dtype = weights.dtype

    def tap(name, x):  # record x [N, ...] as [B, T, ...]; hand back the forced value, if any
        # A simulated fp16 runtime rounds every op's output (quant.py), or only those it names
        # (ONNX Runtime runs fp16 graphs in fp32 stretches: formats/onnx/sim.py).
        if "round" in K and ("rounded" not in K or name in K["rounded"]):
            x = K["round"](x)
        if taps is not None:
            taps[name] = x.reshape(B, T, *x.shape[1:])
        if force is not None and name in force:
            return np.asarray(force[name], dtype).reshape(x.shape)
        return x

    pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0) if positions is None else positions  # [B, T]
    tables = K.get("rope_tables", rope_tables)  # a simulation may bring an export's own tables
    cos, sin = tables(np.asarray(pos).reshape(-1), cfg.head_dim, cfg.rope_theta, dtype)  # [N, Dh] each

    x = weights.embed_rows(input_ids.reshape(-1))  # [N, D]
    x = tap("embed", x)
    for i in range(cfg.num_hidden_layers):
        x = decoder_layer(x, weights, cfg, i, cos, sin, mask, K, tap)  # [N, D]
        if progress:
            progress(i + 1)
    x = rms_norm(K, "norm", x, weights["norm.weight"], cfg.rms_norm_eps)  # [N, D]
    x = tap("norm", x)
    return x.reshape(B, T, cfg.hidden_size)


def rms_norm(K, name, x, w, eps):  # K's RMSNorm, or the one K["rms_norm_at"] gives this tap
    return K.get("rms_norm_at", {}).get(name, K["rms_norm"])(x, w, eps)


def decoder_layer(x, w, cfg, i, cos, sin, mask, K, tap):  # [N, D] -> [N, D]
    """Pre-norm block: two residual lines (Qwen3DecoderLayer.forward)."""
    h = x + attention_block(x, w, cfg, f"layers.{i}.", cos, sin, mask, K, tap)  # [N, D]
    h = tap(f"layers.{i}.attn_residual", h)
    out = h + mlp_block(h, w, cfg, f"layers.{i}.", K, tap)  # [N, D]
    return tap(f"layers.{i}.out", out)


def attention_block(x, w, cfg, p, cos, sin, mask, K, tap):  # [N, D] -> [N, D]
    """RMSNorm -> q/k/v -> per-head q_norm/k_norm -> RoPE -> causal GQA attention -> o_proj."""
    N, (B, T) = x.shape[0], mask.shape
    H, Hkv, Dh, eps = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.rms_norm_eps
    a = p + "self_attn."

    n = tap(p + "input_norm", rms_norm(K, p + "input_norm", x, w[p + "input_layernorm.weight"], eps))  # [N, D]
    q = tap(p + "q", K["linear"](n, w[a + "q_proj.weight"]).reshape(N, H, Dh))  # [N, H, Dh]
    k = tap(p + "k", K["linear"](n, w[a + "k_proj.weight"]).reshape(N, Hkv, Dh))  # [N, Hkv, Dh]
    v = tap(p + "v", K["linear"](n, w[a + "v_proj.weight"]).reshape(N, Hkv, Dh))  # [N, Hkv, Dh]

    # QK-norm is Qwen3's addition over Qwen2: an RMSNorm over each head's Dh values with a
    # learned [Dh] weight, applied before RoPE. v has none.
    q = tap(p + "q_norm", rms_norm(K, p + "q_norm", q.reshape(N * H, Dh), w[a + "q_norm.weight"], eps).reshape(N, H, Dh))  # [N, H, Dh]
    k = tap(p + "k_norm", rms_norm(K, p + "k_norm", k.reshape(N * Hkv, Dh), w[a + "k_norm.weight"], eps).reshape(N, Hkv, Dh))  # [N, Hkv, Dh]

    q = tap(p + "q_rope", K["rope"](q, cos, sin))  # [N, H, Dh]
    k = tap(p + "k_rope", K["rope"](k, cos, sin))  # [N, Hkv, Dh]

    o = K["attention"](q.reshape(B, T, H, Dh), k.reshape(B, T, Hkv, Dh),
                       v.reshape(B, T, Hkv, Dh), mask).reshape(N, H, Dh)  # [N, H, Dh]
    o = tap(p + "attn", o)
    return tap(p + "o_proj", K["linear"](o.reshape(N, H * Dh), w[a + "o_proj.weight"]))  # [N, D]


def mlp_block(h, w, cfg, p, K, tap):  # [N, D] -> [N, D]
    """RMSNorm -> SwiGLU: down(silu(gate(n)) * up(n))."""
    m = p + "mlp."
    n = tap(p + "post_norm", rms_norm(K, p + "post_norm", h, w[p + "post_attention_layernorm.weight"], cfg.rms_norm_eps))  # [N, D]
    gate = tap(p + "gate", K["linear"](n, w[m + "gate_proj.weight"]))  # [N, F]
    up = tap(p + "up", K["linear"](n, w[m + "up_proj.weight"]))  # [N, F]
    act = tap(p + "act", K["silu_mul"](gate, up))  # [N, F]
    return tap(p + "down", K["linear"](act, w[m + "down_proj.weight"]))  # [N, D]


def pool_last(hidden, mask):  # [B, T, D], [B, T] -> [B, D]
    """The last real token of each row, wherever the padding is.

    sentence-transformers finds it as attention_mask.flip(1).argmax(1): correct under left,
    right or mixed padding, unlike hidden[:, -1] (left padding only).
    """
    T = mask.shape[1]
    last = T - 1 - np.argmax(mask[:, ::-1], axis=1)  # [B]
    return hidden[np.arange(hidden.shape[0]), last]  # [B, D]


def check_dim(dim, hidden_size):
    """MRL dimensions run from 32 to the hidden size; anything else is an error, not a clip."""
    if dim is None:
        return
    if hidden_size < 32:
        raise Q3RefError(f"--dim: this model's hidden size {hidden_size} is below 32, so it has no "
                         "MRL dimensions (they run 32..hidden size)")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 32 <= dim <= hidden_size:
        raise Q3RefError(f"--dim must be an integer in 32..{hidden_size} (MRL dimensions "
                         f"of this model), got {dim}")


def normalize(x, dim=None):  # [B, D] -> [B, dim]
    """MRL: keep the first `dim` values, then L2-normalize (sentence-transformers' truncate_dim
    alone would leave the truncated vector un-normalized)."""
    check_dim(dim, x.shape[-1])
    if dim is not None:
        x = x[..., :dim]  # [B, dim]
    norm = np.linalg.norm(x, axis=-1, keepdims=True)  # [B, 1]
    return x / np.maximum(norm, 1e-12)  # [B, dim], torch F.normalize's eps


def embed(weights, cfg, input_ids, mask, dim=None, kernels="numba", taps=None, progress=None,
          positions=None, force=None):
    """input_ids, mask [B, T] -> unit embeddings [B, dim]: forward, last-token pool, normalize."""
    check_dim(dim, cfg.hidden_size)
    if not mask.any(axis=1).all():
        raise Q3RefError("every sequence needs at least one real token")
    K = KERNELS[kernels] if isinstance(kernels, str) else kernels
    hidden = forward(weights, cfg, input_ids, mask, K, taps, progress, positions, force)  # [B, T, D]
    pooled = pool_last(hidden, mask)  # [B, D]
    if taps is not None:
        taps["pooled"] = pooled
    if force is not None and "pooled" in force:
        pooled = np.asarray(force["pooled"], pooled.dtype).reshape(pooled.shape)  # [B, D]
    out = K.get("normalize", normalize)(pooled, dim)  # [B, dim]: a simulation may bring the graph's own
    if taps is not None:
        taps["embedding"] = out
    return out


def rank(weights, cfg, input_ids, mask, yes_no, kernels="numba", taps=None, progress=None,
         positions=None, force=None):
    """input_ids, mask [B, T] -> the (yes, no) logits [B, 2]: forward, last-token pool, the head's
    yes and no rows (weights.head_rows). The `score` tap is their softmax, (P(yes), P(no)), as
    llama.cpp's rank pooling computes it; the card's log_softmax over (no, yes) gives the same
    numbers (rerank.py computes it from the logits in float64)."""
    if not mask.any(axis=1).all():
        raise Q3RefError("every sequence needs at least one real token")
    K = KERNELS[kernels] if isinstance(kernels, str) else kernels
    hidden = forward(weights, cfg, input_ids, mask, K, taps, progress, positions, force)  # [B, T, D]

    def tap(name, x):  # the head's taps carry no T axis: [B, ...]
        if taps is not None:
            taps[name] = x
        if force is not None and name in force:
            x = np.asarray(force[name], x.dtype).reshape(x.shape)
        return x

    pooled = tap("pooled", pool_last(hidden, mask))  # [B, D]
    rows = weights.head_rows(list(yes_no))  # [2, D]
    # K["rank_head"]: an export whose LM head reads every position (ONNX int8: one activation scale
    # for the whole sequence), given them all; else the head on the pooled row alone
    head = K.get("rank_head")
    logits = tap("logits", head(hidden, mask, rows) if head else K["linear"](pooled, rows))  # [B, 2]: yes, no
    e = np.exp(logits - logits.max(axis=1, keepdims=True))  # [B, 2]
    tap("score", e / e.sum(axis=1, keepdims=True))  # [B, 2]: P(yes), P(no)
    return logits
