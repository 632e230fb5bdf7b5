"""XNNPACK's float kernels for the ops of litert-torch's RMSNorm (odml.rms_norm's decomposition:
MUL, MEAN, ADD, RSQRT, MUL, MUL) and SwiGLU's LOGISTIC, bit for bit, as ai-edge-litert's default delegate runs them on
an AVX-512 CPU. Each was found by running one-op graphs through the delegate (probe.py) and
reading XNNPACK's microkernels:

- MEAN over the last axis: f32-rsum with 16 lanes and 2 accumulators, 32 values a step; the
  full 16-value blocks left over go to the first accumulator, the two are added, then the masked
  tail (C % 16 values), then the lanes as a tree of halves (512 -> 256 -> 128 -> 64 -> 32 bits),
  then times 1/C in fp32. Matched on every row for C = 8 .. 3072. SUM is the same sum (scale 1).
- RSQRT: vrsqrt14ps (14-bit table estimate, the CPU's own instruction) and one Newton-Raphson
  step written without FMA, y = y0 - (0.5 y0) (x (y0 y0) - 1), each op rounded. Matched on 65536
  values spread over 2^-29 .. 2^29; 1/sqrtf agrees on 67% of them, the exact value on 80%.

- LOGISTIC (SiLU's sigmoid): f32-vsigmoid avx512f_rr2_lut32_p2_perm2_scalef_div: z = -|x|,
  exp(z) from a 32-entry table of 2^(i/32) and a degree-2 polynomial, each step an FMA, scalef,
  then e / (1 + e), 1 - that for x >= 0; a result under 2^-126 is flushed to 0 (XNNPACK runs with
  denormals off). Matched on 44001 values over -110 .. 110; without the flush 303 were off.

- SQRT: f32-vsqrt avx512f_rsqrt, x * RSQRT(x) with x = 0 kept 0 (litert-torch's final L2 norm,
  with SUM as MEAN's sum).

- FULLY_CONNECTED with float weights (fp32, or fp16 widened at load): f32-gemm 7x32 avx512f_broadcast,
  each output an FMA chain over the inputs in order from 0 (no bias): f32_gemm_linear. With it
  the fp32 and fp16 stress graphs are the simulation's at every tap.

- LOGISTIC beyond the source: where z / ln2 overflows (|x| >= 2.3587e38, inf) the binary gives
  exactly 0 or 1; its source, as written, NaN. Measured, and held by the probe.

- FULLY_CONNECTED on int4 blocks (qd8-f32-qb4w-gemm): exact integer sums per block, but the fp32
  sums over blocks in the kernel's own order (int4_linear, at the end of this file).

The RSQRT estimate is the CPU's: q3ref executes the same instruction through Numba (an LLVM
intrinsic), so this emulation exists only where the CPU has AVX-512F, which is also where
XNNPACK picks that kernel. Elsewhere XNNPACK runs rsqrtps (12-bit, and vendor-specific):
`available()` is False there and the simulation says it is approximate.
"""

from __future__ import annotations

import functools
import itertools

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..fp32 import fma, fma32 as _fma32

F32 = np.float32
LANES = 16


# ------------------------------------------------------------ which emulations hold on this CPU
# The probe ops (probe.probe_xnnpack) each emulation here stands on. A simulation takes an
# emulation only where the probe found every one of its ops computed so by this CPU's XNNPACK,
# and a graph's report is held to the ops that graph runs: an EXP that differs on some build
# (Qwen3.5's softplus) then costs a Qwen3 graph, which runs no EXP, nothing.
PROBED_BY = {
    "rms_norm": ("MEAN_OF_SQUARES", "RSQRT"),  # MUL + MEAN fused into f32-rsum2, then RSQRT
    "l2norm": ("MEAN_OF_SQUARES", "RSQRT"),  # MUL + SUM, the same rsum2
    "normalize": ("MEAN_OF_SQUARES", "SQRT"),
    "silu_mul": ("LOGISTIC",),
    "sigmoid": ("LOGISTIC",),
    "softplus": ("EXP", "LOG"),
    "rope_tables": ("SIN", "COS"),
    "attention": ("SDPA",),
    "f32_gemm_linear": ("FULLY_CONNECTED_FLOAT",),
    "dwconv": ("DEPTHWISE_CONV_2D_FLOAT",),
    "hybrid_dwconv": ("DEPTHWISE_CONV_2D_INT8",),  # quant.hybrid_dwconv: the builtin kernel, which XNNPACK leaves it to
    "dynamic_int8_linear": ("FULLY_CONNECTED",),
    "int4_linear": ("FULLY_CONNECTED_INT4",),
}


def probe_ops(*emulations) -> list[str]:  # the probe ops behind these emulations, each once
    return list(dict.fromkeys(op for name in emulations for op in PROBED_BY[name]))


def emulates(*emulations) -> bool:
    """Whether the probe found all the ops behind these emulations (PROBED_BY) this CPU's, bit for bit."""
    from . import probe

    ops = probe.xnnpack_variant()["ops"]
    return all(ops.get(op, False) for op in probe_ops(*emulations))


@intrinsic
def _rsqrt14_x16(typingctx, src, dst):  # addresses of 16 float32 each
    def codegen(context, builder, signature, args):
        vec = ir.VectorType(ir.FloatType(), LANES)
        x = builder.load(builder.inttoptr(args[0], vec.as_pointer()), align=4)
        fn = builder.module.declare_intrinsic("llvm.x86.avx512.rsqrt14.ps.512",
                                              fnty=ir.FunctionType(vec, [vec, vec, ir.IntType(16)]))
        y = builder.call(fn, [x, ir.Constant(vec, None), ir.Constant(ir.IntType(16), 0xFFFF)])
        builder.store(y, builder.inttoptr(args[1], vec.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.void(types.intp, types.intp), codegen


@numba.njit(cache=True)
def _rsqrt14(x, out):  # x, out: float32, contiguous, a multiple of 16 long
    for i in range(0, x.size, LANES):
        _rsqrt14_x16(x.ctypes.data + 4 * i, out.ctypes.data + 4 * i)


@numba.njit(cache=True, nogil=True)
def _matmul_fma(a, b, out):  # [M, K] @ [K, N] -> out [M, N], zeroed: each output an FMA chain over K in order
    M, K = a.shape
    N = b.shape[1]
    for m in range(M):
        for k in range(K):  # k outside n: the chain's order per output, and n vectorizes
            x = a[m, k]
            for n in range(N):
                out[m, n] = _fma32(x, b[k, n], out[m, n])


def matmul_fma(a, b, bias=None):  # [M, K] @ [K, N] (+ [N]) -> [M, N] fp32: f32-gemm avx512f_broadcast's order
    """Each output's chain starts from its bias (the packed weights' first values), or 0. Rows
    split over the cores from FMA_THREAD_ROWS rows each on (each output's chain is its own)."""
    from ...kernels import by_rows

    a, b = np.ascontiguousarray(a, F32), np.ascontiguousarray(b, F32)
    out = np.zeros((a.shape[0], b.shape[1]), F32)
    if bias is not None:
        out += np.asarray(bias, F32)
    by_rows(lambda r0, r1: _matmul_fma(a[r0:r1], b, out[r0:r1]), a.shape[0], FMA_THREAD_ROWS)
    return out


FMA_THREAD_ROWS = 16  # below this many rows a part, a thread costs more than it saves


def f32_gemm_linear(values=None, cache=True):
    """FULLY_CONNECTED with float weights as XNNPACK computes it (matmul_fma's order). values(w):
    the weight as the graph stores it, in fp32 (fp16 graphs: quant.to_fp16). Its speed, 20-30
    GMAC/s on 2 cores against BLAS's ~90 GMAC/s (Zen 4), is why only a diff, which holds a graph,
    runs it."""
    from ...quant import QuantizedWeights

    weights = QuantizedWeights(lambda w: np.ascontiguousarray((values(w) if values else np.asarray(w, F32)).T), cache)

    def linear(x, w, bias=None):  # [N, in], [out, in], [out] -> [N, out]
        return matmul_fma(x, weights(w), bias)  # weights(w): [in, out]
    linear.quantized = weights
    return linear


def matmul_fma_numpy(a, b):  # the plain twin, the FMA in fp64 (a product of two fp32 is exact there)
    out = np.zeros((a.shape[0], b.shape[1]), F32)
    for k in range(a.shape[1]):
        out = fma(a[:, k, None], b[None, k, :], out)
    return out


@functools.cache
def available() -> bool:
    """The CPU has AVX-512F (XNNPACK's avx512f kernels, and vrsqrt14ps for q3ref to run)."""
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def rsqrt14(x):  # float32 [...] -> the CPU's vrsqrt14ps estimate, same shape
    x = np.asarray(x, F32)
    flat = np.ones(-(-x.size // LANES) * LANES, F32)  # padded with 1.0: any finite value would do
    flat[:x.size] = x.ravel()
    out = np.empty_like(flat)
    _rsqrt14(flat, out)
    return out[:x.size].reshape(x.shape)


def rsqrt(x):  # float32 -> float32: f32-vrsqrt avx512f_rsqrt
    x = np.asarray(x, F32)
    y = rsqrt14(x)
    return y - (F32(0.5) * y) * (x * (y * y) - F32(1))


def rsqrt_numpy(x):  # the plain twin: 1/sqrt in fp32 (within 1 ulp of the kernel)
    return F32(1) / np.sqrt(np.asarray(x, F32))


def _halves(acc):  # [N, 16] -> [N]: 16 -> 8 -> 4 -> 2 -> 1, each step low half + high half
    while acc.shape[1] > 1:
        h = acc.shape[1] // 2
        acc = acc[:, :h] + acc[:, h:]
    return acc[:, 0]


def mean(x):  # [N, C] float32 -> [N]: XNNPACK's MEAN over the last axis
    return rsum(x) * (F32(1) / F32(np.asarray(x).shape[1]))


def rsum(x):  # [N, C] float32 -> [N]: XNNPACK's SUM over the last axis (MEAN's sum, before its scale)
    x = np.asarray(x, F32)
    N, C = x.shape
    full = C - C % LANES
    acc0, acc1 = np.zeros((N, LANES), F32), np.zeros((N, LANES), F32)
    j = 0
    while full - j >= 2 * LANES:
        acc0, acc1 = acc0 + x[:, j:j + LANES], acc1 + x[:, j + LANES:j + 2 * LANES]
        j += 2 * LANES
    if j < full:
        acc0 = acc0 + x[:, j:j + LANES]
    acc = acc0 + acc1
    if C > full:
        tail = np.zeros((N, LANES), F32)
        tail[:, :C - full] = x[:, full:]
        acc = acc + tail
    return _halves(acc)


# f32-vsigmoid avx512f_rr2_lut32_p2_perm2_scalef's constants (hex floats, as the kernel writes them)
SIGMOID_TABLE = np.array([float.fromhex(h) for h in (
    "0x1.000000p+0 0x1.059B0Ep+0 0x1.0B5586p+0 0x1.11301Ep+0 0x1.172B84p+0 0x1.1D4874p+0 0x1.2387A6p+0 "
    "0x1.29E9E0p+0 0x1.306FE0p+0 0x1.371A74p+0 0x1.3DEA64p+0 0x1.44E086p+0 0x1.4BFDAEp+0 0x1.5342B6p+0 "
    "0x1.5AB07Ep+0 0x1.6247ECp+0 0x1.6A09E6p+0 0x1.71F75Ep+0 0x1.7A1148p+0 0x1.82589Ap+0 0x1.8ACE54p+0 "
    "0x1.93737Cp+0 0x1.9C4918p+0 0x1.A5503Cp+0 0x1.AE89FAp+0 0x1.B7F770p+0 0x1.C199BEp+0 0x1.CB720Ep+0 "
    "0x1.D5818Ep+0 0x1.DFC974p+0 0x1.EA4AFAp+0 0x1.F50766p+0").split()], F32)  # 2^(i/32)
MAGIC, LOG2E = F32(float.fromhex("0x1.8p18")), F32(float.fromhex("0x1.715476p0"))
MINUS_LN2_HI, MINUS_LN2_LO = F32(float.fromhex("-0x1.62E430p-1")), F32(float.fromhex("0x1.05C61p-29"))
C2, C1 = F32(0.5), F32(float.fromhex("0x1.0000F6p0"))


def dwconv(padded, kernel):  # [T + C - 1, channels], [channels, C] fp32 -> [T, channels]: DEPTHWISE_CONV_2D over time
    """f32-dwconv (Qwen3.5's causal conv in an fp32 graph): from the zero bias, one FMA per tap in
    order. The probe (DEPTHWISE_CONV_2D_FLOAT) tells it from a product rounded before its add."""
    C = kernel.shape[1]
    T = padded.shape[0] - C + 1
    out = np.zeros((T, kernel.shape[0]), F32)
    for j in range(C):
        out = fma(padded[j:j + T], kernel[:, j], out)
    return out


def sigmoid_numpy(x):  # float32 -> float32: XNNPACK's LOGISTIC, the plain twin
    x = np.asarray(x, F32)
    z = (x.view(np.uint32) | np.uint32(0x80000000)).view(F32)  # -|x|: exp never overflows
    with np.errstate(over="ignore", invalid="ignore"):
        n = fma(z, LOG2E, MAGIC)  # z / ln2 rounded to a multiple of 1/32, in the low bits
        table = SIGMOID_TABLE[n.view(np.uint32) & 31]  # 2^(frac), the fraction's 32nds
        overflow = n == -np.inf  # |x| >= 2.3587e38 or inf
        n = n - MAGIC
        t = fma(n, MINUS_LN2_LO, fma(n, MINUS_LN2_HI, z))  # z - n ln2, in two parts
        p = fma(t, C2, C1)
        t = t * table
        p = fma(t, p, table)
        k = np.floor(np.where(n >= -127, n, 0)).astype(np.int32)
        e = np.where(n >= -127, np.ldexp(p, k), p * F32(0)).astype(F32)  # scalef: times 2^floor(n)
        e = np.where(np.abs(e) < np.finfo(F32).tiny, F32(0), e)  # flush to zero
        f = np.where(overflow, F32(0), e / (e + F32(1)))
    return np.where(x.view(np.uint32) >> 31 == 0, F32(1) - f, f)


@intrinsic
def _f32_bits(typingctx, x):  # float32 -> its bits as int32 (a reinterpretation, not a conversion)
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, i):  # int32 bits -> float32
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


# Where z / ln2 overflows (|x| >= 2.3587e38, or inf), the source as written computes NaN (t is
# inf - inf), but the binary returns exactly 0 for -|x| (so 1 or 0 out): measured through the
# interpreter (ai-edge-litert 2.3.0, Zen 4) and held by the LOGISTIC probe, which feeds such x.
@numba.njit(cache=True, nogil=True, error_model="numpy")  # no fastmath: each operation rounded as written
def _sigmoid_into(x, table, out):  # x, out: float32, flat
    """Two loops over the same i (and i from 0, so no negative-index wrap): the table's gather
    alone in the first, so that LLVM vectorizes the second, 7x faster than one scalar loop."""
    tiny = np.float32(np.finfo(np.float32).tiny)
    one, zero, kmin, ninf = np.float32(1), np.float32(0), np.float32(-127), np.float32(-np.inf)
    for i in range(x.shape[0]):
        n = _fma32(_bits_f32(_f32_bits(x[i]) | np.int32(-2147483648)), LOG2E, MAGIC)
        out[i] = table[_f32_bits(n) & np.int32(31)]  # 2^(frac), the fraction's 32nds
    for i in range(x.shape[0]):
        b = _f32_bits(x[i])
        z = _bits_f32(b | np.int32(-2147483648))  # -|x|: exp never overflows
        n = _fma32(z, LOG2E, MAGIC)  # z / ln2 rounded to a multiple of 1/32, in the low bits
        overflow = n == ninf
        s = out[i]
        # floor(n) + 127 from the low bits: n = mantissa / 32 - 2^17 while n >= -2^17
        k = ((_f32_bits(n) & np.int32(0x7FFFFF)) >> np.int32(5)) - np.int32(131072 - 127)
        n = n - MAGIC
        t = _fma32(n, MINUS_LN2_LO, _fma32(n, MINUS_LN2_HI, z))  # z - n ln2, in two parts
        p = _fma32(t, C2, C1)
        t = t * s
        p = _fma32(t, p, s)
        k = k if n >= kmin else np.int32(0)  # below 2^-127 (or NaN): 2^k is +0, e is 0 (or NaN)
        e = p * _bits_f32(k << np.int32(23))  # scalef: times 2^floor(n)
        e = zero if abs(e) < tiny else e  # flush to zero; NaN falls through
        f = zero if overflow else e / (e + one)
        out[i] = one - f if b >= 0 else f


def sigmoid(x):  # float32 -> float32: XNNPACK's LOGISTIC (Numba; twin: sigmoid_numpy)
    x = np.ascontiguousarray(x, F32)
    out = np.empty_like(x)
    _sigmoid_into(x.reshape(-1), SIGMOID_TABLE, out.reshape(-1))
    return out


def silu_mul(gate, up):  # [N, F] x2 -> [N, F]: LOGISTIC, MUL, MUL as litert-torch's SwiGLU on XNNPACK
    gate = np.asarray(gate, F32)
    return (gate * sigmoid(gate)) * np.asarray(up, F32)


# f32-raddstoreexpminusmax avx512f_rr2_p5's constants
EXP_MAGIC, EXP_LN2_HI, EXP_LN2_LO = (F32(float.fromhex(h)) for h in ("0x1.8000FEp23", "-0x1.62E400p-1", "-0x1.7F7D1Cp-20"))
EXP_C = [F32(float.fromhex(h)) for h in ("0x1.0F9F9Cp-7", "0x1.573A1Ap-5", "0x1.555A80p-3", "0x1.FFFDC6p-2", "0x1.FFFFF6p-1")]
EXP_CUTOFF = F32(float.fromhex("-0x1.5D589Ep6"))


def exp_minus_max(x):  # x = input - row max (<= 0), fp32 -> exp(x): SOFTMAX's raddstoreexpminusmax
    x = np.asarray(x, F32)
    n = fma(x, LOG2E, EXP_MAGIC)
    scale = (n.view(np.int32) << 23).view(F32)  # 2^n from n's low bits
    n = n - EXP_MAGIC
    t = fma(n, EXP_LN2_LO, fma(n, EXP_LN2_HI, x))
    p = EXP_C[0]
    for c in EXP_C[1:]:
        p = fma(p, t, c)
    t = t * scale
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(x < EXP_CUTOFF, F32(0), fma(t, p, scale))


def row_sum(e, offset, width):  # [..., T] fp32 -> [...]: raddstoreexpminusmax's sum (u64, acc2) over a row
    """The row as the graph holds it: `width` columns (its seq_len), these T values from column
    `offset` on, zeros elsewhere (masked: exactly 0, so they change no lane). 64 columns a step,
    their four 16-lane blocks into two accumulators in turn; the two added; then the 16-column
    blocks left; then the masked tail; then a tree of halves."""
    e = np.asarray(e, F32)
    T = e.shape[-1]
    lo, hi = offset - offset % LANES, -(-(offset + T) // LANES) * LANES  # whole 16-blocks holding the values
    row = np.zeros(e.shape[:-1] + (hi - lo,), F32)
    row[..., offset - lo:offset - lo + T] = e
    acc = [np.zeros(e.shape[:-1] + (LANES,), F32) for _ in range(2)]
    merged = None
    for c in range(lo, hi, LANES):
        block = row[..., c - lo:c - lo + LANES]
        if c < width - width % 64:  # in the 64-column loop
            acc[(c // LANES) % 2] = acc[(c // LANES) % 2] + block
            continue
        if merged is None:
            merged = acc[0] + acc[1]
        merged = merged + block
    return _halves((acc[0] + acc[1] if merged is None else merged).reshape(-1, LANES)).reshape(e.shape[:-1])


def attention(offset, width):
    """odml.scaled_dot_product_attention as the XNNPACK delegate runs the composite (its own
    subgraph, VisitScaledDotAttentionCompositeNode, not the decomposition the builtin kernels
    run), for a graph of seq_len `width` whose first real token sits at column `offset`: q times
    1/sqrt(Dh) (fp32; k unscaled, where the decomposition scales both by Dh^-1/4: with Dh = 8 or
    32 that left 72-79% of the output values 1 ulp or more off), scores by BATCH_MATMUL (an FMA
    chain over Dh, f32-gemm), + mask, SOFTMAX (max, exp_minus_max, row_sum, times 1 / sum), the
    product with v (an FMA chain over the keys; masked ones add exact 0s). One head and up to
    ROWS queries at a time, so memory stays [ROWS, T] (at 512 tokens, 0.6B shapes: 0.15 s a layer,
    against 0.02 s for q3ref's streaming attention; it grows as T^2)."""
    def attend(q, k, v, mask):  # [B, T, H, Dh], [B, T, Hkv, Dh] x2, [B, T] -> [B, T, H, Dh]
        B, T, H, Dh = q.shape
        rep, s = H // k.shape[2], F32(Dh ** -0.5)
        out = np.zeros(q.shape, F32)
        for b, h, r0 in itertools.product(range(B), range(H), range(0, T, ROWS)):
            r1 = min(r0 + ROWS, T)
            visible = (np.arange(T)[None, :] <= np.arange(r0, r1)[:, None]) & mask[b][None, :]  # [R, T]
            out[b, r0:r1, h] = attend_rows(q[b, r0:r1, h] * s, k[b, :, h // rep], v[b, :, h // rep], visible, offset, width)
        return out * mask[:, :, None, None]  # padded query rows: zeros, as q3ref's attention
    return attend


def attend_rows(q, k, v, visible, offset, width):  # [R, Dh] (scaled), [T, Dh] x2, [R, T] -> [R, Dh]
    """BATCH_MATMUL, the mask, SOFTMAX and BATCH_MATMUL as XNNPACK runs them, for query rows
    against keys held in columns offset .. offset+T of a width-column row (the rest masked)."""
    scores = matmul_fma(q, k.T)  # [R, T]
    top = np.where(visible, scores, -np.inf).max(axis=-1, keepdims=True)  # [R, 1]
    top = np.where(np.isfinite(top), top, F32(0))
    e = np.where(visible, exp_minus_max(np.where(visible, scores - top, 0)), F32(0))  # [R, T]
    p = e * (F32(1) / row_sum(e, offset, width))[:, None]  # [R, T]
    return matmul_fma(np.nan_to_num(p), v)  # [R, Dh]


ROWS = 512  # queries per block of XNNPACK's attention emulation


def sqrt(x):  # float32 -> float32: f32-vsqrt avx512f_rsqrt, x times RSQRT's estimate (0 at 0)
    x = np.asarray(x, F32)
    return x * np.where(x != 0, rsqrt(np.where(x != 0, x, F32(1))), F32(0))


# EXP (Qwen3.5's softplus) as ai-edge-litert 2.3.0's XNNPACK computes it. Like f32-vexp
# avx512f_rational_3_2_div: z = round(x log2 e) clamped to [-127, 128], r the rest, 2^z put into
# the exponent bits; but 2^r = 1 + r N(r) / Q(r), with N's and Q's coefficients, which the
# XNNPACK source read here (Aug 2026) does not have: they were read out of the wheel's binary
# (the source's 3/2 coefficients are not in it) and the form was found by trying, then held to
# the interpreter on 0.5M inputs, random bit patterns among them (the EXP probe).
LN2 = F32(0.69314718055994531)
EXP_N = (LN2, F32(4.8078041524e-02), F32(5.5375634693e-03))  # ln2, n1, n2
EXP_Q = (F32(-2.7721086144e-01), F32(2.3987604305e-02))  # q1, q2 (q0 = 1)
ROUND_MAGIC, EXPONENT_MAGIC = F32(12582912.0), F32(8388735.0)  # 2^23 + 2^22; 2^23 + 127


def exp(x):  # float32 -> float32: XNNPACK's EXP
    """NaN gives 0 (the clamp's max/min return their second operand on NaN), and results below
    float32's smallest normal flush to 0, as the delegate runs (measured)."""
    x = np.asarray(x, F32)
    with np.errstate(invalid="ignore", over="ignore"):
        zp = x * F32(1.44269504089)
        zp = np.where(zp > F32(-127), zp, F32(-127))  # vmaxps(zp, -127): NaN -> -127
        zp = np.where(zp < F32(128), zp, F32(128))
        z = (ROUND_MAGIC + zp) - ROUND_MAGIC  # round to nearest
        r = zp - z
        two_z = ((z + EXPONENT_MAGIC).view(np.uint32) << np.uint32(23)).view(F32)
        n = fma(r, fma(r, EXP_N[2], EXP_N[1]), EXP_N[0])
        q = fma(r, fma(r, EXP_Q[1], EXP_Q[0]), F32(1))
        y = two_z * (F32(1) + (r * n) / q)
    return np.where(y < np.finfo(F32).tiny, F32(0), y)


# f32-vsin / f32-vcos avx512f_rational_5_4_div (the RoPE tables Qwen3.5's graph computes in
# itself): x less the nearest multiple of 2 pi (in two parts), cos as sin(pi/2 - x), folded into
# [-pi/2, pi/2], then an odd 5/4 rational.
PI, INV_2PI = F32(3.1415927), F32(0.15915494)
TWO_PI_HI, TWO_PI_LO = F32(6.28125), F32(1.9353072e-3)
HALF_PI_HI, HALF_PI_LO = F32(1.5707963705e+00), F32(-4.3711388e-08)
SIN_P, SIN_Q = (F32(-1.3314664364e-01), F32(3.2340581529e-03)), (F32(3.3519912511e-02), F32(4.8770775902e-04))


def _sin_folded(x):  # x reduced to [-pi, pi] -> sin(x)
    x = np.where(x < PI - x, x, PI - x)  # vminps / vmaxps: the second operand on NaN
    x = np.where(x > (F32(0) - PI) - x, x, (F32(0) - PI) - x)
    x = np.where(x < PI - x, x, PI - x)
    x2 = x * x
    p = x * fma(x2, fma(x2, SIN_P[1], SIN_P[0]), F32(1))
    return p / fma(x2, fma(x2, SIN_Q[1], SIN_Q[0]), F32(1))


def _reduced(x):  # float32 -> x - round(x / 2 pi) 2 pi; subnormal x counts as 0 (denormals-are-zero)
    x = np.asarray(x, F32)
    x = np.where(np.abs(x) < np.finfo(F32).tiny, x * F32(0), x)
    k = np.rint(x * INV_2PI).astype(F32)
    return fma(-k, TWO_PI_LO, fma(-k, TWO_PI_HI, x))


def sin(x):  # float32 -> float32: XNNPACK's SIN
    with np.errstate(invalid="ignore", over="ignore"):
        return _sin_folded(_reduced(x))


def cos(x):  # float32 -> float32: XNNPACK's COS
    with np.errstate(invalid="ignore", over="ignore"):
        return _sin_folded((HALF_PI_HI - _reduced(x)) + HALF_PI_LO)


# f32-vlog avx512f_rational_3_3_div: x * sqrt2 split into exponent and mantissa, the mantissa
# moved to [sqrt(1/2) - 1, sqrt(2) - 1), log(1 + m) as a 3/3 rational there, plus exponent * ln2.
LOG_SQRT2, LOG_SQRT1_2 = F32(1.4142134190e+00), F32(7.0710688829e-01)  # their product is exactly 1 in fp32
LOG_A3 = F32(1.824996918440e-01)
LOG_B = (F32(1.5), F32(0.599170029163), F32(0.049584995955))


def log(x):  # float32 -> float32: XNNPACK's LOG (0 -> -inf, negative -> NaN)
    """Subnormal inputs count as 0 (-inf out, whatever their sign): the delegate runs with
    denormals-are-zero, measured on ai-edge-litert 2.3.0 (Zen 4)."""
    x = np.asarray(x, F32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        x = np.where(np.abs(x) < np.finfo(F32).tiny, F32(0), x) * LOG_SQRT2
        e = (np.frexp(x)[1] - 1).astype(F32)  # vgetexpps: floor(log2|x|)
        e = np.where(x == 0, F32(-np.inf), np.where(x < 0, F32(np.nan), np.where(np.isfinite(x), e, x)))
        m = ((x.view(np.uint32) & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)).view(F32)  # [1, 2)
        m = m * LOG_SQRT1_2 - F32(1)
        p = m * fma(m, fma(m, LOG_A3, F32(1)), F32(1))  # m + m^2 + a3 m^3
        q = fma(m, fma(m, fma(m, LOG_B[2], LOG_B[1]), LOG_B[0]), F32(1))
        return fma(e, LN2, p / q)


def normalize(x, dim=None):  # [B, D] -> [B, dim]: litert-torch's L2 normalization on XNNPACK
    """ABS, MUL, SUM (rsum), SQRT (sqrt above), MAXIMUM with 1e-12, DIV: matched on the stress
    graph's output for 40 inputs, where a correctly rounded sqrt missed 22. An MRL dim is the
    bridge's, after the graph: model.normalize."""
    from ...model import normalize as bridge

    if dim is not None:
        return bridge(x, dim)
    return x / np.maximum(sqrt(sum_squares(np.abs(np.asarray(x, F32)))), F32(1e-12))[:, None]  # MUL + SUM, fused


def sum_squares(x):  # [N, C] float32 -> [N]: f32-rsum2 avx512f_u64_acc4, what XNNPACK fuses MUL(x, x) + SUM/MEAN into
    """64 values a step, each 16-lane block squared into its own accumulator by FMA; up to three
    16-blocks left over into accumulators 0, 1, 2; (acc0 + acc2) + (acc1 + acc3); the masked tail
    by FMA; a tree of halves. Below 64 values it equals rsum(x * x) (the FMAs add to zero), which
    is why the stress graph (C = 48) matched either; at C = 128 rsum(x * x) left 2 of 45 rows of
    a norm 1 ulp off."""
    x = np.asarray(x, F32)
    N, C = x.shape
    acc = [np.zeros((N, LANES), F32) for _ in range(4)]
    j = 0
    while C - j >= 4 * LANES:
        for i in range(4):
            b = x[:, j + i * LANES:j + (i + 1) * LANES]
            acc[i] = fma(b, b, acc[i])
        j += 4 * LANES
    for i in range(3):
        if C - j >= LANES:
            b = x[:, j:j + LANES]
            acc[i], j = fma(b, b, acc[i]), j + LANES
    total = (acc[0] + acc[2]) + (acc[1] + acc[3])
    if C > j:
        tail = np.zeros((N, LANES), F32)
        tail[:, :C - j] = x[:, j:]
        total = fma(tail, tail, total)
    return _halves(total)


def rms_norm(x, w, eps):  # [N, C] -> [N, C]: odml.rms_norm's decomposition on XNNPACK
    x = np.asarray(x, F32)
    r = rsqrt(sum_squares(x) * (F32(1) / F32(x.shape[1])) + F32(eps))  # [N]: MUL + MEAN, fused
    return (x * r[:, None]) * np.asarray(w, F32)


def l2norm(x, eps):  # [N, C] -> [N, C]: x * rsqrt(sum(x^2) + eps) (litert-torch's GatedDeltaNet q and k)
    x = np.asarray(x, F32)
    return x * rsqrt(sum_squares(x) + F32(eps))[:, None]


# ---------------------------------------------------------------- FULLY_CONNECTED, int4 blocks
# qd8-f32-qb4w-gemm (avx512vnni here; avx512vnnigfni on CPUs where GFNI is fast: the same sums).
# Per output: acc = ksum * zp (fp32), then per block acc = fma(int32 block sum, block scale, acc)
# in block order, then acc * the activation's dequantizing scale. The activations enter as
# unsigned bytes (q + 128, zero point + 128); ksum, from the packing function
# (xnn_pack_qs8_qb4w_gemm_goi_w), is minus the sum over chunks of 2 * kr = 16 inputs of
# (chunk's integer sum * its block's scale), accumulated in fp32 in order. One fp32 GEMM over
# all of K sums in another order: on a 0.6B graph it was 1 ulp off on 2 of 262144 q_proj outputs,
# and on a one-op graph whose block scales span 2^-12 .. 2^6, off on 94% of outputs. A ksum
# summed per block, or exactly, is off on about half of them (probe.py, int4 FULLY_CONNECTED).
KSUM_CHUNK = 16


def qb4w_packed(w, block):  # [O, K] fp32 -> integer weights [K/block, block, O], scales [K/block, O], ksum [O]
    """The packed weights' parts, from the checkpoint's weight quantized as the graph is."""
    from ...quant import int4_packed

    wq, scale = int4_packed(w, block)  # [nb, block, O], [nb, O]
    chunks = wq.reshape(-1, KSUM_CHUNK, wq.shape[2]).sum(axis=1)  # [K/16, O], exact
    terms = chunks * np.repeat(scale, block // KSUM_CHUNK, axis=0)  # [K/16, O], exact: 8 bits x 8 bits
    ksum = np.zeros(wq.shape[2], F32)  # [O]
    for term in terms:
        ksum -= term  # in order, each subtraction rounded
    return wq, scale, ksum


@numba.njit(cache=True, nogil=True)
def _fma_blocks(sums, scale, acc):  # sums [nb, N, O], scale [nb, O], acc [N, O] in place: one FMA per block, in order
    nb, N, O = sums.shape
    for b in range(nb):
        for n in range(N):
            for o in range(O):
                acc[n, o] = _fma32(sums[b, n, o], scale[b, o], acc[n, o])


def _fma_blocks_numpy(sums, scale, acc):  # the plain twin, each FMA in fp64
    for b in range(sums.shape[0]):
        acc[:] = fma(sums[b], scale[b][None, :], acc)


FMA_BLOCKS = {"numba": _fma_blocks, "numpy": _fma_blocks_numpy}


def int4_linear(block, kernels="numba", cache=True):
    """x @ W.T as XNNPACK's dynamic int4 FULLY_CONNECTED computes it, bit for bit (see above)."""
    from ...quant import INT4_ROWS, QuantizedWeights, act_qd8, block_sums

    weights, accumulate = QuantizedWeights(lambda w: qb4w_packed(w, block), cache), FMA_BLOCKS[kernels]

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        wq, scale, ksum = weights(w)  # [nb, block, O], [nb, O], [O]
        q, zp, xs = act_qd8(np.asarray(x, F32))  # [N, in], [N], [N]
        out = np.empty((q.shape[0], scale.shape[1]), F32)  # [N, O]
        for r in range(0, q.shape[0], INT4_ROWS):
            qu = (q[r:r + INT4_ROWS] + 128).astype(F32)  # [n, in]: the kernel's unsigned bytes
            sums = block_sums(qu, wq)  # [nb, n, O]
            acc = ksum[None, :] * (zp[r:r + INT4_ROWS, None] + 128).astype(F32)  # [n, O]
            accumulate(sums, scale, acc)
            out[r:r + INT4_ROWS] = acc * xs[r:r + INT4_ROWS, None]
        return out
    linear.quantized = weights
    return linear
