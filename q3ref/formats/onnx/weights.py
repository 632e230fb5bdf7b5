"""Every quantized weight of an ONNX Runtime-quantized graph against q3ref's quantization of the
checkpoint, as ONNX Runtime's quantizers compute it, bit for bit: what `inspect --weights` reports.

- quantize_dynamic (onnxruntime/quantization/quant_utils.py, compute_scale_zp and
  quantize_nparray): one scale per tensor. INT8 weights are symmetric: scale = 2 max|w| / 254 in
  float64, stored as float32, zero point 0. UINT8 ones are not: [min(w, 0), max(w, 0)] over 255,
  zero point = round(-min / scale) from the float64 scale. Then q = round(w / scale) + zero point
  with the division in float32, np.round (half to even), clipped to the type's full range. The
  MatMul's B is W transposed ([in, out]); the embedding's Gather table is quantized the same way.
- MatMulNBitsQuantizer (2, 4 or 8 bits, blocks along the input, symmetric or with zero points;
  MLAS' BlockwiseQuantizer in C++, mlas_blocks; q4f16: the same, then the scales rounded to fp16
  by the fp16 conversion). The onnx-community q4 is 4 bits, blocks of 32, symmetric: per block
  d = (the block's max or min, whichever is larger in magnitude; the min on a tie) / -8 in fp32,
  q = clamp(roundf(w * (1/d) + 8)). The quantizer's own default is asymmetric, and some
  published "int8" files are its 8-bit blocks. K is padded to a whole block, and the padding is
  not compared. onnxruntime-genai's builder fuses q, k and v into one qkv_proj: compared with the
  three stacked. Its quantize_gather (NumPy, not MLAS) writes an embedding table as
  GatherBlockQuantized 4-bit blocks along the hidden dimension: gather_blocks.
- MatMulBnb4Quantizer (NF4, blocks of 64 over W [out, in] flattened; blockwise_quant_block_bnb4.h):
  absmax per block in fp32, x = w * (1 / absmax) in fp32, the code by NF4's 15 midpoints (a value
  on a midpoint takes the lower code), two codes a byte, the first in the high nibble.
- fp16 (onnxconverter-common): each weight rounded to fp16 after clamping magnitudes into
  [1e-7, 1e4] (zeros stay zeros).
"""

from __future__ import annotations

import re

import numpy as np

from .graph import INTEGER_MATMULS

F32 = np.float32
# the exporter's (self_attn) and the genai builder's (attn, with q/k/v fused into qkv_proj) MatMul names
MATMUL = re.compile(r"/model/layers\.(\d+)/(self_attn|attn|mlp)/(\w+_proj)/MatMul")
RANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def ort_per_tensor(w, dtype):
    """quantize_dynamic's weight quantization: w fp32 -> q (integer-valued fp32), scale (fp32), zero point."""
    w = np.asarray(w, F32)
    scale, zp = ort_scale(w.min(), w.max(), dtype)
    return ort_quantize(w, scale, zp, dtype), scale, zp


def ort_per_channel(w, dtype):
    """quantize_dynamic(per_channel=True)'s weights: ort_per_tensor's recipe on each row of W [out, in]
    (each column of the graph's B = W^T) -> q [out, in] (integer-valued fp32), scale [out], zero point [out]."""
    w = np.asarray(w, F32)
    scale, zp = ort_scale(w.min(axis=1), w.max(axis=1), dtype)  # [out] each
    return ort_quantize(w, scale[:, None], zp[:, None], dtype), scale, zp


def ort_scale(wmin, wmax, dtype):
    """The scale (fp32) and zero point quantize_dynamic derives from a tensor's min and max; given
    arrays (one min and max per channel), the arrays of them."""
    rmin, rmax = np.minimum(np.asarray(wmin, F32), F32(0)), np.maximum(np.asarray(wmax, F32), F32(0))
    if dtype == "int8":
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        rmin, rmax, qmin, qmax = -absmax, absmax, -127, 127
    else:
        qmin, qmax = 0, 255
    scale64 = (rmax.astype(np.float64) - rmin.astype(np.float64)) / np.float64(qmax - qmin)
    flat = scale64 < np.finfo(F32).tiny  # an all-zero tensor: scale 1
    with np.errstate(divide="ignore", invalid="ignore"):
        zp = np.where(flat | (dtype == "int8"), 0, np.round(qmin - rmin / scale64)).astype(np.int64)
    scale = np.where(flat, F32(1), scale64.astype(F32))
    return (F32(scale), int(zp)) if scale.ndim == 0 else (scale, zp)


def ort_quantize(w, scale, zp, dtype):  # fp32 [...] -> integer-valued fp32 [...]; scale, zp scalars or broadcasting
    # In place, integer-valued fp32, np.rint (np.round's half-to-even, 4x faster here): a 0.6B's 440M
    # weights took 5 s of a diff with np.round and int64 copies.
    q = np.asarray(w, F32) / scale
    np.rint(q, out=q)
    if np.any(zp):
        q += np.asarray(zp, F32)
    np.clip(q, *RANGE[dtype], out=q)
    return q


def mlas_blocks(w, block, bits=4, symmetric=True):
    """MatMulNBits' blocks (MLAS' BlockwiseQuantizer, unsigned levels): w [out, in] ->
    levels [out, blocks, block] (0 .. 2^bits - 1), d [out, blocks] fp32, zero points [out, blocks].
    Symmetric: d = (the block's max or min, whichever is larger in magnitude; the min on a tie)
    / -2^(bits-1), zero point 2^(bits-1). Asymmetric: [min(lo, 0), max(hi, 0)] over 2^bits - 1,
    zero point roundf(-min / d) clamped. Then q = clamp(roundf(w * (1/d) + zero point)): C's
    roundf, half away from zero."""
    out_dim, in_dim = w.shape
    padded = -(-in_dim // block) * block
    b = np.pad(np.asarray(w, F32), ((0, 0), (0, padded - in_dim))).reshape(out_dim, -1, block)
    lo, hi = b.min(axis=2), b.max(axis=2)
    top = F32(2 ** bits - 1)
    if symmetric:
        d = np.where(np.abs(hi) > np.abs(lo), hi, lo) / F32(-2 ** (bits - 1))
        zp = np.full(d.shape, 2 ** (bits - 1), np.int64)
    else:
        lo, hi = np.minimum(lo, F32(0)), np.maximum(hi, F32(0))
        d = (hi - lo) / top
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(d != 0, F32(0) - lo / d, lo)  # >= 0 but for a zero d (then lo = 0)
        zp = np.clip(roundf(z), 0, top).astype(np.int64)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0))
    return np.clip(roundf(b * inv[..., None] + zp[..., None].astype(F32)), 0, top).astype(np.int64), d, zp


def gather_blocks(w, block, symmetric=True):
    """MatMulNBitsQuantizer's quantize_gather (NumPy, not MLAS): the embedding table w [V, D] in
    4-bit blocks along D, per row -> levels [V, D] (signed -8..7, or 0..15 with zero points),
    scales [V, blocks], zero points [V, blocks] (None when symmetric). Symmetric: scale =
    (max or min, whichever is larger in magnitude; the min on a tie) / -8, q = round(w / scale),
    a true division and half to even, clipped; with zero points: [min(lo, 0), max(hi, 0)] / 15.
    A partial last block is just shorter (no padding)."""
    w = np.asarray(w, F32)
    V, D = w.shape
    q, scales, zps = np.zeros((V, D), np.int64), [], []
    for b0 in range(0, D, block):
        x = w[:, b0:b0 + block]
        lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            if symmetric:
                scale = np.where(np.abs(hi) > np.abs(lo), hi, lo) / F32(-8)
                q[:, b0:b0 + block] = np.where(scale == 0, 0, x / scale).round().clip(-8, 7)
            else:
                lo, hi = np.minimum(lo, F32(0)), np.maximum(hi, F32(0))
                scale = (hi - lo) / F32(15)
                zp = np.where(scale == 0, 8, -lo / scale).round().clip(0, 15)
                q[:, b0:b0 + block] = np.where(scale == 0, 8, x / scale + zp).round().clip(0, 15)
                zps.append(zp[:, 0].astype(np.int64))
        scales.append(scale[:, 0])
    return q, np.stack(scales, axis=1), (np.stack(zps, axis=1) if zps else None)


def roundf(x):  # C's roundf (half away from zero), fp32 -> fp32; np.round is half to even
    a = np.abs(x)
    f = np.floor(a)  # a - f is exact; floor(a + 0.5) is not: 0.5 - 2^-25 + 0.5 rounds up to 1
    return np.copysign(f + (a - f >= F32(0.5)), x)


# NF4's code boundaries: the midpoints between its 16 levels, as ORT's QuantizeOneNF4 compares
# (x > boundary: the upper code), ascending.
NF4_BOUNDS = np.array([-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
                       -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
                       0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
                       0.5016634166240692, 0.6427869200706482, 0.8614784181118011], F32)


# NF4's 16 levels (ORT's nf4_qaunt_map, blockwise_quant_block_bnb4.h): MatMulBnb4 dequantizes a
# code as level * absmax in fp32.
NF4_LEVELS = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                       -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                       0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                       0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], F32)


def nf4_blocks(w, block):
    """MatMulBnb4's NF4: w [out, in] -> codes [out * in] (0..15), absmax [blocks] fp32."""
    flat = np.asarray(w, F32).ravel()
    blocks = -(-flat.size // block)
    b = np.pad(flat, (0, blocks * block - flat.size)).reshape(blocks, block)
    absmax = np.abs(b).max(axis=1)  # [blocks]
    with np.errstate(divide="ignore"):
        inv = np.where(absmax != 0, F32(1) / absmax, F32(0))
    x = b * inv[:, None]  # fp32, as the kernel's multiply
    codes = np.searchsorted(NF4_BOUNDS, x, side="left")  # number of boundaries strictly below x
    return codes.ravel()[:flat.size].astype(np.int64), absmax


def fp16_clamp(w):
    """onnxconverter-common's convert_np_to_float16 before its cast: |w| clamped into [1e-7, 1e4]."""
    w = np.asarray(w, F32)
    a = np.abs(w)
    w = np.where((a > 0) & (a < 1e-7), np.sign(w) * F32(1e-7), w)
    return np.where(np.isfinite(w) & (a > 1e4), np.sign(w) * F32(1e4), w)


def fp16_clamped(w):
    """onnxconverter-common's convert_np_to_float16: |w| clamped into [1e-7, 1e4], then fp16."""
    return fp16_clamp(w).astype(np.float16)


def checkpoint_name(node_name):
    if node_name.startswith("/lm_head/"):  # a reranker's CausalLM graph
        return "lm_head.weight"
    m = MATMUL.match(node_name)
    return f"layers.{m[1]}.{'self_attn' if m[2] == 'attn' else m[2]}.{m[3]}.weight" if m else None


def checkpoint_weight(weights, name):  # [out, in]; the builder's qkv_proj is q, k and v stacked along out
    if name == "lm_head.weight":  # lm_head.weight, or embed_tokens when tied (0.6B)
        return weights.head_rows(np.arange(weights.cfg.vocab_size))
    if ".qkv_proj." in name:
        return np.concatenate([weights[name.replace("qkv_proj", x)] for x in ("q_proj", "k_proj", "v_proj")])
    return weights[name]


def unpacked(packed, bits):  # uint8 [...] -> int64 [..., 8 / bits]: MatMulNBits' packing, low bits first
    packed = np.asarray(packed).astype(np.int64)
    return np.stack([(packed >> (bits * j)) & (2 ** bits - 1) for j in range(8 // bits)], axis=-1)


def integer_matmul_weight_params(node):
    """(the weight's scale, its zero point) tensor names of an integer MatMul node: quantize_dynamic
    names them after the weight (MatMulInteger has no scale input); the fused ops take them as inputs."""
    if node.op_type == "MatMulIntegerToFloat":  # A, B, a_scale, b_scale, a_zero_point, b_zero_point
        return node.input[3], (node.input[5] if len(node.input) > 5 else "")
    if node.op_type == "DynamicQuantizeMatMul":  # A, B, b_scale, b_zero_point, bias
        return node.input[2], (node.input[3] if len(node.input) > 3 else "")
    base = node.input[1].removesuffix("_quantized")
    return base + "_scale", base + "_zero_point"


def row(name, dtype, q, q_graph, s, s_graph):
    s = np.asarray(s).astype(np.asarray(s_graph).dtype)  # q4f16 stores the scales in fp16, rounded from fp32
    same = q.shape == q_graph.shape
    payload, scales = bool(same and np.array_equal(q, q_graph)), bool(np.shape(s) == np.shape(s_graph) and np.array_equal(s, s_graph))
    return {"weight": name, "dtype": dtype, "payload_equal": payload, "scales_equal": scales, "equal": payload and scales,
            "differing_values": int((q != q_graph).sum()) if same else None,
            "max_scale_rel_diff": float(np.max(np.abs(np.asarray(s_graph) / np.asarray(s) - 1)))
            if np.shape(s) == np.shape(s_graph) else None}


def check_graph_weights(g, checkpoint) -> list[dict]:
    """[{"weight", "dtype", "payload_equal", "scales_equal", "equal", "differing_values", "max_scale_rel_diff"}]
    for every MatMulInteger, MatMulNBits and quantized embedding table of the graph (the genai
    builder's fused qkv_proj against q, k and v stacked)."""
    from onnx import TensorProto

    kinds = {TensorProto.INT8: "int8", TensorProto.UINT8: "uint8"}
    rows = []
    for node in g.model.graph.node:
        name = checkpoint_name(node.name)
        fp16_matmul = node.op_type == "MatMul" and g.initializer_type(node.input[1]) == TensorProto.FLOAT16
        checked = node.op_type in INTEGER_MATMULS + ("MatMulNBits", "MatMulBnb4") or fp16_matmul
        w = checkpoint_weight(checkpoint, name) if name and checked else None  # [out, in]; fp32 MatMuls not read
        if node.op_type in INTEGER_MATMULS and name:
            dtype = kinds.get(g.initializer_type(node.input[1]))
            if dtype is None:
                continue
            scale_name, zp_name = integer_matmul_weight_params(node)
            s_graph = g.initializer(scale_name)
            if s_graph.size > 1:  # per_channel=True: a scale per column of B, a row of W
                q, s, zp = ort_per_channel(w, dtype)
                q = q.T  # B = W^T: [in, out]
            else:
                q, s, zp = ort_per_tensor(w.T, dtype)  # B = W^T: [in, out]
            zp_graph = g.initializer(zp_name) if zp_name in g.inits else np.zeros(1, np.int64)  # absent: 0
            same_zp = np.array_equal(np.asarray(zp_graph).astype(np.int64).ravel(), np.ravel(zp))
            r = row(name, dtype + (" per channel" if s_graph.size > 1 else ""), q,
                    g.initializer(node.input[1]).astype(np.int64), s, s_graph.reshape(np.shape(s)))
            r["scales_equal"] = r["scales_equal"] and same_zp
            rows.append(r)
        elif node.op_type == "MatMulNBits" and name:
            attrs = {a.name: a.i for a in node.attribute}
            bits, symmetric = attrs.get("bits", 4), len(node.input) < 4 or not node.input[3]
            if bits not in (2, 4, 8):
                continue
            levels, d, zp = mlas_blocks(w, attrs["block_size"], bits, symmetric)
            got = unpacked(g.initializer(node.input[1]), bits).reshape(levels.shape)  # [out, blocks, block]
            K = w.shape[1]
            keep = np.arange(levels.shape[1] * levels.shape[2]).reshape(levels.shape[1:]) < K  # real values only
            kind = "int4" if (bits, symmetric) == (4, True) else f"int{bits} blocks" + ("" if symmetric else ", zero points")
            r = row(name, kind, levels[:, keep], got[:, keep], d,
                    g.initializer(node.input[2]).reshape(d.shape))
            if not symmetric:  # zero points packed like the levels, one row of blocks per output
                zp_graph = unpacked(g.initializer(node.input[3]), bits).reshape(d.shape[0], -1)[:, :d.shape[1]]
                r["scales_equal"] = r["scales_equal"] and np.array_equal(zp_graph, zp)
            rows.append(r)
        elif node.op_type == "MatMulBnb4" and name:
            attrs = {a.name: a.i for a in node.attribute}
            if attrs.get("quant_type") != 1:  # 0: FP4, not made by the onnx-community recipe
                continue
            codes, absmax = nf4_blocks(w, attrs["block_size"])
            packed = g.initializer(node.input[1]).astype(np.int64)
            got = np.stack([packed >> 4, packed & 15], axis=-1).ravel()[:codes.size]
            rows.append(row(name, "nf4", codes, got, absmax, g.initializer(node.input[2]).ravel()))
        elif fp16_matmul and name:
            want = fp16_clamped(w.T)  # B = W^T
            have = g.initializer(node.input[1])
            rows.append(row(name, "fp16", want.view(np.uint16), have.view(np.uint16), F32(1), F32(1)))
    fp16_tables = [n.input[0] for n in g.model.graph.node if n.op_type == "Gather" and n.input[0] in g.inits
                   and g.initializer_type(n.input[0]) == TensorProto.FLOAT16 and len(g.inits[n.input[0]].dims) == 2]
    for t in fp16_tables[:1]:  # the fp16 graph's embedding table
        want = fp16_clamped(checkpoint["embed_tokens.weight"])
        rows.append(row("embed_tokens.weight", "fp16", want.view(np.uint16), g.initializer(t).view(np.uint16), F32(1), F32(1)))
    gather = g.gather_blocks()
    node = next((n for n in g.model.graph.node if n.op_type == "GatherBlockQuantized"), None)
    if gather is not None and node.input[0] in g.inits:
        q, scale, zp = gather_blocks(checkpoint["embed_tokens.weight"], *gather)
        r = row("embed_tokens.weight", "int4 blocks" + ("" if gather[1] else ", zero points"), q,
                g.initializer(node.input[0]).astype(np.int64).reshape(q.shape), scale, g.initializer(node.input[2]))
        if zp is not None:
            zp_graph = g.initializer(node.input[3]).astype(np.int64).reshape(q.shape[0], -1)[:, :zp.shape[1]]
            r["scales_equal"] = r["scales_equal"] and np.array_equal(zp_graph, zp)
        rows.append(r)
    table = g.quantized_embedding()
    if table is not None:
        dtype = kinds.get(g.initializer_type(table))
        base = table.removesuffix("_quantized")
        if dtype:
            q, s, zp = ort_per_tensor(checkpoint["embed_tokens.weight"], dtype)
            r = row("embed_tokens.weight", dtype, q, g.initializer(table).astype(np.int64), s, g.initializer(base + "_scale"))
            r["scales_equal"] = r["scales_equal"] and int(np.asarray(g.initializer(base + "_zero_point")).ravel()[0]) == zp
            rows.append(r)
    return rows
