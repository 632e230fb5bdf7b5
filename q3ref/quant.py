"""Quantization as LiteRT recipes do it, on plain arrays. Each function names its rounding and
returns its error.

int8 per channel (litert-torch dynamic_int8 and weight_only_int8): symmetric, narrow range,
one scale per output channel (per row of [out, in]; per vocabulary row for the embedding table):
    scale = max|w| / 127                 in fp32
    q     = clip(rint(w / scale), -127, 127)   rint: round half to even; the division in fp32
Bit-identical to the int8 payload and scales litert-torch 0.10 writes (tests/test_quant.py);
dividing in float64 instead leaves a few values one step off.
"""

from __future__ import annotations

import numpy as np


def int8_per_channel(w):  # [out, in] -> q int8 [out, in], scale fp32 [out], max abs error
    w = np.asarray(w, np.float32)
    scale = np.abs(w).max(axis=1) / np.float32(127)  # [out]
    safe = np.where(scale > 0, scale, np.float32(1))  # an all-zero row quantizes to zeros
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)  # [out, in]
    err = float(np.abs(q.astype(np.float32) * scale[:, None] - w).max(initial=0.0))
    return q, scale, err


def graph_weight_map(g, found, cfg) -> dict[str, tuple[int, list[str]]]:
    """{label: (graph weight tensor, checkpoint names concatenated along rows)} for every
    quantizable weight of a litert-torch graph, using the tap alignment."""
    out = {}
    table = g.embedding_table()
    if table is not None:
        out["embed_tokens"] = (table, ["embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p, a, m = f"layers.{i}.", f"layers.{i}.self_attn.", f"layers.{i}.mlp."
        if p + "q" not in found:
            continue
        qkv = g.producer[g.producer[g.producer[found[p + "q"].tensor].inputs[0]].inputs[0]]  # SLICE <- RESHAPE <- FC
        out[p + "qkv"] = (g.weight_of(qkv), [a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"])
        for stage, name in (("o_proj", a + "o_proj.weight"), ("gate", m + "gate_proj.weight"),
                            ("up", m + "up_proj.weight"), ("down", m + "down_proj.weight")):
            out[p + stage] = (g.weight_of(g.producer[found[p + stage].tensor]), [name])
    return out


def check_graph_int8(g, weights, cfg) -> list[dict]:
    """Compare every int8 weight in the graph with q3ref's int8 quantization of the checkpoint:
    [{"weight", "payload_equal", "scales_equal", "differing_values", "max_scale_rel_diff"}]."""
    from .litert_align import align

    found, _ = align(g, cfg)
    rows = []
    for label, (t, names) in graph_weight_map(g, found, cfg).items():
        if g.type_name(t) != "int8":
            continue
        q_graph, (s_graph, zp, axis) = g.constant(t), g.quantization(t)
        w = np.concatenate([weights[n] for n in names], axis=0)  # [out, in]
        q, s, _ = int8_per_channel(w)
        same_shape = q.shape == q_graph.shape and s.shape == s_graph.shape and axis == 0 and not zp.any()
        rows.append({"weight": label, "payload_equal": bool(same_shape and np.array_equal(q, q_graph)),
                     "scales_equal": bool(same_shape and np.array_equal(s, s_graph)),
                     "differing_values": int((q != q_graph).sum()) if q.shape == q_graph.shape else None,
                     "max_scale_rel_diff": float(np.abs(s / s_graph - 1).max()) if s.shape == s_graph.shape else None})
    return rows


# ------------------------------------------------------------------ run-time activations
def round_half_away(x):
    """C's roundf (TFLite's builtin kernels): halves away from zero, unlike np.rint's to-even.
    Not trunc(x + 0.5): for 0.49999997 that sum already rounds up to 1.0. x - trunc(x) is exact."""
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)


def act_int8_symmetric(x):  # [N, K] fp32 -> integer values [N, K], scale [N]
    """Builtin TFLite hybrid kernels: per row, range = max|x|, inv = 127/range in fp32,
    q = roundf(x * inv) clipped to +-127; dequantized value q * range/127."""
    rng = np.abs(x).max(axis=1)  # [N]
    inv = np.float32(127) / np.where(rng > 0, rng, np.float32(1))  # [N], fp32
    q = np.clip(round_half_away(x * inv[:, None]), -127, 127)  # [N, K]
    return q, rng / np.float32(127)


def act_int8_asymmetric(x):  # [N, K] fp32 -> integer values minus zero point [N, K], scale [N]
    """XNNPACK: per row, scale = (max - min) / 255 over the row with 0 included, a zero point,
    q = clip(rint(x / scale) + zp, -128, 127); dequantized value (q - zp) * scale."""
    lo = np.minimum(x.min(axis=1), 0)  # [N]
    hi = np.maximum(x.max(axis=1), 0)  # [N]
    scale = (hi - lo) / np.float32(255)  # [N]
    safe = np.where(scale > 0, scale, np.float32(1))
    zp = np.clip(np.rint(np.float32(-128) - lo / safe), -128, 127)  # [N]
    q = np.clip(np.rint(x / safe[:, None]) + zp[:, None], -128, 127)  # [N, K]
    return q - zp[:, None], scale


ACT_QUANT = {"builtin": act_int8_symmetric, "xnnpack": act_int8_asymmetric}


class Int8Weights:
    """Per-channel int8 of each weight the simulation multiplies with. With resident weights it
    is made once per array (keyed by the array's identity, which resident weights keep); with
    streaming weights every access brings a fresh array, so nothing is kept."""

    def __init__(self, cache=True, dequantized=False):
        self.cache = {} if cache else None
        self.dequantized = dequantized  # hand out q * scale (fp32) instead of (q, scale)

    def make(self, w):
        q, scale, _ = int8_per_channel(w)
        if self.dequantized:
            return ((q * scale[:, None]).astype(np.float32),)
        return q.astype(np.float64), scale

    def __call__(self, w):
        if self.cache is None:
            return self.make(w)
        key = id(w)
        if key not in self.cache:
            self.cache[key] = (w, *self.make(w))  # w kept so its id stays unique
        return self.cache[key][1:]


def dynamic_int8_linear(runtime, cache=True):
    """x @ W.T as a dynamic_int8 graph computes it: int8 weights per channel, activations
    quantized per row at run time, integer accumulation (exact: float64 holds every int32
    sum of int8 products here), then acc * (activation scale * weight scale) in fp32."""
    quantize_act, weights = ACT_QUANT[runtime], Int8Weights(cache)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        wq, ws = weights(w)  # [out, in] integer-valued, [out]
        xq, xs = quantize_act(np.asarray(x, np.float32))  # [N, in], [N]
        acc = (xq.astype(np.float64) @ wq.T).astype(np.float32)  # [N, out]
        return acc * (xs[:, None] * ws[None, :])  # fp32
    linear.int8_weights = weights
    return linear


def weight_only_int8_linear(cache=True):
    """weight_only_int8: weights dequantized (q * scale, fp32), the product in float."""
    weights = Int8Weights(cache, dequantized=True)

    def linear(x, w):
        (w_deq,) = weights(w)
        return x @ w_deq.T
    linear.int8_weights = weights
    return linear


class Int8EmbeddingWeights:
    """The checkpoint's weights with the embedding table as an int8 graph stores it: one scale
    per vocabulary row (rows are quantized independently, so only the looked-up rows are)."""

    def __init__(self, weights):
        self.inner, self.dtype, self.resident = weights, weights.dtype, weights.resident

    def __getitem__(self, name):
        return self.inner[name]

    def embed_rows(self, ids):
        q, scale, _ = int8_per_channel(self.inner.embed_rows(ids))
        return (q.astype(np.float32) * scale[:, None]).astype(self.dtype)


SIMULATIONS = ("int8", "int8-weight-only", "fp16")
PRECISION_TO_SIM = {"dynamic_int8": "int8", "weight_only_int8": "int8-weight-only", "fp16": "fp16"}


def simulation(weights, kernels, quant, runtime="xnnpack"):
    """(weights, kernel dict) that make model.forward compute like a graph of that recipe."""
    from .kernels import KERNELS

    K = dict(KERNELS[kernels])
    if quant == "int8":
        return Int8EmbeddingWeights(weights), dict(K, linear=dynamic_int8_linear(runtime, weights.resident))
    if quant == "int8-weight-only":
        return Int8EmbeddingWeights(weights), dict(K, linear=weight_only_int8_linear(weights.resident))
    if quant == "fp16":  # fp16 weights, fp32 activations (litert-torch's fp16 recipe)
        return weights, dict(K, linear=lambda x, w: x @ w.astype(np.float16).astype(np.float32).T)
    raise ValueError(f"unknown simulation {quant!r}; choose from {', '.join(SIMULATIONS)}")


FP16_MAX = 65504.0


def fp16_headroom(taps: dict, names) -> dict:
    """Per tap in forward order: max |x| and how many times it fits under fp16's largest value.
    Qwen3's residual stream is known to outgrow fp16 in real weights; the first tap that would
    overflow (or is already non-finite) is where an fp16 runtime goes inf/NaN."""
    rows, first = [], None
    for name in names:
        x = np.asarray(taps[name])
        peak = float(np.abs(x).max(initial=0.0)) if np.isfinite(x).all() else float("inf")
        rows.append({"name": name, "max_abs": peak, "headroom": FP16_MAX / peak if peak > 0 else float("inf")})
        if first is None and peak > FP16_MAX:
            first = name
    tightest = min(rows, key=lambda r: r["headroom"])
    return {"taps": rows, "first_overflow": first, "tightest": tightest["name"], "min_headroom": tightest["headroom"]}
