"""Which arithmetic ONNX Runtime's MatMulNBits runs on this CPU, found by running it.

accuracy_level 4 asks MLAS for CompInt8 (activations quantized to int8 per block); MLAS grants it
only where it has a kernel for the bits, the block size and the CPU's ISA, and otherwise the node
dequantizes to fp32 (onnxruntime's matmul_nbits.cc). So q3ref writes one MatMulNBits node of the
graph's kind, with its own quantization of fixed random weights (weights.mlas_blocks, packed as
the quantizer packs them), runs it through the same onnxruntime on fixed random activations, and
compares the output with both of sim.py's products. Cached per process: it takes milliseconds.
"""

from __future__ import annotations

import functools

import numpy as np

from ..cpu import cpu_id
from .weights import mlas_blocks

F32 = np.float32
AGREE = 1e-5  # rel L2 of ORT's output from an emulation: measured 2-3e-7 for the one it runs, 5e-3 for the other


def one_node_graph(w, nb) -> bytes:
    """A model with one MatMulNBits node: A [M, K] fp32 -> Y [M, N], B from w [N, K] as
    MatMulNBitsQuantizer stores it (levels packed low bits first; zero points likewise)."""
    from onnx import TensorProto, helper, numpy_helper

    N, K = w.shape
    levels, d, zp = mlas_blocks(w, nb.block, nb.bits, nb.symmetric)  # [N, blocks, block], [N, blocks] x 2
    per_byte = 8 // nb.bits

    def packed(v):  # [N, n] 0 .. 2^bits - 1 -> [N, ceil(n / per_byte)] uint8
        v = np.pad(v, ((0, 0), (0, -v.shape[1] % per_byte))).reshape(N, -1, per_byte)
        return sum(v[..., j] << (nb.bits * j) for j in range(per_byte)).astype(np.uint8)

    blob = packed(levels.reshape(N, -1)).reshape(N, d.shape[1], -1)  # [N, blocks, block * bits / 8]
    inits = [numpy_helper.from_array(blob, "B"), numpy_helper.from_array(d, "scales")]
    if not nb.symmetric:
        inits.append(numpy_helper.from_array(packed(zp), "zero_points"))
    attrs = dict(K=K, N=N, bits=nb.bits, block_size=nb.block, accuracy_level=nb.accuracy_level)
    node = helper.make_node("MatMulNBits", ["A"] + [t.name for t in inits], ["Y"], domain="com.microsoft", **attrs)
    g = helper.make_graph([node], "q3ref-probe", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, K])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, N])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    return m.SerializeToString()


@functools.lru_cache(maxsize=None)
def nbits_compute(nb) -> dict:
    """{"variant": "CompInt8" | "CompFp32" | "unknown", "ops", "rel_l2", "runtime", "cpu", "emulated"}
    for MatMulNBits of this graph.NBits on this CPU (the keys of litert/probe.py's verdicts; the
    variants are MLAS' names for the two products)."""
    import onnxruntime as ort

    from .sim import dequantized_linear, int8_nbits_linear, nbits_dequantized

    rng = np.random.default_rng(0)
    K = 4 * nb.block + nb.block // 2  # whole blocks and a partial one
    w = rng.standard_normal((48, K)).astype(F32)  # [N, K]
    x = (rng.standard_normal((16, K)) * rng.uniform(0.1, 10, (16, 1))).astype(F32)  # [M, K]
    session = ort.InferenceSession(one_node_graph(w, nb), providers=["CPUExecutionProvider"])
    got = session.run(None, {"A": x})[0]
    products = {"CompInt8": int8_nbits_linear(lambda v: nbits_dequantized(v, nb, centered=True), nb.block, False),
                "CompFp32": dequantized_linear(lambda v: nbits_dequantized(v, nb), False)}
    rel = {k: float(np.linalg.norm(got - f(x, w)) / np.linalg.norm(got)) for k, f in products.items()}
    variant = next((k for k, r in rel.items() if r < AGREE), "unknown")
    return {"variant": variant, "ops": {str(nb): variant != "unknown"}, "rel_l2": rel,
            "runtime": f"onnxruntime {ort.__version__}", "cpu": cpu_id(), "emulated": variant != "unknown"}
