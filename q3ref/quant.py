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
