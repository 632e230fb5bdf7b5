"""Every quantized weight of an ONNX Runtime-quantized graph against q3ref's quantization of the
checkpoint, as ONNX Runtime's quantizers compute it, bit for bit: what `inspect --weights` reports.

- quantize_dynamic (onnxruntime/quantization/quant_utils.py, compute_scale_zp and
  quantize_nparray): one scale per tensor. INT8 weights are symmetric: scale = 2 max|w| / 254 in
  float64, stored as float32, zero point 0. UINT8 ones are not: [min(w, 0), max(w, 0)] over 255,
  zero point = round(-min / scale) from the float64 scale. Then q = round(w / scale) + zero point
  with the division in float32, np.round (half to even), clipped to the type's full range. The
  MatMul's B is W transposed ([in, out]); the embedding's Gather table is quantized the same way.
- MatMulNBitsQuantizer (4 bits, blocks of 32 along the input, symmetric; MLAS in C++; q4f16: the
  same, then the scales rounded to fp16 by the fp16 conversion): per block
  d = (the block's max or min, whichever is larger in magnitude; the min on a tie) / -8 in fp32,
  q = min(15, trunc(w * (1/d) + 8.5)): the Q4_0 formula but for the tie, which bf16 weights
  meet often. K is padded to a whole block, and the padding is not compared.
"""

from __future__ import annotations

import re

import numpy as np

F32 = np.float32
MATMUL = re.compile(r"/model/layers\.(\d+)/(self_attn|mlp)/(\w+_proj)/MatMul")
RANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def ort_per_tensor(w, dtype):
    """quantize_dynamic's weight quantization: w fp32 -> q, scale (fp32), zero point."""
    w = np.asarray(w, F32)
    rmin, rmax = np.minimum(w.min(), F32(0)), np.maximum(w.max(), F32(0))
    if dtype == "int8":
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        rmin, rmax, qmin, qmax = -absmax, absmax, -127, 127
    else:
        qmin, qmax = 0, 255
    scale64 = (np.float64(rmax) - np.float64(rmin)) / np.float64(qmax - qmin)
    if scale64 < np.finfo(F32).tiny:
        scale, zp = F32(1), 0
    else:
        zp = 0 if dtype == "int8" else int(np.round(qmin - rmin / scale64))
        scale = F32(scale64)
    q = np.clip(np.round(w / scale) + zp, *RANGE[dtype])
    return q.astype(np.int64), scale, zp


def mlas_q4(w, block):
    """MatMulNBits' symmetric 4-bit blocks: w [out, in] -> levels [out, blocks, block] (0..15), d [out, blocks]."""
    out_dim, in_dim = w.shape
    padded = -(-in_dim // block) * block
    b = np.pad(np.asarray(w, F32), ((0, 0), (0, padded - in_dim))).reshape(out_dim, -1, block)
    lo, hi = b.min(axis=2), b.max(axis=2)
    d = np.where(np.abs(hi) > np.abs(lo), hi, lo) / F32(-8)  # a tie in |.| takes the negative end
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0))
    return np.minimum(15, np.trunc(b * inv[..., None] + F32(8.5))).astype(np.int64), d


def checkpoint_name(node_name):
    m = MATMUL.match(node_name)
    return f"layers.{m[1]}.{m[2]}.{m[3]}.weight" if m else None


def row(name, dtype, q, q_graph, s, s_graph):
    s = np.asarray(s).astype(np.asarray(s_graph).dtype)  # q4f16 stores the scales in fp16, rounded from fp32
    same = q.shape == q_graph.shape
    return {"weight": name, "dtype": dtype, "payload_equal": bool(same and np.array_equal(q, q_graph)),
            "scales_equal": bool(np.shape(s) == np.shape(s_graph) and np.array_equal(s, s_graph)),
            "differing_values": int((q != q_graph).sum()) if same else None,
            "max_scale_rel_diff": float(np.max(np.abs(np.asarray(s_graph) / np.asarray(s) - 1)))
            if np.shape(s) == np.shape(s_graph) else None}


def check_graph_weights(g, weights) -> list[dict]:
    """[{"weight", "dtype", "payload_equal", "scales_equal", "differing_values", "max_scale_rel_diff"}]
    for every MatMulInteger, MatMulNBits and quantized embedding table of the graph."""
    from onnx import TensorProto

    kinds = {TensorProto.INT8: "int8", TensorProto.UINT8: "uint8"}
    rows = []
    for node in g.model.graph.node:
        name = checkpoint_name(node.name)
        if node.op_type == "MatMulInteger" and name:
            base = node.input[1].removesuffix("_quantized")
            dtype = kinds.get(g.initializer_type(node.input[1]))
            if dtype is None:
                continue
            q, s, zp = ort_per_tensor(weights[name].T, dtype)  # B = W^T: [in, out]
            zp_graph = g.initializer(base + "_zero_point")
            same_zp = int(np.asarray(zp_graph).ravel()[0]) == zp
            r = row(name, dtype, q, g.initializer(node.input[1]).astype(np.int64), s, g.initializer(base + "_scale"))
            r["scales_equal"] = r["scales_equal"] and same_zp
            rows.append(r)
        elif node.op_type == "MatMulNBits" and name:
            attrs = {a.name: a.i for a in node.attribute}
            if attrs.get("bits") != 4 or len(node.input) > 3:  # a zero-point input: the asymmetric recipe
                continue
            levels, d = mlas_q4(weights[name], attrs["block_size"])
            packed = g.initializer(node.input[1])  # [out, blocks, block / 2] uint8
            got = np.stack([packed & 15, packed >> 4], axis=-1).reshape(levels.shape).astype(np.int64)
            K = weights[name].shape[1]
            keep = np.arange(levels.shape[1] * levels.shape[2]).reshape(levels.shape[1:]) < K  # real values only
            rows.append(row(name, "int4", levels[:, keep], got[:, keep], d,
                            g.initializer(node.input[2]).reshape(d.shape)))
    table = g.quantized_embedding()
    if table is not None:
        dtype = kinds.get(g.initializer_type(table))
        base = table.removesuffix("_quantized")
        if dtype:
            q, s, zp = ort_per_tensor(weights["embed_tokens.weight"], dtype)
            r = row("embed_tokens.weight", dtype, q, g.initializer(table).astype(np.int64), s, g.initializer(base + "_scale"))
            r["scales_equal"] = r["scales_equal"] and int(np.asarray(g.initializer(base + "_zero_point")).ravel()[0]) == zp
            rows.append(r)
    return rows
