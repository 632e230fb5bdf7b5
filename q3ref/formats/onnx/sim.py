"""What ONNX Runtime computes for its quantized graphs, as model.forward kernels.

int8 / uint8 (quantize_dynamic, MatMulConstBOnly): the weight quantized per tensor as
weights.py does (int8 symmetric or uint8 with a zero point); the activation by
DynamicQuantizeLinear, one scale for the whole tensor (all tokens of the sequence):
    min, max = min(0, min x), max(0, max x);  scale = (max - min) / 255 in fp32
    zero point = clip(rint(-min / scale), 0, 255);  q = clip(rint(x / scale) + zero point, 0, 255)
(checked against the graph's own DynamicQuantizeLinear outputs); MatMulInteger's exact int32 sum
of (q_x - zp_x)(q_w - zp_w), cast to float, times (scale_x * scale_w). The embedding table is a
uint8 Gather, dequantized row by row.
q4 (MatMulNBits, 4-bit blocks, no accuracy_level) and bnb4 (MatMulBnb4, NF4 blocks): the weight
dequantized block by block (level * absmax for NF4), the product in fp32.
fp16 and q4f16 (onnxconverter-common's fp16): the weights in fp16 (clamped) or MatMulNBits with
fp16 scales. Every op is typed fp16, but ONNX Runtime's CPU provider has no fp16 kernel for most
(Pow, ReduceMean, Sqrt, Softmax, MatMul...): its InsertCastTransformer runs them in fp32 and
drops the casts between neighbours, so the graph runs in fp32 stretches and rounds to fp16 only
where an op with an fp16 kernel reads a value (run.fp16_rounded reads where from the session's
optimized model: in the stress graphs after q, k, v, q_norm, k_norm, k_rope and attention's PV
product, not on the residual stream or in the MLP). The simulation rounds those taps only, and
keeps the graph's fp16 constants: RMSNorm's weight and eps, RoPE's inv_freq and its cos/sin
tables, attention's scale.
The float ops (RMSNorm's Pow/ReduceMean/Sqrt, Softmax, ...) are q3ref's own: ONNX Runtime's sum in
another order, ~1 ulp, which is why this is close but not bit-exact.
"""

from __future__ import annotations

import numba
import numpy as np

from ...kernels import KERNELS, rope_inv_freq, rope_tables as kernel_rope_tables
from ...quant import QuantizedEmbedding, QuantizedWeights, exact_int_matmul, to_fp16, to_fp16_numba_into
from .weights import NF4_BOUNDS, NF4_LEVELS, RANGE, fp16_clamp, mlas_q4, nf4_blocks, ort_per_tensor, ort_quantize, ort_scale

F32 = np.float32
EXACT_CHUNK = 256  # |x - zp| <= 255 and |w - zp| <= 255: 256 products sum below 2^24, exact in fp32


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


def matmul_integer_linear(dtype, kernels, cache=True):
    quantize = CENTERED_PER_TENSOR[kernels]
    weights = QuantizedWeights(lambda w: quantize(w, dtype), cache)
    chunk = EXACT_CHUNK * (2 if dtype == "int8" else 1)  # |w| <= 127: 512 products of <= 255 * 127 stay below 2^24

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        wq, ws = weights(w)
        xq, xs = dynamic_quantize_linear(x)
        acc = exact_int_matmul(xq, wq, chunk).astype(F32)
        return acc * (xs * ws)
    linear.quantized = weights
    return linear


def q4_dequantized(w, block, fp16_scales=False):  # [out, in] -> [out, in] fp32: MLAS' 4-bit blocks, dequantized
    """fp16_scales: q4f16, whose levels come from the fp32 scale and whose stored scale is then
    rounded to fp16 by the fp16 conversion (weights.py)."""
    levels, d = mlas_q4(w, block)  # [out, blocks, block], [out, blocks]
    d = to_fp16(d) if fp16_scales else d
    full = ((levels - 8).astype(F32) * d[..., None]).reshape(w.shape[0], -1)  # [out, blocks * block]
    return full[:, :w.shape[1]]


@numba.njit(cache=True, nogil=True)
def q4_dequantized_numba_into(w, block, fp16_scales, out):
    """q4_dequantized one block at a time, w [out, in] -> out [out, in]. The NumPy twin's int64 levels
    and temporaries made a 0.6B's weights 4.8 s per pass; this is one read and one write, ~1.2 s
    (AMD EPYC). Not parallel: Numba's threads beside OpenBLAS's slowed the diff's GEMMs by half."""
    half, minus8, zero = np.float32(8.5), np.float32(-8.0), np.float32(0.0)
    d32, d16 = np.empty(1, np.float32), np.empty(1, np.float32)  # a scale through to_fp16's kernel
    O, I = w.shape
    for o in range(O):
        for b0 in range(0, I, block):
            b1 = min(b0 + block, I)
            lo = zero if b1 - b0 < block else w[o, b0]  # a partial block is padded with zeros
            hi = lo
            for i in range(b0, b1):
                lo, hi = min(lo, w[o, i]), max(hi, w[o, i])
            d = (hi if abs(hi) > abs(lo) else lo) / minus8  # a tie in |.| takes the negative end
            inv = np.float32(1.0) / d if d != zero else zero
            if fp16_scales:
                d32[0] = d
                to_fp16_numba_into(d32, d32.view(np.uint32), d16, d16.view(np.uint32))
                d = d16[0]
            for i in range(b0, b1):
                level = min(15, int(w[o, i] * inv + half))  # >= 0: truncation is C's (int) cast
                out[o, i] = np.float32(level - 8) * d


def q4_dequantized_numba(w, block, fp16_scales=False):  # [out, in] -> [out, in] fp32
    out = np.empty(w.shape, F32)
    q4_dequantized_numba_into(np.ascontiguousarray(w, F32), block, fp16_scales, out)
    return out


Q4_DEQUANTIZED = {"numba": q4_dequantized_numba, "numpy": q4_dequantized}


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


def dequantized_linear(dequantize, cache=True):
    """MatMulNBits, MatMulBnb4 and fp16 MatMuls on CPU: the weight dequantized to fp32 (held as
    fp32: a float16 operand made NumPy convert it on every product), then an fp32 GEMM (MLAS),
    which sums in its own order: ~1e-7 from NumPy's."""
    weights = QuantizedWeights(dequantize, cache)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        return np.asarray(x, F32) @ weights(w).T
    linear.quantized = weights
    return linear


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
            V = self.inner.cfg.vocab_size
            blocks = (self.inner.embed_rows(np.arange(b, min(b + 8192, V))) for b in range(0, V, 8192))  # [<=8192, D]
            lo, hi = zip(*((rows.min(), rows.max()) for rows in blocks))
            self._scale = ort_scale(min(lo), max(hi), "uint8")
        scale, zp = self._scale
        q = ort_quantize(self.inner.embed_rows(np.asarray(ids)), scale, zp, "uint8")  # [N, D]
        return ((q - zp) * scale).astype(self.dtype)


def simulate(weights, kernels, precision, embedding_quantized, block=None, rounded=()):
    """(weights, kernel dict) for model.forward computing as ONNX Runtime runs a graph of this
    precision ("int8", "uint8", "q4", "bnb4", "q4f16", "fp16"); `block` is MatMulNBits' or
    MatMulBnb4's; `rounded`, the taps an fp16 graph rounds to fp16 (Export.fp16_rounded_taps)."""
    cache = weights.resident
    q4, nf4 = Q4_DEQUANTIZED[kernels], NF4_DEQUANTIZED[kernels]
    if precision in ("q4", "q4f16"):
        linear = dequantized_linear(lambda w: q4(w, block, precision == "q4f16"), cache)
    elif precision == "fp16":
        linear = dequantized_linear(fp16_values, cache)
    elif precision == "bnb4":
        linear = dequantized_linear(lambda w: nf4(w, block), cache)
    else:
        linear = matmul_integer_linear(precision, kernels, cache)
    K = dict(KERNELS[kernels], linear=linear)
    if precision in ("fp16", "q4f16"):
        return QuantizedEmbedding(weights, fp16_values), fp16_kernels(K, rounded)
    return (PerTensorEmbedding(weights) if embedding_quantized else weights), K


def fp16_kernels(K, rounded):
    """K with an fp16 graph's constants, rounding the taps in `rounded` (the rest stay fp32)."""
    base_rms_norm, base_attention = K["rms_norm"], K["attention"]

    def rms_norm(x, w, eps):  # [N, C] -> [N, C], in fp32 with the fp16 weight and eps
        return base_rms_norm(x, to_fp16(w), float(to_fp16(np.float32(eps))))

    def rope_tables(pos, head_dim, theta, dtype=F32):  # [N] -> cos, sin [N, Dh]
        """inv_freq an fp16 Constant; positions exact (ORT drops their cast to fp16); the tables
        rounded to fp16 where repeat_kv's Unsqueeze reads them."""
        cos, sin = kernel_rope_tables(pos, head_dim, theta, F32, to_fp16(rope_inv_freq(head_dim, theta)))  # [N, Dh]
        return to_fp16(cos), to_fp16(sin)

    def attention(q, k, v, mask):  # the scores times fp16(Dh^-0.5), not Dh^-0.5: q scaled by their ratio
        Dh = q.shape[-1]
        return base_attention(q * F32(to_fp16(F32(Dh ** -0.5)) / F32(Dh ** -0.5)), k, v, mask)

    return dict(K, rms_norm=rms_norm, rope_tables=rope_tables, attention=attention, round=to_fp16,
                rounded=frozenset(rounded))
