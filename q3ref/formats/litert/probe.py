"""Which float kernels this machine's LiteRT runtime runs, found by running them.

The builtin-kernel simulation (quant.rms_norm_builtin, attention_builtin) is bit-exact only if
the interpreter computes as the build it was measured on: Eigen without FMA, sums in 8 fp32
lanes, BATCH_MATMUL as rounded multiply then rounded add. A different wheel, or one that picks
kernels by ISA, could compute otherwise. So q3ref writes one-op graphs (MEAN, SOFTMAX,
BATCH_MATMUL, LOGISTIC, hybrid int8 and int4 FULLY_CONNECTED), runs them through the same interpreter on fixed random inputs and compares
each output with its emulation, bit for bit. XNNPACK (the default delegate) picks microkernels
by ISA: its MEAN and RSQRT (litert-torch's RMSNorm), its float unary ops (LOGISTIC, SQRT, and
Qwen3.5's LOG, EXP, SIN, COS), its products and Qwen3.5's depthwise conv (fp32, and the hybrid
int8 one that it leaves to the builtin kernel) are probed the same way against xnnpack.py.
The verdicts are per op and cached per runtime version and CPU. A simulation takes each
emulation whose ops were found (xnnpack.PROBED_BY), and a graph's report is held to the ops
that graph runs (narrowed).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ...quant import (attention_builtin, dynamic_int4_linear, dynamic_int8_linear, exp_eigen, hybrid_dwconv, int4_blockwise,
                      int8_per_channel, lane_sum, logistic_eigen, matmul_sequential)
from ..cpu import cached, cpu_id

EMULATED = "eigen-avx-nofma"  # the variant q3ref emulates: 8 lanes, no FMA
XNNPACK_EMULATED = "xnnpack-avx512f"  # rsum 16 lanes x 2 accumulators, vrsqrt14ps + one Newton step
PROBES = 19  # the probe set's revision: a verdict cached from another set is probed again


def _tensor(shape, kind, buffer, name):
    from ai_edge_litert import schema_py_generated as s

    t = s.TensorT()
    t.shape, t.type, t.buffer, t.name = list(shape), getattr(s.TensorType, kind), buffer, name
    return t


def _buffer(array=None):  # buffer 0 is the empty one every activation points to
    from ai_edge_litert import schema_py_generated as s

    b = s.BufferT()
    if array is not None:
        b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
    return b


def _op(index, inputs, outputs, options=None):
    from ai_edge_litert import schema_py_generated as s

    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = index, list(inputs), list(outputs)
    if options is not None:
        op.builtinOptionsType, op.builtinOptions = options
    return op


def _model(opcodes, tensors, ops, n_inputs, buffers, version=1) -> bytes:
    """A one-subgraph .tflite (the schema ai-edge-litert ships): inputs are tensors 0..n_inputs-1,
    the output tensor n_inputs, which is where run_builtin and run_delegated read it."""
    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils as fu

    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, list(range(n_inputs)), [n_inputs], ops
    codes = []
    for opcode in opcodes:
        code = s.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = opcode, min(opcode, 127), version
        codes.append(code)
    m = s.ModelT()
    m.version, m.operatorCodes, m.subgraphs, m.buffers, m.description = 3, codes, [sg], buffers, "q3ref probe"
    return bytes(fu.convert_object_to_bytearray(m))


def one_op_graph(opcode, in_shapes, out_shape, options=None) -> bytes:
    """A .tflite with one builtin op on fp32 inputs."""
    from ai_edge_litert import schema_py_generated as s

    n_in = len(in_shapes)
    tensors = [_tensor(sh, "FLOAT32", 0, f"in{k}") for k, sh in enumerate(in_shapes)] + [_tensor(out_shape, "FLOAT32", 0, "out")]
    buffers, extra = [_buffer()], []  # constant int32 inputs (MEAN's axis), one buffer each
    if opcode == s.BuiltinOperator.MEAN:
        tensors.append(_tensor([1], "INT32", 1, "axis"))
        buffers.append(_buffer(np.array([len(in_shapes[0]) - 1], np.int32)))
        extra = [len(tensors) - 1]
    return _model([opcode], tensors, [_op(0, list(range(n_in)) + extra, [n_in], options)], n_in, buffers)


def hybrid_fc_graph(x_shape, w_q, w_scale, bias=None) -> bytes:
    """A .tflite with one hybrid FULLY_CONNECTED as litert-torch's dynamic_int8 writes it: fp32
    input [N, K], int8 weights [O, K] with a scale per output channel, keep_num_dims, symmetric
    run-time input quantization; no bias, or an fp32 one [O] (Qwen3.5's in_proj_a carries
    dt_bias so)."""
    from ai_edge_litert import schema_py_generated as s

    (N, K), O = x_shape, w_q.shape[0]
    tensors = [_tensor((N, K), "FLOAT32", 0, "in0"), _tensor((N, O), "FLOAT32", 0, "out"), _tensor((O, K), "INT8", 1, "w")]
    q = s.QuantizationParametersT()
    q.scale, q.zeroPoint, q.quantizedDimension = [float(v) for v in w_scale], [0] * O, 0
    tensors[2].quantization = q
    buffers = [_buffer(), _buffer(w_q.astype(np.int8))]
    if bias is not None:
        tensors.append(_tensor((O,), "FLOAT32", 2, "bias"))
        buffers.append(_buffer(np.asarray(bias, np.float32)))
    opts = s.FullyConnectedOptionsT()
    opts.keepNumDims, opts.asymmetricQuantizeInputs = True, False
    op = _op(0, [0, 2, -1 if bias is None else 3], [1], (s.BuiltinOptions.FullyConnectedOptions, opts))
    return _model([s.BuiltinOperator.FULLY_CONNECTED], tensors, [op], 1, buffers, version=5)


def float_fc_graph(x_shape, w, bias=None) -> bytes:
    """A .tflite with one FULLY_CONNECTED on fp32 weights [O, K], keep_num_dims, as litert-torch's
    fp32 export writes its projections: no bias, or an fp32 one [O] (Qwen3.5's in_proj_a)."""
    from ai_edge_litert import schema_py_generated as s

    (N, K), O = x_shape, w.shape[0]
    tensors = [_tensor((N, K), "FLOAT32", 0, "in0"), _tensor((N, O), "FLOAT32", 0, "out"), _tensor((O, K), "FLOAT32", 1, "w")]
    buffers = [_buffer(), _buffer(w.astype(np.float32))]
    if bias is not None:
        tensors.append(_tensor((O,), "FLOAT32", 2, "bias"))
        buffers.append(_buffer(np.asarray(bias, np.float32)))
    opts = s.FullyConnectedOptionsT()
    opts.keepNumDims = True
    op = _op(0, [0, 2, -1 if bias is None else 3], [1], (s.BuiltinOptions.FullyConnectedOptions, opts))
    return _model([s.BuiltinOperator.FULLY_CONNECTED], tensors, [op], 1, buffers)


def dwconv_graph(x_shape, kernel, scale=None) -> bytes:
    """A .tflite with one DEPTHWISE_CONV_2D over time as litert-torch writes Qwen3.5's causal conv:
    input [1, 1, T + C - 1, channels] fp32, filter [1, 1, C, channels] (kernel [channels, C]: fp32,
    or int8 values with a scale per channel, the hybrid kernel), a zero fp32 bias, VALID padding."""
    from ai_edge_litert import schema_py_generated as s

    (L, ch), C = x_shape, kernel.shape[1]
    kind = "FLOAT32" if scale is None else "INT8"
    tensors = [_tensor((1, 1, L, ch), "FLOAT32", 0, "in0"), _tensor((1, 1, L - C + 1, ch), "FLOAT32", 0, "out"),
               _tensor((1, 1, C, ch), kind, 1, "w"), _tensor((ch,), "FLOAT32", 2, "bias")]
    if scale is not None:
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = [float(v) for v in scale], [0] * ch, 3
        tensors[2].quantization = q
    w = kernel.T[None, None].astype(np.float32 if scale is None else np.int8)  # [1, 1, C, channels]
    buffers = [_buffer(), _buffer(w), _buffer(np.zeros(ch, np.float32))]
    opts = s.DepthwiseConv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH, opts.depthMultiplier = s.Padding.VALID, 1, 1, 1
    opts.dilationWFactor, opts.dilationHFactor = 1, 1
    op = _op(0, [0, 2, 3], [1], (s.BuiltinOptions.DepthwiseConv2DOptions, opts))
    return _model([s.BuiltinOperator.DEPTHWISE_CONV_2D], tensors, [op], 1, buffers)


def dwconv_probe() -> dict:
    """{DEPTHWISE_CONV_2D_FLOAT, DEPTHWISE_CONV_2D_INT8: True if the delegated run equals
    xnnpack.dwconv, quant.hybrid_dwconv}: Qwen3.5's shapes (C = 4), a prefill and a 1-token
    decode (the call whose input scale a double difference missed), channels a masked tail."""
    from . import xnnpack

    rng = np.random.default_rng(1)
    ok_float = ok_int8 = True
    for L, ch in ((67, 128), (4, 200), (20, 40)):
        x = (rng.standard_normal((L, ch)) * rng.uniform(0.1, 8, ch)).astype(np.float32)
        kernel = (rng.standard_normal((ch, 4)) * 0.3).astype(np.float32)
        got = run_delegated(dwconv_graph(x.shape, kernel), [x[None, None]])  # [1, 1, T, channels]
        ok_float = ok_float and bool(np.array_equal(got, xnnpack.dwconv(x, kernel)[None, None]))
        wq, ws, _ = int8_per_channel(kernel)
        got = run_delegated(dwconv_graph(x.shape, wq, ws), [x[None, None]])
        ok_int8 = ok_int8 and bool(np.array_equal(got, hybrid_dwconv(x, wq, ws)[None, None]))
    return {"DEPTHWISE_CONV_2D_FLOAT": ok_float, "DEPTHWISE_CONV_2D_INT8": ok_int8}


def int4_fc_graph(x_shape, w_q, w_scale, block) -> bytes:
    """A .tflite with one FULLY_CONNECTED on int4 weights [O, K] (two a byte, the low nibble first)
    with an fp16 scale per block of `block` inputs, as litert-torch's dynamic_int4_block writes it:
    asymmetric run-time input quantization on both runtimes."""
    from ai_edge_litert import schema_py_generated as s

    (N, K), O = x_shape, w_q.shape[0]
    tensors = [_tensor((N, K), "FLOAT32", 0, "in0"), _tensor((N, O), "FLOAT32", 0, "out"),
               _tensor((O, K), "INT4", 1, "w"), _tensor((O, K // block), "FLOAT16", 2, "w_scale")]
    blocks = s.BlockwiseQuantizationT()
    blocks.scales, blocks.zeroPoints, blocks.blockSize = 3, -1, block
    q = s.QuantizationParametersT()
    q.detailsType, q.details = s.QuantizationDetails.BlockwiseQuantization, blocks
    tensors[2].quantization = q
    nibbles = (w_q.astype(np.int8).reshape(-1) & 0x0F).astype(np.uint8)  # [O * K]
    opts = s.FullyConnectedOptionsT()
    opts.keepNumDims, opts.asymmetricQuantizeInputs = True, False
    op = _op(0, [0, 2, -1], [1], (s.BuiltinOptions.FullyConnectedOptions, opts))
    return _model([s.BuiltinOperator.FULLY_CONNECTED], tensors, [op], 1,
                  [_buffer(), _buffer(nibbles[0::2] | (nibbles[1::2] << 4)), _buffer(w_scale.astype(np.float16))],
                  version=5)


def int4_fc_probe(runtime, run) -> bool:
    """The int4 blockwise FULLY_CONNECTED through `run` against quant.dynamic_int4_linear, bit for
    bit. Rows 0 and 1 have range 255 (multiplier 1) and hold rounding corners: 0.49999997, which
    the builtin kernel rounds to 1 and roundf to 0. Block scales span 2^-12 .. 2^6, so the fp32
    sums over blocks round, and differently in another order. Rows 2-13 sit near their maximum
    and meet same-signed weights (outputs 0-23): at block 128 a block's integer sum times its
    scale then needs more than 24 bits, where an FMA and a rounded product differ (on 7-12 of
    those 288 outputs in six random draws of this construction)."""
    rng = np.random.default_rng(1)
    N, K, O = 24, 2048, 48
    a = (rng.standard_normal((N, K)) * rng.uniform(0.1, 30, (N, 1)) + rng.uniform(-20, 20, (N, 1))).astype(np.float32)
    a[0] = np.clip(a[0], 0, 255)
    a[0, :4] = [255, 0, 0.49999997, 1.4999999]  # min 0, max 255
    a[1] = np.clip(a[1], -128, 127)
    a[1, :6] = [127, -128, -0.49999997, 0.49999997, 2.5, -2.5]  # min -128, max 127
    a[2:14] = 29 + rng.uniform(0, 1, (12, K))
    a[2:14, 0] = 0  # [N, K]
    w = rng.uniform(-1, 1, (O, K))
    w[:24] = rng.uniform(0.6, 1, (24, K))
    w = (w * (np.exp2(rng.integers(-12, 7, (O, K // 128))) * rng.uniform(0.5, 1, (O, K // 128))).repeat(128, axis=1)
         ).astype(np.float32)  # [O, K]
    ok = True
    for block in (32, 128):
        w_q, w_scale, _ = int4_blockwise(w, block)  # scales on the bf16 grid: fp16 holds them exactly here
        got = run(int4_fc_graph(a.shape, w_q, w_scale, block), [a])
        ok = ok and bool(np.array_equal(got, dynamic_int4_linear(block, runtime, "numpy", cache=False)(a, w)))
    return ok


def mean_of_squares_graph(shape) -> bytes:
    """MUL(x, x) then MEAN over the last axis: odml.rms_norm's start, which XNNPACK fuses into one
    reduction (f32-rsum2) that a one-op MEAN never runs."""
    from ai_edge_litert import schema_py_generated as s

    tensors = [_tensor(shape, "FLOAT32", 0, "in0"), _tensor(shape[:-1], "FLOAT32", 0, "out"),
               _tensor(shape, "FLOAT32", 0, "squares"), _tensor((1,), "INT32", 1, "axis")]
    opts = s.ReducerOptionsT()
    opts.keepDims = False
    ops = [_op(0, [0, 0], [2], (s.BuiltinOptions.MulOptions, s.MulOptionsT())),
           _op(1, [2, 3], [1], (s.BuiltinOptions.ReducerOptions, opts))]
    return _model([s.BuiltinOperator.MUL, s.BuiltinOperator.MEAN], tensors, ops, 1,
                  [_buffer(), _buffer(np.array([len(shape) - 1], np.int32))])


SDPA_GRAPH = Path(__file__).with_name("sdpa_probe.tflite")  # litert-torch's attention composite alone


def sdpa_probe(run, emulation) -> bool:
    """The committed composite graph (scripts/make_sdpa_probe.py) run by `run` on fixed random
    q, k, v and a causal additive mask, against `emulation(offset=0, width=T)` bit for bit."""
    from ai_edge_litert.interpreter import Interpreter

    graph = SDPA_GRAPH.read_bytes()
    try:
        details = Interpreter(model_content=graph).get_input_details()
    except (RuntimeError, ValueError):  # a runtime that cannot load the composite: not emulated
        return False
    shapes = [tuple(d["shape"]) for d in sorted(details, key=lambda d: d["index"])]
    rng = np.random.default_rng(0)
    q, k, v = ((rng.standard_normal(sh) * 2).astype(np.float32) for sh in shapes[:3])  # [1, T, H|Hkv, Dh]
    T = q.shape[1]
    mask = np.where(np.tril(np.ones((T, T), bool)), np.float32(0), np.float32(-np.inf))[None, None]  # [1, 1, T, T]
    got = run(graph, [q, k, v, mask])
    return bool(np.array_equal(got, emulation(0, T)(q, k, v, np.ones((1, T), bool))))


def _invoke(graph: bytes, inputs, **options) -> np.ndarray | None:
    """One invocation; None where the interpreter refuses the graph or fails to run it (a runtime
    version without that kernel), so that op counts as not emulated and the others are still probed."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        it = Interpreter(model_content=graph, **options)
        it.allocate_tensors()
        for k, x in enumerate(inputs):
            it.set_tensor(k, x)
        it.invoke()
        return it.get_tensor(len(inputs))
    except (RuntimeError, ValueError):  # what the interpreter raises on a graph it cannot prepare or run
        return None


def run_builtin(graph: bytes, inputs) -> np.ndarray | None:
    """One invocation on the builtin kernels, as diff's builtin runtime runs graphs."""
    from ai_edge_litert.interpreter import OpResolverType

    return _invoke(graph, inputs, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def eigen_max_kc(run=run_builtin) -> int | None:
    """The largest K (a multiple of 8) that the builtin float FULLY_CONNECTED sums as one block
    (quant.eigen_kc), found by bisection on one-op graphs; None where even a short K is not the
    sequential sum (another kernel). Then checked on shapes that need 2 to 9 blocks, with output
    widths past a multiple of 8 and input rows past a multiple of 4 (quant.eigen_tail), and on a
    1-row product (Eigen's matrix-vector one, quant.eigen_gemv) of an odd width."""
    from ...quant import eigen_float_linear, matmul_blocks_numpy

    rng = np.random.default_rng(2)

    def one_block(K):
        a, w = rng.standard_normal((8, K)).astype(np.float32), rng.standard_normal((48, K)).astype(np.float32)
        return bool(np.array_equal(run(float_fc_graph(a.shape, w), [a]), matmul_blocks_numpy(a, w.T, K)))

    lo, hi = 48, 16384  # one_block(lo), not one_block(hi), for any L1 up to 768 KB
    if not one_block(lo) or one_block(hi):
        return None
    while hi - lo > 8:
        mid = (lo + hi) // 16 * 8
        lo, hi = (mid, hi) if one_block(mid) else (lo, mid)
    for N, K, O in ((13, 2 * lo + 40, 53), (6, lo + 20, 47), (2, 9 * lo - 3, 64), (1, 2 * lo + 3, 49)):
        a, w = rng.standard_normal((N, K)).astype(np.float32), rng.standard_normal((O, K)).astype(np.float32)
        if not np.array_equal(run(float_fc_graph(a.shape, w), [a]), eigen_float_linear(lo, cache=False)(a, w)):
            return None
    return lo


def probe_kernels() -> dict:
    """{op: True if this runtime's builtin kernel equals q3ref's emulation bit for bit}."""
    from ai_edge_litert import schema_py_generated as s

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((24, 136)) * 3).astype(np.float32)  # 136: 17 packets of 8
    out = {}
    mean_opts = s.ReducerOptionsT()
    mean_opts.keepDims = False
    got = run_builtin(one_op_graph(s.BuiltinOperator.MEAN, [x.shape], [24], (s.BuiltinOptions.ReducerOptions, mean_opts)), [x])
    out["MEAN"] = bool(np.array_equal(got, lane_sum(x) / np.float32(x.shape[1])))
    sm_opts = s.SoftmaxOptionsT()
    sm_opts.beta = 1.0
    got = run_builtin(one_op_graph(s.BuiltinOperator.SOFTMAX, [x.shape], x.shape, (s.BuiltinOptions.SoftmaxOptions, sm_opts)), [x])
    e = exp_eigen(x - x.max(axis=1, keepdims=True))
    out["SOFTMAX"] = bool(np.array_equal(got, e * (np.float32(1) / lane_sum(e))[:, None]))
    a, b = x[None, :, :40], (rng.standard_normal((1, 40, 12))).astype(np.float32)
    bm_opts = s.BatchMatMulOptionsT()
    got = run_builtin(one_op_graph(s.BuiltinOperator.BATCH_MATMUL, [a.shape, b.shape], (1, 24, 12),
                                   (s.BuiltinOptions.BatchMatMulOptions, bm_opts)), [a, b])
    out["BATCH_MATMUL"] = bool(np.array_equal(got, matmul_sequential(a, b)))
    z = np.concatenate([x.ravel(), np.linspace(-110, 20, 4096, dtype=np.float32)])[None, :]  # both clips
    got = run_builtin(one_op_graph(s.BuiltinOperator.LOGISTIC, [z.shape], z.shape), [z])
    out["LOGISTIC"] = bool(np.array_equal(got, logistic_eigen(z)))
    # the hybrid int8 FULLY_CONNECTED (its run-time quantization and rescale), at a width past
    # one exact fp32 chunk of the emulation and a row count that is no multiple of 4 or 8
    a = (rng.standard_normal((13, 1100)) * rng.uniform(0.1, 30, (13, 1))).astype(np.float32)
    a[0, :6] = [127, 0.49999997, -0.49999997, 1.4999999, 2.5, -2.5]  # inv = 1 in row 0: its rounding's corners
    w_q, w_scale, _ = int8_per_channel(rng.standard_normal((40, 1100)).astype(np.float32))
    got = run_builtin(hybrid_fc_graph(a.shape, w_q, w_scale), [a])
    want = dynamic_int8_linear("builtin", "numpy", cache=False)(a, (w_q.astype(np.float32) * w_scale[:, None]))
    out["FULLY_CONNECTED"] = bool(np.array_equal(got, want))
    out["FULLY_CONNECTED_INT4"] = int4_fc_probe("builtin", run_builtin)
    max_kc = eigen_max_kc()  # its float FULLY_CONNECTED (fp32, fp16 and weight-only int8 graphs): Eigen's GEMM
    out["FULLY_CONNECTED_FLOAT"] = max_kc is not None
    out["SDPA"] = sdpa_probe(run_builtin, lambda offset, width: attention_builtin(offset))  # its decomposition
    return out, {"eigen_max_kc": max_kc}


def probe_xnnpack() -> dict:
    """{op: True if XNNPACK (the default delegate) computes it as xnnpack.py does, bit for bit}."""
    from ai_edge_litert import schema_py_generated as s

    from . import xnnpack

    rng = np.random.default_rng(0)
    out = {}
    ok = True
    for C in (40, 48, 1024):  # a masked tail, whole 16-blocks, the 0.6B's width
        x = (rng.standard_normal((32, C)) ** 2 * rng.uniform(0, 1000, (32, 1))).astype(np.float32)
        opts = s.ReducerOptionsT()
        opts.keepDims = False
        got = run_delegated(one_op_graph(s.BuiltinOperator.MEAN, [x.shape], [32],
                                         (s.BuiltinOptions.ReducerOptions, opts)), [x])
        ok = ok and bool(np.array_equal(got, xnnpack.mean(x)))
    out["MEAN"] = ok
    ok = True  # MUL + MEAN, fused into f32-rsum2: widths below 64 (where it equals the unfused sum), 128, 1024
    for C in (48, 128, 1024):
        x = (rng.standard_normal((32, C)) * rng.uniform(0, 30, (32, 1))).astype(np.float32)
        got = run_delegated(mean_of_squares_graph(x.shape), [x])
        ok = ok and bool(np.array_equal(got, xnnpack.sum_squares(x) * (np.float32(1) / np.float32(C))))
    out["MEAN_OF_SQUARES"] = ok
    x = np.exp(rng.uniform(-20, 20, (64, 256))).astype(np.float32)
    got = run_delegated(one_op_graph(s.BuiltinOperator.RSQRT, [x.shape], x.shape), [x])
    out["RSQRT"] = xnnpack.available() and bool(np.array_equal(got, xnnpack.rsqrt(x)))
    got = run_delegated(one_op_graph(s.BuiltinOperator.SQRT, [x.shape], x.shape), [x])
    out["SQRT"] = xnnpack.available() and bool(np.array_equal(got, xnnpack.sqrt(x)))
    # the gate's range; then any float32 (huge ones lose t to rounding, and some give NaN), and
    # those where z / ln2 overflows, which the binary sends to 0 or 1 and its source to NaN
    bits = rng.integers(0, 2 ** 32, 8192, dtype=np.uint64).astype(np.uint32)
    z = np.concatenate([(rng.standard_normal(20000) * 4).astype(np.float32), np.linspace(-110, 110, 4001, dtype=np.float32),
                        bits.view(np.float32),  # (kept float32: through float64, a signaling NaN would be quieted)
                        np.float32([np.inf, -np.inf, 2.3587e38, -3e38, 2.3586e38, 1.7e9, -6.8e15])])[None, :]
    got = run_delegated(one_op_graph(s.BuiltinOperator.LOGISTIC, [z.shape], z.shape), [z])
    out["LOGISTIC"] = bool(np.array_equal(got, xnnpack.sigmoid(z), equal_nan=True))
    # LOG (Qwen3.5's softplus): positive values around 1 .. 50, then any float32, subnormals and specials
    bits = rng.integers(0, 2 ** 32, 8192, dtype=np.uint64).astype(np.uint32)
    z = np.concatenate([np.exp(rng.uniform(-1, 4, 8192)).astype(np.float32), bits.view(np.float32),
                        np.float32([0, -0.0, -1, np.inf, -np.inf, 1e-45, -1e-40, 1.1754944e-38, 3.4e38])])[None, :]
    got = run_delegated(one_op_graph(s.BuiltinOperator.LOG, [z.shape], z.shape), [z])
    out["LOG"] = bool(np.array_equal(got, xnnpack.log(z), equal_nan=True))
    # EXP (the same softplus): its range, then any float32 (NaN, inf, overflow, flushed results)
    z = np.concatenate([(rng.standard_normal(8192) * 20).astype(np.float32), np.linspace(-110, 110, 4001, dtype=np.float32),
                        bits.view(np.float32), np.float32([np.nan, np.inf, -np.inf, 88.72, 89, -87.4, -104])])[None, :]
    got = run_delegated(one_op_graph(s.BuiltinOperator.EXP, [z.shape], z.shape), [z])
    out["EXP"] = bool(np.array_equal(got, xnnpack.exp(z), equal_nan=True))
    # SIN and COS (Qwen3.5's RoPE tables): angles as its positions make them, then any float32
    z = np.concatenate([(np.arange(8192, dtype=np.float32)[:, None] * np.float32([1, 0.0178, 3.2e-4])).reshape(-1),
                        (rng.standard_normal(8192) * 100).astype(np.float32), bits.view(np.float32),
                        np.float32([np.nan, np.inf, -np.inf, -0.0, 1e-40])])[None, :]
    for name, fn in (("SIN", xnnpack.sin), ("COS", xnnpack.cos)):
        got = run_delegated(one_op_graph(getattr(s.BuiltinOperator, name), [z.shape], z.shape), [z])
        out[name] = bool(np.array_equal(got, fn(z), equal_nan=True))
    ok = True  # its dynamic FULLY_CONNECTED (qd8 activations, the epilogue's order), three shapes, one with a bias
    for N, K, biased in ((13, 1100, False), (64, 48, True), (7, 3072, False)):
        a = (rng.standard_normal((N, K)) * rng.uniform(0.1, 30, (N, 1))).astype(np.float32)
        w_q, w_scale, _ = int8_per_channel(rng.standard_normal((40, K)).astype(np.float32))
        bias = (rng.standard_normal(40) * 3).astype(np.float32) if biased else None
        got = run_delegated(hybrid_fc_graph(a.shape, w_q, w_scale, bias), [a])
        want = dynamic_int8_linear("xnnpack", "numpy", cache=False)(a, w_q.astype(np.float32) * w_scale[:, None], bias)
        ok = ok and bool(np.array_equal(got, want))
    out["FULLY_CONNECTED"] = ok
    out["FULLY_CONNECTED_INT4"] = int4_fc_probe("xnnpack", run_delegated)
    ok = True  # its float FULLY_CONNECTED (fp32 and fp16 graphs): an FMA chain over K, in order, from the bias
    for N, K, biased in ((9, 1100, False), (64, 48, True)):
        a = (rng.standard_normal((N, K)) * rng.uniform(0.1, 30, (N, 1))).astype(np.float32)
        w = rng.standard_normal((40, K)).astype(np.float32)
        bias = (rng.standard_normal(40) * 3).astype(np.float32) if biased else None
        got = run_delegated(float_fc_graph(a.shape, w, bias), [a])
        ok = ok and bool(np.array_equal(got, xnnpack.f32_gemm_linear(cache=False)(a, w, bias)))
    out["FULLY_CONNECTED_FLOAT"] = ok
    out.update(dwconv_probe())  # Qwen3.5's causal conv: f32-dwconv, and the builtin hybrid kernel under the delegate
    out["SDPA"] = xnnpack.available() and sdpa_probe(run_delegated, xnnpack.attention)  # the delegate's own subgraph
    return out


def run_delegated(graph: bytes, inputs) -> np.ndarray | None:
    """One invocation with the default delegate (XNNPACK), as diff's xnnpack runtime runs graphs."""
    return _invoke(graph, inputs)


def _variant(runtime: str, probe, emulated: str) -> dict:
    """{"variant", "ops", "runtime", "cpu", "emulated"}: probed once per runtime version, CPU and kernel set."""
    from importlib.metadata import version

    key = f"ai-edge-litert {version('ai-edge-litert')} {runtime} on {cpu_id()}, probes {PROBES}"

    def verdict():
        found = probe()
        ops, params = found if isinstance(found, tuple) else (found, {})  # params: what an emulation needs to know
        return {"ops": ops, "params": params, "variant": emulated if all(ops.values()) else "unknown"}
    hit = cached("litert_probe.json", key, verdict)
    return {"variant": hit["variant"], "ops": hit["ops"], "runtime": key.split(" on ")[0], "cpu": cpu_id(),
            "emulated": hit["variant"] == emulated, "name": emulated, "params": hit.get("params", {})}


def narrowed(note: dict, ops) -> dict:
    """A probe note held to the ops one graph runs: emulated where each of those is, whatever the
    probe found of the others. Its variant is the emulated one's name there, else "unknown"."""
    held = {op: bool(note["ops"].get(op, False)) for op in ops}
    emulated = all(held.values())
    other = [op for op, ok in note["ops"].items() if not ok and op not in held]
    return dict(note, ops=held, emulated=emulated, variant=note.get("name", note["variant"]) if emulated else "unknown",
                **({"differ_unused": other} if other else {}))


@functools.lru_cache(maxsize=None)
def builtin_variant() -> dict:
    return _variant("builtin", probe_kernels, EMULATED)


@functools.lru_cache(maxsize=None)
def xnnpack_variant() -> dict:
    """XNNPACK's RMSNorm ops (MEAN, RSQRT), LOGISTIC, SQRT, and Qwen3.5's LOG, EXP, SIN, COS and
    depthwise convs as formats/litert/xnnpack.py (and quant.hybrid_dwconv) emulate them,
    its dynamic FULLY_CONNECTED as quant.dynamic_int8_linear('xnnpack') does and its int4 one as
    xnnpack.int4_linear does, or not."""
    return _variant("xnnpack", probe_xnnpack, XNNPACK_EMULATED)
