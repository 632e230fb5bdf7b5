"""Which arithmetic ONNX Runtime's MatMulNBits runs on this CPU, found by running it.

accuracy_level 4 asks MLAS for CompInt8 (activations quantized to int8 per block); MLAS grants it
only where it has a kernel for the bits, the block size and the CPU's ISA, and otherwise the node
dequantizes to fp32 (onnxruntime's matmul_nbits.cc). So q3ref writes one MatMulNBits node of the
graph's kind, with its own quantization of fixed random weights (weights.mlas_blocks, packed as
the quantizer packs them), runs it through the same onnxruntime on fixed random activations, and
compares the output with both of sim.py's products. Cached per process: it takes milliseconds.
Where the product is fp32, the probe also finds the order of its sums, so that the simulation can
land on it to the bit: one FMA chain per output over K (4-bit MatMulNBits), or MLAS' SGEMM split
over the threads as MlasGemmBatch splits it (2- and 8-bit MatMulNBits, MatMulBnb4: gemm_batch).
The float ops' probes (float_ops, fused_ops) take longer and are kept on disk (cpu.cached).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from ..cpu import cached, cpu_id
from .weights import fp16_clamped, mlas_blocks, nf4_blocks

F32 = np.float32
AGREE = 1e-5  # rel L2 of ORT's output from an emulation: measured 2-3e-7 for the one it runs, 5e-3 for the other


def one_node_graph(w, nb) -> bytes:
    """A model with one MatMulNBits node: A [M, K] fp32 -> Y [M, N], B from w [N, K] as
    MatMulNBitsQuantizer stores it (levels packed low bits first; zero points likewise)."""
    from onnx import helper, numpy_helper

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
    return product_model([node], inits, K, N)


def product_model(nodes, inits, K, N, a_type=None) -> bytes:
    """A model of `nodes` (with `inits`) from A [M, K] (fp32, or ONNX's `a_type`) to Y [M, N] fp32."""
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, "q3ref-probe", [helper.make_tensor_value_info("A", a_type or TensorProto.FLOAT, [None, K])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, N])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    return m.SerializeToString()


@functools.lru_cache(maxsize=None)
def nbits_compute(nb) -> dict:
    """{"variant": "CompInt8" | "CompFp32" | "unknown", "ops", "rel_l2", "product", "runtime", "cpu",
    "emulated"} for MatMulNBits of this graph.NBits on this CPU (the keys of litert/probe.py's
    verdicts; the variants are MLAS' names for the two products). "product": the order of the fp32
    product's sums, where sim.dequantized_linear lands on it ("chain" or "gemm-batch"), else None."""
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
    # Measured (onnxruntime 1.32, AMD EPYC): the 4-bit fp32 product of two rows or more is one FMA
    # chain per output over all of K, to the bit; the 2- and 8-bit ones are MlasGemmBatch's SGEMM.
    # One row is another kernel in both, not emulated.
    orders = ("chain", "gemm-batch") if variant == "CompFp32" else ()
    product = next((p for p in orders if _lands(lambda w: one_node_graph(w, nb), p, lambda v: nbits_dequantized(v, nb))),
                   None)
    return {"variant": variant, "ops": {str(nb): variant != "unknown"}, "rel_l2": rel, "product": product,
            "runtime": f"onnxruntime {ort.__version__}", "cpu": cpu_id(), "emulated": variant != "unknown"}


# [M, N, K] of the products a probe runs: K spans several of any K block MLAS uses (up to 256, and
# 128 below 4 blocks of it); N = 48 and 96 split over 2 threads into parts whose K blocks differ
# from the whole's; [2, 96, 300] has too few multiplies for a second thread (MlasGemmBatch), [3, 96,
# 300] enough.
PRODUCT_SHAPES = ((16, 48, 1040), (16, 96, 1040), (7, 300, 600), (2, 96, 300), (3, 96, 300))


def _lands(graph_of, product, dequantize, feed=lambda x: x) -> bool:
    """Does sim.dequantized_linear with `product` give a one-node graph's output (graph_of(w))
    to the bit, on every shape of PRODUCT_SHAPES, run as the diff runs it (run.session_options)?
    feed(x): the graph's input A for activations x (an fp16 graph's: x in fp16)."""
    import onnxruntime as ort

    from .run import session_options
    from .sim import dequantized_linear

    rng = np.random.default_rng(1)
    linear = dequantized_linear(dequantize, False, product)
    for M, N, K in PRODUCT_SHAPES:
        w = rng.standard_normal((N, K)).astype(F32)
        x = feed((rng.standard_normal((M, K)) * rng.uniform(0.1, 10, (M, 1))).astype(F32))
        session = ort.InferenceSession(graph_of(w), session_options(), providers=["CPUExecutionProvider"])
        if not np.array_equal(session.run(None, {"A": x})[0].astype(F32), linear(x.astype(F32), w)):
            return False
    return True


def bnb4_graph(w, block) -> bytes:
    """A model with one MatMulBnb4 node (NF4): A [M, K] fp32 -> Y [M, N], B from w [N, K] as
    MatMulBnb4Quantizer stores it (W flattened, two codes a byte, the first in the high nibble)."""
    from onnx import helper, numpy_helper

    N, K = w.shape
    codes, absmax = nf4_blocks(w, block)  # [N * K], [blocks]
    pairs = np.pad(codes, (0, codes.size % 2)).reshape(-1, 2)
    inits = [numpy_helper.from_array(((pairs[:, 0] << 4) | pairs[:, 1]).astype(np.uint8), "B"),
             numpy_helper.from_array(absmax.astype(F32), "absmax")]
    node = helper.make_node("MatMulBnb4", ["A", "B", "absmax"], ["Y"], domain="com.microsoft", K=K, N=N,
                            block_size=block, quant_type=1)
    return product_model([node], inits, K, N)


@functools.lru_cache(maxsize=None)
def bnb4_compute(block) -> dict:
    """The keys of nbits_compute for MatMulBnb4 (NF4, `block`): its product is always fp32 (the
    weight dequantized, then MlasGemmBatch: matmul_bnb4.cc); "product" says whether
    mlas.gemm_batch_weight sums it as this onnxruntime does on this CPU, to the bit."""
    import onnxruntime as ort

    from .sim import nf4_dequantized

    lands = _lands(lambda w: bnb4_graph(w, block), "gemm-batch", lambda v: nf4_dequantized(v, block))
    return _gemm_batch_verdict(f"MatMulBnb4 (NF4, blocks of {block})", lands, ort.__version__)


def _gemm_batch_verdict(op, lands, version) -> dict:  # nbits_compute's keys for an fp32 product MlasGemmBatch runs
    return {"variant": "MlasGemmBatch" if lands else "fp32 (the order of its sums not found)", "ops": {op: True},
            "product": "gemm-batch" if lands else None, "runtime": f"onnxruntime {version}", "cpu": cpu_id(),
            "emulated": True}


# ------------------------------------------------------------------------ the float ops (mlas.py)
def one_op_graph(op, inputs, attrs=None, consts=(), domain="") -> bytes:
    """A model with one `op` node on fp32 inputs named x0, x1... (then initializers `consts`: int64
    such as ReduceMean's axes, or fp32 such as a MatMul's weight, which ONNX Runtime prepacks);
    domain "com.microsoft" for ONNX Runtime's contrib ops."""
    from onnx import TensorProto, helper, numpy_helper

    names = [f"x{i}" for i in range(len(inputs))]
    inits = [numpy_helper.from_array(c if isinstance(c, np.ndarray) and c.dtype == F32 else np.asarray(c, np.int64), f"c{i}")
             for i, c in enumerate(consts)]
    node = helper.make_node(op, names + [t.name for t in inits], ["y"], domain=domain, **(attrs or {}))
    g = helper.make_graph([node], "q3ref-probe",
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n, a in zip(names, inputs)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(g, opset_imports=opsets).SerializeToString()


def run_unfused(graph: bytes, inputs) -> np.ndarray:
    """The graph on ONNX Runtime's CPU provider as the diff taps a graph (run.session_options:
    optimizations off, as many threads as cores)."""
    import onnxruntime as ort

    from .run import session_options

    session = ort.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"])
    return session.run(None, {f"x{i}": x for i, x in enumerate(inputs)})[0]


def float_op_cases(rng):
    """(op, inputs, attrs, consts, domain, emulation) per probe op, on inputs that reach each kernel's
    paths: Softmax rows of 16 lanes, 48-steps and a masked tail, with finfo.min (masked) scores;
    Exp over and under its clamps; ReduceSum rows at every alignment;
    ReduceMean rows of 128, 1024 and 37 (unaligned starts); angles up to 8191 rad; MatMul as
    attention's two products (H heads batched: K = Dh in one block, and K = T in blocks of 128)
    and as a projection by a weight (packed: blocks of 256, one row too)."""
    from . import mlas

    scores = (rng.standard_normal((2, 4, 7, 101)) * 5).astype(F32)
    scores[0, 1, :, 50:] = np.finfo(F32).min
    x = (rng.standard_normal((24, 40)) * 8).astype(F32)
    squares = [(rng.standard_normal((9, d)) ** 2).astype(F32) for d in (128, 1024, 37)]
    angles = (np.arange(0, 8192, 97, dtype=F32)[:, None] * rng.uniform(1e-6, 1, 64).astype(F32)).astype(F32)
    q, kt = rng.standard_normal((1, 4, 200, 128)).astype(F32), rng.standard_normal((1, 4, 128, 200)).astype(F32)
    p, v = rng.random((1, 4, 200, 200)).astype(F32), rng.standard_normal((1, 4, 200, 128)).astype(F32)
    batched = lambda a, b: np.stack([mlas.sgemm(a[0, h], b[0, h]) for h in range(a.shape[1])])[None]  # noqa: E731
    a, w = rng.standard_normal((37, 700)).astype(F32), rng.standard_normal((700, 96)).astype(F32)  # x [M, K], W^T [K, N]
    exps = np.concatenate([rng.uniform(-110, 90, 2000), -rng.exponential(2, 2000)]).astype(F32).reshape(8, -1)
    sums = rng.random((3, 5, 21)).astype(F32)  # rows of 21: each starts at another 16-byte alignment
    return {
        "Sigmoid": [("Sigmoid", [x], None, (), "", mlas.logistic)],
        "Softmax": [("Softmax", [scores], {"axis": -1}, (), "", mlas.softmax)],
        # an fp16 graph's Softmax, inlined as its function body (run.inlined): Exp and ReduceSum besides exact ops
        "Exp": [("Exp", [exps], None, (), "", lambda a: mlas.sum_exp_terms(a, np.zeros((a.shape[0], 1), F32)))],
        "ReduceSum": [("ReduceSum", [sums], {"keepdims": 1}, ([-1],), "",
                       lambda a: mlas.eigen_sum(a.reshape(-1, a.shape[-1])).reshape(a.shape[:-1] + (1,)))],
        "ReduceMean": [("ReduceMean", [s], {"keepdims": 1}, ([-1],), "", mlas.reduce_mean) for s in squares],
        "Cos": [("Cos", [angles], None, (), "", lambda a: mlas.sincos(a, False))],
        "Sin": [("Sin", [angles], None, (), "", lambda a: mlas.sincos(a, True))],
        "MatMul": [("MatMul", [q, kt], None, (), "", batched), ("MatMul", [p, v], None, (), "", batched),
                   ("MatMul", [a], None, (w,), "", lambda x: mlas.sgemm_weight(x, w.T)),  # by a weight: packed
                   ("MatMul", [a[:1]], None, (w,), "", lambda x: mlas.sgemm_weight(x, w.T))],
    }


def fused_op_cases(rng):
    """(op, inputs, attrs, consts, domain, emulation) per fusion ONNX Runtime's default optimizations make
    in torch's graphs: SimplifiedLayerNormalization on hidden and head rows, QuickGelu with alpha 1
    (SiLU), FusedMatMul as attention's q k^T times the scale (B transposed in the kernel)."""
    from . import mlas

    rows = [(rng.standard_normal((9, d)) * 3).astype(F32) for d in (1024, 128)]
    x = (rng.standard_normal((24, 40)) * 8).astype(F32)
    q, k = rng.standard_normal((1, 4, 200, 128)).astype(F32), rng.standard_normal((1, 4, 200, 128)).astype(F32)
    scale = float(F32(128 ** -0.5))
    qk = lambda a, b: np.stack([mlas.sgemm(a[0, h], b[0, h].T) for h in range(a.shape[1])])[None] * F32(scale)  # noqa: E731
    return {
        "SimplifiedLayerNormalization": [
            ("SimplifiedLayerNormalization", [r, rng.standard_normal(r.shape[1]).astype(F32)],
             {"axis": -1, "epsilon": 1e-6, "stash_type": 1}, (), "", lambda a, w: mlas.simplified_layer_norm(a, w, 1e-6))
            for r in rows],
        "QuickGelu": [("QuickGelu", [x], {"alpha": 1.0}, (), "com.microsoft", lambda a: a * mlas.logistic(a))],
        "FusedMatMul": [("FusedMatMul", [q, k], {"transB": 1, "alpha": scale}, (), "com.microsoft", qk)],
    }


def verdicts(cases) -> dict:
    """{name: whether every case's one-op graph, run here, is its emulation to the bit}."""
    ops = {}
    for name, runs in cases.items():
        ok = True
        for op, inputs, attrs, consts, domain, emulation in runs:
            try:
                got = run_unfused(one_op_graph(op, inputs, attrs, consts, domain), inputs)
            except Exception:  # a runtime that refuses the op (ORT's errors share no base): not emulated
                got = None
            ok = ok and got is not None and np.array_equal(got, emulation(*inputs), equal_nan=True)
        ops[name] = bool(ok)
    return ops


def _note(ops, variant) -> dict:
    import onnxruntime as ort

    emulated = all(ops.values())
    return {"variant": variant if emulated else "unknown", "ops": ops, "runtime": f"onnxruntime {ort.__version__}",
            "cpu": cpu_id(), "emulated": emulated}


def _emulations() -> str:  # a hash of the emulations' and the probe cases' code: the cached verdicts' version
    here = Path(__file__).parent
    text = b"".join((here / name).read_bytes() for name in ("mlas.py", "probe.py", "../fp32.py"))
    return hashlib.sha1(text).hexdigest()[:8]


def _cached_verdicts(what, cases) -> dict:
    """verdicts(cases()), once per onnxruntime version, CPU and emulation code (cpu.cached): the
    float ops' probe takes 0.5-0.9 s, on every diff of an unfused graph."""
    import onnxruntime as ort

    key = f"onnxruntime {ort.__version__} {what} on {cpu_id()}, emulations {_emulations()}"
    return cached("onnx_probe.json", key, lambda: verdicts(cases()))


@functools.lru_cache(maxsize=None)
def fused_ops() -> dict:
    """probe.float_ops' verdicts for the fused ops of the app's run (fused_op_cases)."""
    return _note(_cached_verdicts("fused ops", lambda: fused_op_cases(np.random.default_rng(1))), "mlas-x86-64-fused")


@functools.lru_cache(maxsize=None)
def float_ops() -> dict:
    """{"variant": "mlas-x86-64" | "unknown", "ops": {op: bit-exact}, "runtime", "cpu", "emulated"}:
    whether this CPU's onnxruntime computes each float op as mlas.py does, bit for bit. A kernel
    MLAS picks by ISA (an AVX2-only CPU runs another softmax kernel, not measured here) shows here as
    an op that differs."""
    return _note(_cached_verdicts("float ops", lambda: float_op_cases(np.random.default_rng(0))), "mlas-x86-64")


def fp16_matmul_graph(w) -> bytes:
    """An fp16 graph's MatMul by a weight, as onnxconverter-common leaves it: A [M, K] fp16 ->
    MatMul by B = W^T [K, N] fp16 -> Cast to fp32 (which ONNX Runtime fuses with the Cast back to
    fp16 it inserts after the fp32 MatMul it runs, so Y is that MatMul's fp32 output: run.py's taps)."""
    from onnx import TensorProto, helper, numpy_helper

    N, K = w.shape
    b = numpy_helper.from_array(np.ascontiguousarray(fp16_clamped(w).T), "B")  # [K, N]
    nodes = [helper.make_node("MatMul", ["A", "B"], ["Y16"]), helper.make_node("Cast", ["Y16"], ["Y"], to=TensorProto.FLOAT)]
    return product_model(nodes, [b], K, N, TensorProto.FLOAT16)


@functools.lru_cache(maxsize=None)
def fp16_matmul_compute() -> dict:
    """The keys of nbits_compute for an fp16 graph's MatMul by a weight: run in fp32 on the weight
    cast from fp16 on every run (the tapped graph is not optimized: no folding), so not packed;
    "product" says whether mlas.gemm_batch_weight sums it as this onnxruntime does here."""
    import onnxruntime as ort

    from ...quant import to_fp16
    from .sim import fp16_values

    lands = _lands(fp16_matmul_graph, "gemm-batch", fp16_values, feed=lambda x: to_fp16(x).astype(np.float16))
    return _gemm_batch_verdict("MatMul (fp16 weight)", lands, ort.__version__)
