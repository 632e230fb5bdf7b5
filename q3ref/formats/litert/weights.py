"""Every quantized weight of a litert-torch graph against q3ref's quantization of the checkpoint
(int8 per channel, int4 per block), bit for bit: what `inspect --weights` reports."""

from __future__ import annotations

import numpy as np

from ...quant import int4_blockwise, int8_per_channel
from .align import align


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


def check_graph_weights(g, weights, cfg) -> list[dict]:
    """Compare every quantized weight in the graph (int8 per channel, int4 blockwise) with
    q3ref's quantization of the checkpoint: [{"weight", "dtype", "payload_equal", "scales_equal",
    "equal", "differing_values", "max_scale_rel_diff"}]."""
    found, _ = align(g, cfg)
    rows = []
    for label, (t, names) in graph_weight_map(g, found, cfg).items():
        dtype = g.type_name(t)
        w = np.concatenate([weights[n] for n in names], axis=0)  # [out, in]
        if dtype == "int8":
            (s_graph, zp, axis), q_graph = g.quantization(t), g.constant(t)
            q, s, _ = int8_per_channel(w)
            layout_ok = axis == 0 and not zp.any()
        elif dtype == "int4" and g.blockwise(t) is not None:
            (s_graph, block), q_graph = g.blockwise(t), g.constant(t)
            q, s, _ = int4_blockwise(w, block)
            layout_ok = True
        else:
            continue
        same_shape = layout_ok and q.shape == q_graph.shape and s.shape == s_graph.shape
        payload, scales = bool(same_shape and np.array_equal(q, q_graph)), bool(same_shape and np.array_equal(s, s_graph))
        rows.append({"weight": label, "dtype": dtype, "payload_equal": payload, "scales_equal": scales,
                     "equal": payload and scales,
                     "differing_values": int((q != q_graph).sum()) if q.shape == q_graph.shape else None,
                     "max_scale_rel_diff": float(np.abs(s / s_graph - 1).max()) if s.shape == s_graph.shape else None})
    return rows
