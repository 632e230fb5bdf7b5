"""What ONNX Runtime computes for its quantized graphs, as model.forward kernels.

int8 / uint8 (quantize_dynamic, MatMulConstBOnly): the weight quantized per tensor as
weights.py does (int8 symmetric or uint8 with a zero point); the activation by
DynamicQuantizeLinear, one scale for the whole tensor (all tokens of the sequence):
    min, max = min(0, min x), max(0, max x);  scale = (max - min) / 255 in fp32
    zero point = clip(rint(-min / scale), 0, 255);  q = clip(rint(x / scale) + zero point, 0, 255)
(checked against the graph's own DynamicQuantizeLinear outputs); MatMulInteger's exact int32 sum
of (q_x - zp_x)(q_w - zp_w), cast to float, times (scale_x * scale_w). The embedding table is a
uint8 Gather, dequantized row by row.
q4 (MatMulNBits, 4-bit blocks, no accuracy_level): the weight dequantized block by block, the
product in fp32.
The float ops (RMSNorm's Pow/ReduceMean/Sqrt, Softmax, ...) are q3ref's own: ONNX Runtime's sum in
another order, ~1 ulp, which is why this is close but not bit-exact.
"""

from __future__ import annotations

import numpy as np

from ...quant import QuantizedEmbedding, QuantizedWeights, exact_int_matmul
from .weights import mlas_q4, ort_per_tensor

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


def per_tensor_weight(dtype):
    def quantize(w):  # [out, in] -> (q - zp) integer-valued fp32 [out, in], scale
        # The graph stores B = W^T; per-tensor quantization is elementwise, so W itself gives its transpose.
        q, scale, zp = ort_per_tensor(w, dtype)
        return (q - F32(zp)) if zp else q, scale
    return quantize


def matmul_integer_linear(dtype, cache=True):
    weights = QuantizedWeights(per_tensor_weight(dtype), cache)
    chunk = EXACT_CHUNK * (2 if dtype == "int8" else 1)  # |w| <= 127: 512 products of <= 255 * 127 stay below 2^24

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        wq, ws = weights(w)
        xq, xs = dynamic_quantize_linear(x)
        acc = exact_int_matmul(xq, wq, chunk).astype(F32)
        return acc * (xs * ws)
    linear.quantized = weights
    return linear


def nbits_linear(block, cache=True):
    def dequantized(w):
        levels, d = mlas_q4(w, block)
        full = ((levels - 8).astype(F32) * d[..., None]).reshape(w.shape[0], -1)
        return full[:, :w.shape[1]]
    weights = QuantizedWeights(dequantized, cache)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        return np.asarray(x, F32) @ weights(w).T
    linear.quantized = weights
    return linear


def uint8_table(table):
    """The Gather's uint8 table: quantized per tensor over the whole table, rows dequantized."""
    q, scale, zp = ort_per_tensor(table, "uint8")
    return lambda ids: ((q[ids] - zp) * scale).astype(F32)


class PerTensorEmbedding(QuantizedEmbedding):
    """QuantizedEmbedding whose scale comes from the whole table (one per tensor), quantized once."""

    def __init__(self, weights):
        super().__init__(weights, None)
        self._rows = None

    def embed_rows(self, ids):  # [N] -> [N, D]
        if self._rows is None:
            self._rows = uint8_table(self.inner["embed_tokens.weight"])
        return self._rows(np.asarray(ids)).astype(self.dtype)


def simulate(weights, kernels, precision, embedding_quantized, block=32):
    """(weights, kernel dict) for model.forward computing as ONNX Runtime runs a graph of this
    precision ("int8", "uint8", "q4")."""
    from ...kernels import KERNELS

    cache = weights.resident
    linear = nbits_linear(block, cache) if precision == "q4" else matmul_integer_linear(precision, cache)
    return (PerTensorEmbedding(weights) if embedding_quantized else weights), dict(KERNELS[kernels], linear=linear)
