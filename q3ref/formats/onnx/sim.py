"""What ONNX Runtime computes for its quantized graphs, as model.forward kernels.

int8 / uint8 (quantize_dynamic, MatMulConstBOnly): the weight quantized per tensor as
weights.py does (int8 symmetric or uint8 with a zero point); the activation by
DynamicQuantizeLinear, one scale for the whole tensor (all tokens of the sequence):
    min, max = min(0, min x), max(0, max x);  scale = (max - min) / 255 in fp32
    zero point = clip(rint(-min / scale), 0, 255);  q = clip(rint(x / scale) + zero point, 0, 255)
(checked against the graph's own DynamicQuantizeLinear outputs); MatMulInteger's exact int32 sum
of (q_x - zp_x)(q_w - zp_w), cast to float, times (scale_x * scale_w). The embedding table is a
uint8 Gather, dequantized row by row.
q4 / q8 (MatMulNBits, 4- or 8-bit blocks, with or without zero points) and bnb4 (MatMulBnb4, NF4
blocks): the weight dequantized block by block ((level - zero point) * d; level * absmax for NF4),
the product in fp32. MatMulNBits with accuracy_level 4 runs MLAS' CompInt8 where MLAS has it
for the bits, block and CPU (probe.py finds out): the activations quantized to int8 per block,
integer dot products per block, scaled and summed in fp32 (int8_nbits_linear).
fp16 and q4f16 (onnxconverter-common's fp16): the weights in fp16 (clamped) or MatMulNBits with
fp16 scales. Every op is typed fp16, but ONNX Runtime's CPU provider has no fp16 kernel for most
(Pow, ReduceMean, Sqrt, Softmax, MatMul...): its InsertCastTransformer runs them in fp32 and
drops the casts between neighbours, so the graph runs in fp32 stretches and rounds to fp16 only
where an op with an fp16 kernel reads a value (run.fp16_rounded reads where from the session's
optimized model: in the stress graphs after q, k, v, q_norm, k_norm, k_rope and attention's PV
product, not on the residual stream or in the MLP). The simulation rounds those taps only, and
keeps the graph's fp16 constants: RMSNorm's weight and eps, RoPE's inv_freq and its cos/sin
tables, attention's scale.
The float ops (RMSNorm's ReduceMean, RoPE's Cos and Sin, attention's MatMul and Softmax, SiLU's
Sigmoid) are ONNX Runtime's own, bit for bit (mlas.py, ort_float_kernels), in a graph of the
unfused ops torch exports, where the probe finds each computed so on this CPU; an op that differs
keeps q3ref's kernel (~1 ulp). int8 and uint8 graphs then land on every tap, and 4-bit
MatMulNBits and MatMulBnb4 graphs too where the probe finds their fp32 product's order (one FMA
chain over K at 4 bits; MLAS' SGEMM split over the threads at 2 and 8 bits and in MatMulBnb4:
dequantized_linear's `product`), and fp16 graphs too: their fp32 stretches run the same float ops
(Softmax as its function body, which ORT inlines for want of an fp16 kernel: run.inlined) and
their MatMuls by a weight cast from fp16 on every run sum as MlasGemmBatch does. The genai
builder's fused ops keep q3ref's float kernels, and a product whose order is not found sums by
BLAS (~1e-7).
"""

from __future__ import annotations

import numba
import numpy as np

from ...kernels import KERNELS, rope_inv_freq, rope_tables as kernel_rope_tables
from ...quant import QuantizedEmbedding, QuantizedWeights, exact_int_matmul, to_fp16, to_fp16_numba_into
from .graph import NBits
from .weights import (NF4_BOUNDS, NF4_LEVELS, RANGE, fp16_clamp, gather_blocks, mlas_blocks, nf4_blocks,
                      ort_per_channel, ort_per_tensor, ort_quantize, ort_scale)

F32 = np.float32
W_MAX = {"uint8": 255, "int8": 128}  # the centered weights' largest |w - zp| (int8: symmetric, but clipped at -128)


def dynamic_quantize_linear(x):  # [N, K] -> (q - zero point) integer-valued fp32 [N, K], scale
    x = np.asarray(x, F32)
    lo, hi = np.minimum(F32(0), x.min()), np.maximum(F32(0), x.max())
    scale = (hi - lo) / F32(255)
    if scale == 0:
        return np.zeros_like(x), F32(0)
    zp = np.clip(np.rint(F32(0) - lo / scale), 0, 255)
    return np.clip(np.rint(x / scale) + zp, 0, 255) - zp, scale


# The graph stores B = W^T; per-tensor quantization is elementwise, so W itself gives its transpose.
def centered_per_tensor(w, dtype):  # [out, in] -> (q - zp) integer-valued fp32 [out, in], scale
    q, scale, zp = ort_per_tensor(w, dtype)
    return (q - F32(zp)) if zp else q, scale


@numba.njit(cache=True, nogil=True)
def centered_per_tensor_numba_into(w, scale, zp, qmin, qmax, out):
    """centered_per_tensor's rounding in one pass, w [n] -> out [n]; its twin makes three fresh
    arrays per weight (0.9 s of each int8 pass over a 0.6B's weights, AMD EPYC)."""
    z, lo, hi = np.float32(zp), np.float32(qmin), np.float32(qmax)
    for i in range(w.size):
        out[i] = min(max(np.rint(w[i] / scale) + z, lo), hi) - z


def centered_per_tensor_numba(w, dtype):  # [out, in] -> (q - zp) integer-valued fp32 [out, in], scale
    w = np.ascontiguousarray(w, F32)
    scale, zp = ort_scale(w.min(), w.max(), dtype)
    out = np.empty_like(w)
    centered_per_tensor_numba_into(w.reshape(-1), scale, zp, *RANGE[dtype], out.reshape(-1))
    return out, scale


CENTERED_PER_TENSOR = {"numba": centered_per_tensor_numba, "numpy": centered_per_tensor}


def centered_per_channel(w, dtype):  # [out, in] -> (q - zp) integer-valued fp32 [out, in], scale [out]
    q, scale, zp = ort_per_channel(w, dtype)
    return q - zp[:, None].astype(F32), scale


def matmul_integer_linear(dtype, kernels, cache=True, per_channel=False):
    """MatMulInteger: exact integer sums, then times the activation's scale and the weight's (one,
    or one per output column: quantize_dynamic(per_channel=True), NumPy only)."""
    quantize = centered_per_channel if per_channel else CENTERED_PER_TENSOR[kernels]
    weights = QuantizedWeights(lambda w: quantize(w, dtype), cache)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        wq, ws = weights(w)
        xq, xs = dynamic_quantize_linear(x)
        acc = exact_int_matmul(xq, wq, W_MAX[dtype]).astype(F32, copy=False)
        return acc * (xs * ws)
    linear.quantized = weights
    return linear


def nbits_dequantized(w, nb, fp16_scales=False, centered=False):  # [out, in] -> [out, in] fp32
    """MatMulNBits' blocks dequantized, (level - zero point) * d, as MLAS' dequantization; nb:
    graph.NBits (bits, block, symmetric). fp16_scales: q4f16, whose levels come from the fp32
    scale and whose stored scale is then rounded to fp16 by the fp16 conversion (weights.py).
    centered: (level - zero point) only, with d [out, blocks] beside it (the CompInt8 product)."""
    levels, d, zp = mlas_blocks(w, nb.block, nb.bits, nb.symmetric)  # [out, blocks, block], [out, blocks] x 2
    d = to_fp16(d) if fp16_scales else d
    c = (levels - zp[..., None]).astype(F32)  # [out, blocks, block]
    full = (c if centered else c * d[..., None]).reshape(w.shape[0], -1)[:, :w.shape[1]]  # [out, in]
    return (full, d) if centered else full


@numba.njit(cache=True, nogil=True)
def nbits_dequantized_numba_into(w, block, bits, symmetric, fp16_scales, centered, out, scales):
    """nbits_dequantized one block at a time, w [out, in] -> out [out, in], scales [out, blocks].
    The NumPy twin's int64 levels and temporaries made a 0.6B's weights 4.8 s per pass; this is
    one read and one write, ~1.2 s (AMD EPYC). Not parallel: Numba's threads beside OpenBLAS's
    slowed the diff's GEMMs by half. C's roundf (half away from zero) of an x >= 0 as
    weights.roundf does it."""
    half, zero, one = np.float32(0.5), np.float32(0.0), np.float32(1.0)
    top, mid = np.float32(2 ** bits - 1), np.float32(2 ** (bits - 1))
    d32, d16 = np.empty(1, np.float32), np.empty(1, np.float32)  # a scale through to_fp16's kernel
    O, I = w.shape
    for o in range(O):
        for b0 in range(0, I, block):
            b1 = min(b0 + block, I)
            lo = zero if b1 - b0 < block else w[o, b0]  # a partial block is padded with zeros
            hi = lo
            for i in range(b0, b1):
                lo, hi = min(lo, w[o, i]), max(hi, w[o, i])
            if symmetric:
                d = (hi if abs(hi) > abs(lo) else lo) / -mid  # a tie in |.| takes the negative end
                zp = mid
            else:
                lo, hi = min(lo, zero), max(hi, zero)
                d = (hi - lo) / top
                z = zero - lo / d if d != zero else lo
                zp = min(np.floor(z) + (one if z - np.floor(z) >= half else zero), top) if z >= zero else zero
            inv = one / d if d != zero else zero
            if fp16_scales:
                d32[0] = d
                to_fp16_numba_into(d32, d32.view(np.uint32), d16, d16.view(np.uint32))
                d = d16[0]
            scales[o, b0 // block] = d
            for i in range(b0, b1):
                x = max(w[o, i] * inv + zp, zero)  # clamped below first: roundf(x < 0) <= 0 anyway
                level = min(np.floor(x) + (one if x - np.floor(x) >= half else zero), top)
                out[o, i] = level - zp if centered else (level - zp) * d


def nbits_dequantized_numba(w, nb, fp16_scales=False, centered=False):  # [out, in] -> [out, in] fp32
    out, d = np.empty(w.shape, F32), np.empty((w.shape[0], -(-w.shape[1] // nb.block)), F32)  # [out, in], [out, blocks]
    nbits_dequantized_numba_into(np.ascontiguousarray(w, F32), nb.block, nb.bits, nb.symmetric, fp16_scales,
                                 centered, out, d)
    return (out, d) if centered else out


NBITS_DEQUANTIZED = {"numba": nbits_dequantized_numba, "numpy": nbits_dequantized}


def nf4_dequantized(w, block):  # [out, in] -> [out, in] fp32: MatMulBnb4's NF4 blocks, dequantized
    codes, absmax = nf4_blocks(w, block)  # [out * in], [blocks]: blocks run over W flattened
    scale = np.repeat(absmax, block)[:codes.size]  # [out * in]
    return (NF4_LEVELS[codes] * scale).reshape(w.shape)


@numba.njit(cache=True, nogil=True)
def nf4_dequantized_numba_into(w, block, bounds, levels, out):
    """nf4_dequantized one block at a time, w [n] -> out [n] (W flattened). The twin's
    searchsorted and int64 codes cost 1 s per [3072, 1024] weight; this is one read, one write."""
    zero, one = np.float32(0.0), np.float32(1.0)
    for b0 in range(0, w.size, block):
        b1 = min(b0 + block, w.size)
        absmax = zero
        for i in range(b0, b1):
            absmax = max(absmax, abs(w[i]))
        inv = one / absmax if absmax != zero else zero  # as the quantizer: x = w * (1 / absmax)
        for i in range(b0, b1):
            x = w[i] * inv
            code = 0
            for b in bounds:  # a value on a midpoint takes the lower code
                code += x > b
            out[i] = levels[code] * absmax


def nf4_dequantized_numba(w, block):  # [out, in] -> [out, in] fp32
    out = np.empty(w.shape, F32)
    nf4_dequantized_numba_into(np.ascontiguousarray(w, F32).reshape(-1), block, NF4_BOUNDS, NF4_LEVELS, out.reshape(-1))
    return out


NF4_DEQUANTIZED = {"numba": nf4_dequantized_numba, "numpy": nf4_dequantized}


def fp16_values(w):  # [...] -> fp32 values of the fp16 conversion's (to_fp16: NumPy's cast, 3.5x faster)
    return to_fp16(fp16_clamp(w))


@numba.njit(cache=True, nogil=True)
def fp16_clamp_numba_into(w, out):
    """fp16_clamp in one pass, w [n] -> out [n]: its twin's twelve whole-array passes (abs, masks,
    sign, where) took 4.7 s of a 0.6B fp16 diff's 24 s (AMD EPYC)."""
    tiny, huge, zero = np.float32(1e-7), np.float32(1e4), np.float32(0.0)
    for i in range(w.size):
        x = w[i]
        a = abs(x)
        if zero < a < tiny:
            x = tiny if x > zero else -tiny
        elif huge < a < np.inf:
            x = huge if x > zero else -huge
        out[i] = x


def fp16_values_numba(w):  # [...] -> fp32 [...]: fp16_values, the clamp in one pass, then to_fp16 in place
    w = np.ascontiguousarray(w, F32)
    out = np.empty(w.shape, F32)
    flat = out.reshape(-1)
    fp16_clamp_numba_into(w.reshape(-1), flat)
    to_fp16_numba_into(flat, flat.view(np.uint32), flat, flat.view(np.uint32))  # element by element: in place is safe
    return out


FP16_VALUES = {"numba": fp16_values_numba, "numpy": fp16_values}


def dequantized_linear(dequantize, cache=True, product=None):
    """MatMulNBits, MatMulBnb4 and fp16 MatMuls on CPU: the weight dequantized to fp32 (held as
    fp32: a float16 operand made NumPy convert it on every product), then an fp32 GEMM (MLAS),
    which sums in its own order: ~1e-7 from NumPy's. `product`: that order, where a probe measured
    it (probe.nbits_compute, bnb4_compute, fp16_matmul_compute), for two rows or more (one row takes
    other kernels, not emulated: BLAS's sum there): "chain", one FMA chain per output over all of K
    (4-bit MatMulNBits); "gemm-batch", MLAS' SGEMM split over ONNX Runtime's threads
    (mlas.gemm_batch_weight: MatMulBnb4, 2- and 8-bit MatMulNBits, an fp16 graph's MatMul)."""
    from . import mlas
    from .run import THREADS

    weights = QuantizedWeights(dequantize, cache)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        wd = weights(w)
        if product == "chain" and x.shape[0] >= 2:
            return mlas.sgemm_weight(x, wd, stride=wd.shape[1])
        if product == "gemm-batch" and x.shape[0] >= 2:
            return mlas.gemm_batch_weight(x, wd, THREADS)
        return np.asarray(x, F32) @ wd.T
    linear.quantized = weights
    return linear


def int8_blocks(x, block):  # [N, in] -> integer-valued fp32 [N, blocks, block], scale fp32 [N, blocks]
    """MLAS' CompInt8 activations (QuantizeARow_CompInt8): per row and block of the input,
    scale = amax / 127 and q = rint(x * (127 / amax)), half to even (127 / amax in one division,
    not 1 / scale); a partial block padded with zeros."""
    N, K = x.shape
    xb = np.pad(np.asarray(x, F32), ((0, 0), (0, -K % block))).reshape(N, -1, block)  # [N, blocks, block]
    amax = np.abs(xb).max(axis=2)  # [N, blocks]
    with np.errstate(divide="ignore"):
        inv = np.where(amax != 0, F32(127) / amax, F32(0))
    return np.rint(xb * inv[..., None]), amax / F32(127)


def int8_nbits_linear(dequantize, block, cache=True):
    """MatMulNBits with accuracy_level 4 where MLAS has a CompInt8 kernel (probe.py says whether):
    the activations to int8 per block (int8_blocks), each block's integer dot product with the
    centered levels (exact in fp32 for blocks up to 512: 127 * 255 * 512 < 2^24), times the two scales, summed over
    the blocks in fp32. MLAS adds the blocks in another order: ~1e-7 from this."""
    weights = QuantizedWeights(dequantize, cache)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        c, d = weights(w)  # [out, in] integer-valued, [out, blocks]
        xq, xs = int8_blocks(x, block)  # [N, blocks, block], [N, blocks]
        K = c.shape[1]
        y = np.zeros((xq.shape[0], c.shape[0]), F32)  # [N, out]
        for k in range(d.shape[1]):
            k0, k1 = k * block, min(k * block + block, K)
            y += (xq[:, k, :k1 - k0] @ c[:, k0:k1].T) * (xs[:, k, None] * d[None, :, k])  # [N, out]
        return y
    linear.quantized = weights
    return linear


def table_min_max(rows_of, V, step=8192):
    """(min, max) of a [V, D] table read `step` rows at a time through rows_of(ids) (a 0.6B's fp32
    table is 620 MB that need not exist at once)."""
    lo, hi = zip(*((r.min(), r.max()) for r in (rows_of(np.arange(b, min(b + step, V))) for b in range(0, V, step))))
    return min(lo), max(hi)


def integer_rank_head(dtype, weights):
    """quantize_dynamic's LM head in a reranker's CausalLM graph, for rank(): its weight quantized
    per tensor, so the scale spans all V rows of the head (found once, row block by row block),
    though only the yes and no rows are read; its input quantized by one DynamicQuantizeLinear over
    every position of the sequence (the graph computes logits at all of them); then MatMulInteger's
    exact sums of the last real position, times the two scales."""
    scale = []

    def head(hidden, mask, rows):  # [B, T, D], [B, T], [2, D] -> [B, 2]
        if not scale:
            scale.append(ort_scale(*table_min_max(weights.head_rows, weights.cfg.vocab_size), dtype))
        ws, zp = scale[0]
        wq = ort_quantize(rows, ws, zp, dtype) - F32(zp)  # [2, D] integer-valued
        out = np.empty((hidden.shape[0], rows.shape[0]), F32)
        for b in range(hidden.shape[0]):
            xq, xs = dynamic_quantize_linear(hidden[b])  # [T, D]: the graph's [1, S, D]
            last = np.flatnonzero(mask[b])[-1]
            out[b] = exact_int_matmul(xq[last:last + 1], wq, W_MAX[dtype]).astype(F32)[0] * (xs * ws)
        return out
    return head


class PerTensorEmbedding(QuantizedEmbedding):
    """QuantizedEmbedding whose uint8 scale comes from the whole table (one per tensor): the
    table's min and max are found once, row block by row block, and only the looked-up rows are
    quantized (elementwise, so the same values as quantizing the table; a 0.6B's fp32 table is
    620 MB that need not exist)."""

    def __init__(self, weights):
        super().__init__(weights, None)
        self._scale = None

    def embed_rows(self, ids):  # [N] -> [N, D]
        if self._scale is None:
            self._scale = ort_scale(*table_min_max(self.inner.embed_rows, self.inner.cfg.vocab_size), "uint8")
        scale, zp = self._scale
        q = ort_quantize(self.inner.embed_rows(np.asarray(ids)), scale, zp, "uint8")  # [N, D]
        return ((q - zp) * scale).astype(self.dtype)


def gather_blocks_dequantized(block, symmetric, shares_lm_head=False):
    """GatherBlockQuantized's rows, (level - zero point) * scale in fp32: rows [N, D] -> [N, D]. Rows
    are quantized independently, so quantizing only the looked-up ones gives the table's values.
    shares_lm_head: the table is a tied LM head's MatMulNBits weight (Graph.gather_shares_lm_head),
    so its blocks are MLAS' (quantize_gather's, 0.32 off at worst on the fixture)."""
    if shares_lm_head:
        return lambda rows: nbits_dequantized(rows, NBits(4, block, symmetric, 0))

    def dequantize(rows):
        q, scale, zp = gather_blocks(rows, block, symmetric)  # [N, D], [N, blocks], [N, blocks] | None
        D = rows.shape[1]
        per_value = np.repeat(np.arange(scale.shape[1]), block)[:D]  # each column's block
        centered = (q - zp[:, per_value]) if zp is not None else q
        return centered.astype(F32) * scale[:, per_value]
    return dequantize


def simulate(weights, kernels, precision, embedding_quantized, block=None, rounded=(), nbits=None, compute=None,
             gather=None, per_channel=False, float_ops=None, offset=0, product=None):
    """(weights, kernel dict) for model.forward computing as ONNX Runtime runs a graph of this
    precision (Graph.precision: "int8", "uint8", "q2"/"q4"/"q8", "bnb4", "fp16", "q4f16"...);
    `block` is MatMulBnb4's; `nbits`, MatMulNBits' graph.NBits, run as `compute` (probe.py's
    variant: "CompInt8" quantizes the activations; otherwise the product is fp32); `product`, the
    order of an fp32 product's sums as the probe found it (dequantized_linear); `rounded`, the
    taps an fp16 graph rounds to fp16 (Export.fp16_rounded_taps); `gather`, Graph.gather_blocks()
    of a table in 4-bit blocks; `per_channel`, int8/uint8 weights with a scale per output column;
    `float_ops`, (probe.float_ops' verdicts, the graph's inv_freq, run.inlined) for a graph of
    unfused float ops (Graph.unfused_float_ops), fp16 ones included: its float ops as ONNX Runtime
    computes them; `offset`, the pads before the first real token in the graph's row
    (ort_float_kernels)."""
    cache = weights.resident
    fp16 = precision.endswith("16")  # "fp16" and the f16 variants of MatMulNBits: Graph.fp16()
    if nbits is not None:
        nb_dequantized = NBITS_DEQUANTIZED[kernels]
        if compute == "CompInt8":
            linear = int8_nbits_linear(lambda w: nb_dequantized(w, nbits, fp16, centered=True), nbits.block, cache)
        else:  # the product's order as measured for fp32 graphs (an fp16 graph's MatMulNBits was not)
            linear = dequantized_linear(lambda w: nb_dequantized(w, nbits, fp16), cache, None if fp16 else product)
    elif precision == "fp16":
        linear = dequantized_linear(FP16_VALUES[kernels], cache, product)
    elif precision == "fp32":
        linear = packed_sgemm_linear(cache)
    elif precision == "bnb4":
        nf4 = NF4_DEQUANTIZED[kernels]
        linear = dequantized_linear(lambda w: nf4(w, block), cache, product)
    else:
        linear = matmul_integer_linear(precision, kernels, cache, per_channel)
    K = dict(KERNELS[kernels], linear=linear)
    if precision in ("int8", "uint8") and not per_channel:
        K["rank_head"] = integer_rank_head(precision, weights)
    if float_ops is not None:
        K = ort_float_kernels(K, *float_ops, offset=offset, fp16=fp16)  # (ops, inv_freq, inlined)
    if fp16:
        return QuantizedEmbedding(weights, FP16_VALUES[kernels]), fp16_kernels(K, rounded)
    if gather is not None:
        return QuantizedEmbedding(weights, gather_blocks_dequantized(*gather)), K
    return (PerTensorEmbedding(weights) if embedding_quantized else weights), K


def fp16_rank_head(linear):
    """An fp16 graph's LM head (a reranker's): an fp16 MatMul, which ONNX Runtime runs in fp32 and
    whose output it rounds to fp16, on the pooled row."""
    from ...model import pool_last

    def head(hidden, mask, rows):  # [B, T, D], [B, T], [2, D] -> [B, 2]
        return to_fp16(linear(pool_last(hidden, mask), rows))
    return head


def fp16_kernels(K, rounded):
    """K with an fp16 graph's constants, rounding the taps in `rounded` (the rest stay fp32). Where
    ort_float_kernels already computes RoPE's tables or attention as ONNX Runtime does (K["ort_ops"]),
    with the fp16 constants, those are kept; q3ref's own get the constants here."""
    base_rms_norm, base_attention, base_tables = K["rms_norm"], K["attention"], K.get("rope_tables")
    ort = K.get("ort_ops", frozenset())

    def rms_norm(x, w, eps):  # [N, C] -> [N, C], in fp32 with the fp16 weight and eps
        return base_rms_norm(x, to_fp16(w), float(to_fp16(np.float32(eps))))

    def rope_tables(pos, head_dim, theta, dtype=F32):  # [N] -> cos, sin [N, Dh]
        """inv_freq an fp16 Constant; positions exact (ORT drops their cast to fp16); the tables
        rounded to fp16 where repeat_kv's Unsqueeze reads them."""
        if "Cos" in ort:
            cos, sin = base_tables(pos, head_dim, theta)  # [N, Dh] each
        else:
            cos, sin = kernel_rope_tables(pos, head_dim, theta, F32, to_fp16(rope_inv_freq(head_dim, theta)))
        return to_fp16(cos), to_fp16(sin)

    def attention(q, k, v, mask):  # the scores times fp16(Dh^-0.5), not Dh^-0.5: q scaled by their ratio
        Dh = q.shape[-1]
        return base_attention(q * F32(to_fp16(F32(Dh ** -0.5)) / F32(Dh ** -0.5)), k, v, mask)

    return dict(K, rms_norm=rms_norm, rope_tables=rope_tables, attention=base_attention if "Softmax" in ort else attention,
                round=to_fp16, rounded=frozenset(rounded), rank_head=fp16_rank_head(K["linear"]))


INV_FREQ_ULPS = 2  # torch's powf against NumPy's: 1 ulp apart at some frequencies (litert/rope.py measured 5 of 32)


def adopted_inv_freq(graph, own):  # [Dh/2] fp32 x 2 -> [Dh/2]
    """The graph's RoPE frequencies where they are q3ref's up to INV_FREQ_ULPS each (an ulp moves an
    angle near position 500 by 3e-5 rad, and every rounding after it), else q3ref's own: a graph
    built with another RoPE base must show at q_rope, not be explained away."""
    if graph is None or graph.shape != own.shape:
        return own
    ulps = np.abs(graph.view(np.int32).astype(np.int64) - own.astype(F32).view(np.int32))
    return graph if ulps.max() <= INV_FREQ_ULPS else own


def packed_sgemm_linear(cache=True):
    """An fp32 graph's MatMul by a weight, as MLAS runs it (mlas.PACKED_STRIDE_K blocks of FMA
    chains; the graph stores B = W^T [in, out], mlas.sgemm_weight reads W [out, in])."""
    from . import mlas

    weights = QuantizedWeights(lambda w: np.asarray(w, F32), cache)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        return mlas.sgemm_weight(x, weights(w))
    linear.quantized = weights
    return linear


def ort_rms_norm(x, w, eps):  # [N, C] -> [N, C]: Pow, ReduceMean, Add, Sqrt, Div(1, .), Mul(x, .), Mul(w, .)
    from . import mlas

    x = np.asarray(x, F32)
    inv = F32(1) / np.sqrt(mlas.reduce_mean(x * x) + F32(eps))  # [N, 1]
    return np.asarray(w, F32) * (x * inv)


def ort_rms_norm_divided(x, w, eps):  # [N, C] -> [N, C]: the same after DivMulFusion, Div(x, sqrt(.))
    from . import mlas

    x = np.asarray(x, F32)
    return np.asarray(w, F32) * (x / np.sqrt(mlas.reduce_mean(x * x) + F32(eps)))


def ort_float_kernels(K, ops, inv_freq, inlined=frozenset(), offset=0, fp16=False):
    """K with the float ops ONNX Runtime runs in an unfused graph (mlas.py), in the graph's op order,
    each where the probe found it computed so on this CPU (`ops`, probe.float_ops' verdicts):
        rms_norm    (ReduceMean)  w * (x * (1 / sqrt(mean(x * x) + eps)))
        rope_tables (Cos, Sin)    cos(pos * inv_freq), with the graph's own inv_freq (adopted_inv_freq)
        attention   (MatMul, Softmax)  softmax(q k^T * Dh^-0.5 + mask) v, per head; masked
                                  scores finfo.min (0 after the softmax's exp), as transformers' mask;
                                  `offset` left pads before the real tokens (the graph's row; q3ref
                                  runs the real tokens only) put that many masked keys first, which
                                  move the real ones to other lanes of the softmax's sum and other
                                  K blocks of the product
        silu_mul    (Sigmoid)     (gate * sigmoid(gate)) * up
    The rest (Pow, Add, Sqrt, Div, Mul, RoPE's rotation) round once each, as NumPy's fp32 does.
    fp16: an fp16 graph's, whose ops run in fp32 where ONNX Runtime has no fp16 kernel (these do
    not): inv_freq and attention's scale are fp16 constants; `inlined` (run.inlined) names the
    ops run as their function bodies (its Softmax: mlas.softmax_function, whose ReduceSum sums by
    the rows' alignment in the [B, H, T, S] buffer). K["ort_ops"]: the ops replaced."""
    from ...kernels import rope_numpy
    from . import mlas

    K = dict(K, rope=rope_numpy)  # x * cos + rotate_half(x) * sin, each op rounded: the Numba twin fuses to FMAs
    replaced = set()
    if ops.get("ReduceMean"):
        K["rms_norm"] = ort_rms_norm
        replaced.add("ReduceMean")
    if ops.get("Cos") and ops.get("Sin") and inv_freq is not None:
        def rope_tables(pos, head_dim, theta, dtype=F32):  # [N] -> cos, sin [N, Dh]
            own = rope_inv_freq(head_dim, theta)  # [Dh/2]
            freq = adopted_inv_freq(inv_freq, to_fp16(own) if fp16 else own)  # [Dh/2]
            angles = np.asarray(pos, F32)[:, None] * freq[None, :]  # [N, Dh/2]
            angles = np.concatenate([angles, angles], axis=-1)  # [N, Dh]
            if np.abs(angles).max(initial=0) >= min(mlas.HUGE.values()):  # Eigen's other reduction
                return kernel_rope_tables(pos, head_dim, theta, F32, freq)
            return mlas.sincos(angles, False), mlas.sincos(angles, True)
        K["rope_tables"] = rope_tables
        replaced |= {"Cos", "Sin"}
    function = "Softmax" in inlined  # computed as ReduceMax, Sub, Exp, ReduceSum, Div
    if ops.get("MatMul") and (ops.get("Exp") and ops.get("ReduceSum") if function else ops.get("Softmax")):
        def attention(q, k, v, mask):  # [B, T, H, Dh], [B, T, Hkv, Dh] x 2, [B, T] -> [B, T, H, Dh]
            B, T, H, Dh = q.shape
            rep = H // k.shape[2]
            scale = to_fp16(F32(Dh ** -0.5)) if fp16 else F32(Dh ** -0.5)
            visible = np.tril(np.ones((T, T), bool))[None] & mask[:, None, :]  # [B, T, T]: keys a query sees
            bias = np.where(visible, F32(0), np.finfo(F32).min)  # [B, T, T]
            out = np.zeros_like(q, dtype=F32)  # [B, T, H, Dh]; a padded query row stays 0, as the twin's
            for b in range(B):
                for h in range(H):
                    g = h // rep
                    s = mlas.sgemm(q[b, :, h], k[b, :, g].T) * scale + bias[b]  # [T, T]
                    vg = v[b, :, g]  # [T, Dh]
                    if offset:
                        s = np.concatenate([np.full((T, offset), np.finfo(F32).min, F32), s], axis=1)  # [T, offset + T]
                        vg = np.concatenate([np.zeros((offset, Dh), F32), vg])  # [offset + T, Dh]: 0 x a pad's v
                    S = s.shape[1]
                    p = mlas.softmax_function(s, (b * H + h) * T * S) if function else mlas.softmax(s)
                    out[b, :, h] = mlas.sgemm(p, vg)  # [T, Dh]
                out[b, ~mask[b]] = 0
            return out
        K["attention"] = attention
        replaced |= {"MatMul", "Softmax"}
    if ops.get("Sigmoid"):
        K["silu_mul"] = lambda gate, up: (gate * mlas.logistic(gate)) * up  # [N, F]
        replaced.add("Sigmoid")
    return dict(K, ort_ops=frozenset(replaced))
