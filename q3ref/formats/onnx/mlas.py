"""ONNX Runtime's CPU float kernels on x86-64, as NumPy: what an unfused graph's float ops compute.

Each was read from ONNX Runtime's source where the source at hand matched, and found by measuring
against one-op graphs where it did not (onnxruntime 1.32; noted below); all match bit for bit
(probe.float_ops tells, per op, whether this CPU's onnxruntime still computes so):
    Sigmoid     MLAS' logistic (LogisticKernelFma3): Eigen's rational polynomial p(x)/q(x) in x^2
                with FMA steps, x clamped to [-18, 18], the result clamped below at 0
    Softmax     MLAS (its AVX-512F sum-exp kernel's structure): the row's max; exp(s - max) by a
                degree-6 polynomial and vscalef; the exps summed in 16 lanes, three vectors a
                step, the lanes folded 8+8, then pairwise; the row times 1/sum. Clamped below at
                -103.97 as measured (a masked score's exp is then 0), not at the -88.38 of the
                Windows assembly read
    ReduceMean  Eigen's redux, as the wheel's SSE build has it: two 4-float packets from the
                row's first 16-byte-aligned element, folded (p0 + p2) + (p1 + p3), then the
                elements before and after them in order; then / D
    Cos, Sin    Eigen's psincos_float without FMA (the SSE build): x reduced by pi/2 in four
                parts, a degree-8 cos or degree-7 sin polynomial, the sign from the quadrant
    MatMul      MLAS' SGEMM for M >= 2: K in blocks of stride_k (128, doubled while the N side
                halves from 128 to 16), each block an FMA chain from 0, the blocks added in order;
                by a constant B (a weight), packed: blocks of 256, for any M. NumPy's BLAS
                computes the blocks where it measures as the same chains (blas_chains)
An unfused graph (ORT_DISABLE_ALL, the diff's tapped run) runs these op by op; sim.ort_float_kernels
strings them together in the graph's op order. The app's run (default optimizations) fuses
RMSNorm into SimplifiedLayerNormalization (simplified_layer_norm, its own sum); its QuickGelu
(alpha 1) and FusedMatMul compute as the ops they replace (probe.fused_ops).
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from ..fp32 import fma, fma32

F32 = np.float32


def _hex(s):
    return F32(float.fromhex(s))


# ------------------------------------------------------------------------ Sigmoid
LOGISTIC_ALPHA = tuple(F32(v) for v in (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05,
                                        8.51377133304701e-03, 2.48287947061529e-01))  # alpha_9 .. alpha_1
LOGISTIC_BETA = tuple(F32(v) for v in (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06,
                                       1.70198817374094e-03, 1.16817656904453e-01, 9.93151921023180e-01))  # beta_10 .. beta_0


def logistic(x):  # fp32 -> fp32
    x = np.asarray(x, F32)
    x = np.minimum(np.maximum(x, F32(-18)), F32(18))  # vmaxps/vminps with the bound first: NaN passes
    x2 = x * x
    p = fma(x2, LOGISTIC_ALPHA[0], LOGISTIC_ALPHA[1])
    for c in LOGISTIC_ALPHA[2:]:
        p = fma(x2, p, c)
    q = fma(x2, LOGISTIC_BETA[0], LOGISTIC_BETA[1])
    for c in LOGISTIC_BETA[2:]:
        q = fma(x2, q, c)
    return np.maximum(x * p / q + F32(0.5), F32(0))


# ------------------------------------------------------------------------ Softmax
EXP_LOWER = F32(-103.9720840454)  # MlasExpConstants.LowerRange: exp underflows to 0 below it
ROUNDING_BIAS = F32(12582912.0)  # 1.5 * 2^23
LOG2_RECIPROCAL, LOG2_HIGH, LOG2_LOW = F32(1.44269504088896341), F32(-6.93145752e-1), F32(-1.42860677e-6)
EXP_POLY = tuple(_hex(s) for s in ("0x1.694000p-10", "0x1.125edcp-7", "0x1.555b5ap-5", "0x1.555450p-3",
                                   "0x1.fffff6p-2", "0x1.000000p+0"))  # poly_0 .. poly_4, poly_56


def sum_exp_terms(x, negative_max):  # [..., D] fp32, [..., 1] -> exp(x - max) [..., D]
    v = x + negative_max
    v = np.where(EXP_LOWER > v, EXP_LOWER, v)  # vmaxps(lower, v): a NaN v passes
    biased = fma(v, LOG2_RECIPROCAL, ROUNDING_BIAS)
    m = biased - ROUNDING_BIAS  # round(v / ln 2)
    v = fma(m, LOG2_LOW, fma(m, LOG2_HIGH, v))  # v - m ln 2, ln 2 in two parts
    p = np.full(v.shape, EXP_POLY[0], F32)
    for c in EXP_POLY[1:] + EXP_POLY[-1:]:  # poly_56 twice: poly_5 and poly_6 are both 1
        p = fma(p, v, c)
    with np.errstate(over="ignore"):  # past the upper clamp: inf, as vscalefps gives
        return np.ldexp(p, np.nan_to_num(m).astype(np.int32)).astype(F32)  # vscalefps: p 2^m, one rounding


def lane_sum(e):  # [..., D] fp32 -> [...]: ComputeSumExpF32KernelAvx512F's accumulator
    D = e.shape[-1]
    acc = np.zeros(e.shape[:-1] + (16,), F32)
    j = 0
    while D - j >= 48:  # three vectors a step, each added in turn
        for u in range(3):
            acc = acc + e[..., j + 16 * u:j + 16 * u + 16]
        j += 48
    while j < D:  # then a vector at a time, the last one masked
        n = min(16, D - j)
        acc[..., :n] = acc[..., :n] + e[..., j:j + n]
        j += 16
    t = acc[..., 8:] + acc[..., :8]  # vextractf64x4 + vaddps
    t = t[..., 0::2] + t[..., 1::2]  # vhaddps: (t0+t1, t2+t3, t4+t5, t6+t7)
    t = t[..., 0::2] + t[..., 1::2]  # vhaddps again
    return t[..., 0] + t[..., 1]  # the two 128-bit halves


def softmax(s):  # [..., D] fp32 -> [..., D] over the last axis
    s = np.asarray(s, F32)
    e = sum_exp_terms(s, -s.max(axis=-1, keepdims=True))
    return e * (F32(1) / lane_sum(e))[..., None]


def softmax_function(s, base=0):  # [N, D] fp32 rows of one buffer, from its element `base` -> [N, D]
    """Softmax as ONNX defines its function body, which ONNX Runtime runs where its CPU provider has
    no kernel for the type (an fp16 graph's, in fp32; run.inlined): ReduceMax, Sub, Exp (MLAS' exp,
    the one in softmax's sum: measured equal on 12000 values), ReduceSum (Eigen's: eigen_sum), Div."""
    s = np.asarray(s, F32)
    e = sum_exp_terms(s, -s.max(axis=-1, keepdims=True))  # x + (-max): x - max exactly
    return e / eigen_sum(e, base)[:, None]


# ------------------------------------------------------------------------ ReduceMean
def eigen_sum(x, base=0):  # [N, D] fp32, rows of one 16-byte-aligned buffer from its element `base` -> [N]: Eigen's SSE redux
    N, D = x.shape
    out = np.empty(N, F32)
    starts = -(base + np.arange(N) * D) % 4  # [N]: each row's first 16-byte-aligned element
    for start in np.unique(starts):  # (one group when D is a multiple of 4)
        rows = np.flatnonzero(starts == start)
        out[rows] = _eigen_sum_from(x[rows], min(int(start), D))
    return out


def _eigen_sum_from(x, start):  # [n, D] rows aligned from element `start` -> [n]
    D = x.shape[1]
    body = x[:, start:]
    whole = body.shape[1] // 4 * 4
    if not whole:  # no whole packet: in order
        total = x[:, 0]
        for i in range(1, D):
            total = total + x[:, i]
        return total
    p0 = body[:, :4]
    if whole > 4:
        p1, pairs = body[:, 4:8], body.shape[1] // 8 * 8
        for i in range(8, pairs, 8):
            p0, p1 = p0 + body[:, i:i + 4], p1 + body[:, i + 4:i + 8]
        p0 = p0 + p1
        if whole > pairs:
            p0 = p0 + body[:, pairs:pairs + 4]
    total = (p0[:, 0] + p0[:, 2]) + (p0[:, 1] + p0[:, 3])
    for i in range(start):  # the elements before the aligned ones, then those after
        total = total + x[:, i]
    for i in range(whole, body.shape[1]):
        total = total + body[:, i]
    return total


def reduce_mean(x):  # [N, D] -> [N, 1]
    x = np.ascontiguousarray(x, F32)
    return (eigen_sum(x) / F32(x.shape[1]))[:, None]


# ------------------------------------------------------------------------ SimplifiedLayerNormalization
def simplified_layer_norm(x, w, eps):  # [N, D] fp32, D a multiple of 8 -> [N, D]
    """The fused RMSNorm ONNX Runtime's default optimizations make of Pow..Mul (the app's run), as
    measured (the layer_norm_impl.cc at hand sums in order, and 83% of outputs then differ): the
    squares summed by FMA into 8 lanes, folded 4+4, 2+2, 1+1 (its inv_std_dev output tells the
    sum apart from the rest); inv = 1 / sqrt(sum / D + eps); then x * inv * w. (A row whose D is
    not a multiple of 8 ends otherwise, 1-27% off: not emulated.)"""
    x = np.asarray(x, F32)
    acc = np.zeros((x.shape[0], 8), F32)
    for j in range(0, x.shape[1], 8):
        acc = fma(x[:, j:j + 8], x[:, j:j + 8], acc)
    acc = acc[:, :4] + acc[:, 4:]
    acc = acc[:, :2] + acc[:, 2:]
    inv = F32(1) / np.sqrt((acc[:, 0] + acc[:, 1]) / F32(x.shape[1]) + F32(eps))  # [N]
    return x * inv[:, None] * np.asarray(w, F32)


# ------------------------------------------------------------------------ Cos, Sin
TWO_OVER_PI = F32(0.636619746685028076171875)
PI_OVER_2_PARTS = tuple(F32(v) for v in (-1.5703125, -0.000483989715576171875, 1.62865035235881805419921875e-07,
                                         5.5644315544167710640977020375430583953857421875e-11))
COS_POLY = tuple(F32(v) for v in (2.4372266125283204019069671630859375e-05, -0.00138865201734006404876708984375,
                                  0.041666619479656219482421875, -0.5, 1.0))
SIN_POLY = tuple(F32(v) for v in (-0.0001959234114083702898469196984621021329076029360294342041015625,
                                  0.0083326873655616851693794799871284340042620897293090820312500000,
                                  -0.1666666203982298255503735617821803316473960876464843750000000000))
HUGE = {True: 25966.0, False: 18838.0}  # sin, cos: past these Eigen reduces in another (scalar) way


def sincos(x, sine: bool):  # fp32 |x| < HUGE -> sin or cos, as Eigen's psincos_float without FMA
    x_in = np.asarray(x, F32)
    x = np.abs(x_in)
    y_round = x * TWO_OVER_PI + ROUNDING_BIAS  # rounded to an integer, which sits in the low bits
    quadrant = y_round.view(np.int32)  # (only its two low bits are read)
    y = y_round - ROUNDING_BIAS
    for c in PI_OVER_2_PARTS:  # pmadd without FMA: a rounded product, then a rounded add
        x = y * c + x
    if sine:
        sign = (x_in.view(np.int32) ^ (quadrant << 30)) & np.int32(-2 ** 31)
    else:
        sign = ((quadrant + 1) << 30) & np.int32(-2 ** 31)
    x2 = x * x
    cos_p = np.full(x.shape, COS_POLY[0], F32)
    for c in COS_POLY[1:]:
        cos_p = cos_p * x2 + c
    sin_p = np.full(x.shape, SIN_POLY[0], F32)
    for c in SIN_POLY[1:]:
        sin_p = sin_p * x2 + c
    sin_p = sin_p * x2 * x + x
    even = (quadrant & 1) == 0
    y = np.where(even, sin_p, cos_p) if sine else np.where(even, cos_p, sin_p)
    return (y.view(np.int32) ^ sign).view(F32)


# ------------------------------------------------------------------------ MatMul
def stride_k(N: int, K: int) -> int:
    """MlasSgemmOperation's K block for an [M, K] @ [K, N] product (M >= 2)."""
    stride_n, stride = 128, 128
    if N >= K:
        while stride // 2 >= K:
            stride_n, stride = stride_n * 2, stride // 2
    else:
        while stride_n > 16 and stride_n // 2 >= N:
            stride_n, stride = stride_n // 2, stride * 2
    return stride


@numba.njit(cache=True, nogil=True)
def _sgemm(a, b, stride, acc, out):  # [M, K] @ [K, N] -> out [M, N]; acc [N] scratch
    M, K = a.shape
    N = b.shape[1]
    for m in range(M):
        for k0 in range(0, K, stride):
            acc[:] = 0
            for k in range(k0, min(K, k0 + stride)):  # k outside n: each output's chain in order
                x = a[m, k]
                for n in range(N):
                    acc[n] = fma32(x, b[k, n], acc[n])
            for n in range(N):
                out[m, n] = acc[n] if k0 == 0 else out[m, n] + acc[n]


# A constant B (a weight) MLAS packs once, in K blocks of MLAS_SGEMM_PACKED_STRIDEK whatever the
# shapes or threads, and runs for M = 1 too: measured equal at K 1024 and 3072, M 1, 5 and 37.
PACKED_STRIDE_K = 256
THREAD_ROWS = 16  # rows per thread at the least (as xnnpack.FMA_THREAD_ROWS)


def sgemm(a, b, stride=None):  # [M, K] @ [K, N] fp32 -> [M, N]; stride: K's block (default stride_k: M >= 2)
    from ...kernels import by_rows

    a, b = np.asarray(a, F32), np.asarray(b, F32)
    stride = stride or stride_k(b.shape[1], a.shape[1])
    if blas_chains(a, b, stride):
        return blocks_by_blas(a, b, stride)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty((a.shape[0], b.shape[1]), F32)
    by_rows(lambda r0, r1: _sgemm(a[r0:r1], b, stride, np.empty(b.shape[1], F32), out[r0:r1]), a.shape[0], THREAD_ROWS)
    return out


@numba.njit(cache=True, nogil=True)
def _transposed_into(w, k0, k1, bt):  # W [N, K]'s columns k0..k1 -> bt [k1 - k0, N], 16 x 16 tiles
    N = w.shape[0]
    for n0 in range(0, N, 16):  # tiles: NumPy's strided copy of W^T ran at 1.4 GB/s, this at 5
        for c0 in range(k0, k1, 16):
            for n in range(n0, min(N, n0 + 16)):
                for k in range(c0, min(k1, c0 + 16)):
                    bt[k - k0, n] = w[n, k]


@numba.njit(cache=True, nogil=True)
def _sgemm_w(x, w, stride, bt, acc, out):  # x [M, K] @ W^T, W [N, K] as stored -> out [M, N]; bt [KC, N], acc [M, N]
    M, K = x.shape
    N = w.shape[0]
    for k0 in range(0, K, stride):  # one K block: _sgemm's chains, then added to out
        k1 = min(K, k0 + stride)
        acc[:] = 0
        for c0 in range(k0, k1, KC):  # KC of the chains' k at a time, W's part transposed into bt (in L2)
            c1 = min(k1, c0 + KC)
            _transposed_into(w, c0, c1, bt)
            c4 = c1 - (c1 - c0) % 4
            for m0 in range(0, M, 4):
                rows = min(4, M - m0)
                k = c0
                # Four rows and four k per pass over acc, each output's chain still in k's order:
                # one load and store of acc per 16 fma, where one k (for 8 rows) took one per fma.
                # sgemm_weight went from 25-37 to 44-71 GFLOP/s a core, K 1024-3072 at 128-512
                # tokens (AMD EPYC). LLVM vectorizes over n.
                while rows == 4 and k < c4:
                    x00, x01, x02, x03 = x[m0, k], x[m0, k + 1], x[m0, k + 2], x[m0, k + 3]
                    x10, x11, x12, x13 = x[m0 + 1, k], x[m0 + 1, k + 1], x[m0 + 1, k + 2], x[m0 + 1, k + 3]
                    x20, x21, x22, x23 = x[m0 + 2, k], x[m0 + 2, k + 1], x[m0 + 2, k + 2], x[m0 + 2, k + 3]
                    x30, x31, x32, x33 = x[m0 + 3, k], x[m0 + 3, k + 1], x[m0 + 3, k + 2], x[m0 + 3, k + 3]
                    j = k - c0
                    for n in range(N):
                        b0, b1, b2, b3 = bt[j, n], bt[j + 1, n], bt[j + 2, n], bt[j + 3, n]
                        acc[m0, n] = fma32(x03, b3, fma32(x02, b2, fma32(x01, b1, fma32(x00, b0, acc[m0, n]))))
                        acc[m0 + 1, n] = fma32(x13, b3, fma32(x12, b2, fma32(x11, b1, fma32(x10, b0, acc[m0 + 1, n]))))
                        acc[m0 + 2, n] = fma32(x23, b3, fma32(x22, b2, fma32(x21, b1, fma32(x20, b0, acc[m0 + 2, n]))))
                        acc[m0 + 3, n] = fma32(x33, b3, fma32(x32, b2, fma32(x31, b1, fma32(x30, b0, acc[m0 + 3, n]))))
                    k += 4
                for k in range(k, c1):  # the rest, or fewer than four rows: one k at a time
                    for r in range(m0, m0 + rows):
                        v = x[r, k]
                        for n in range(N):
                            acc[r, n] = fma32(v, bt[k - c0, n], acc[r, n])
        for m in range(M):
            for n in range(N):
                out[m, n] = acc[m, n] if k0 == 0 else out[m, n] + acc[m, n]


# k per transposed part of W in _sgemm_w: with W_ROWS outputs, 256 KB, which stays in L2 while
# every row of x runs through it (a whole K of 3072 did not: 2 cores then ran at 85 GFLOP/s, one at 100).
KC = 256


def sgemm_weight(x, w, stride=PACKED_STRIDE_K):  # [M, K] @ W^T, W [N, K] as a checkpoint stores it -> [M, N]
    """sgemm(x, W^T, stride) without W^T's copy (a 0.6B's projections took 2.8 s a forward to
    transpose): W is transposed a K block at a time, and the outputs split over the cores by W's rows."""
    from ...kernels import by_rows

    x, w = np.ascontiguousarray(x, F32), np.ascontiguousarray(w, F32)
    if blas_chains(x, w.T, stride):
        return blocks_by_blas(x, w.T, stride)
    (M, K), out = x.shape, np.empty((x.shape[0], w.shape[0]), F32)

    def part(n0, n1):  # W's rows n0..n1, W_ROWS at a time, into scratch made once (fresh pages fault)
        bt, acc, o = (np.empty(size, F32) for size in (min(K, KC) * W_ROWS, M * W_ROWS, M * W_ROWS))
        for c0 in range(n0, n1, W_ROWS):
            c = min(n1, c0 + W_ROWS) - c0
            _sgemm_w(x, w[c0:c0 + c], stride, bt[:min(K, KC) * c].reshape(-1, c), acc[:M * c].reshape(M, c),
                     o[:M * c].reshape(M, c))
            out[:, c0:c0 + c] = o[:M * c].reshape(M, c)
    by_rows(part, w.shape[0], THREAD_ROWS)
    return out


# W's rows per call of _sgemm_w, whose part of W^T (KC x W_ROWS) then stays in L2. One thread, one K
# chain (the 4-bit MatMulNBits product) at 128 tokens, K 1024-3072: 41-47 GFLOP/s with 64 rows,
# 49-57 with 128, 51-70 with 256, 47-60 with 512, 30-35 with 1024 (AMD EPYC, 1 MB L2 a core).
W_ROWS = 256


def sgemm_numpy(a, b, stride=None):  # the plain twin of sgemm, one fma over all outputs per k
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    K, stride = a.shape[1], stride or stride_k(b.shape[1], a.shape[1])
    out = None
    for k0 in range(0, K, stride):
        acc = np.zeros((a.shape[0], b.shape[1]), F32)
        for k in range(k0, min(K, k0 + stride)):
            acc = fma(a[:, k, None], b[None, k, :], acc)
        out = acc if out is None else out + acc
    return out


# ------------------------------------------------------------------------ MlasGemmBatch, B not packed
# MatMulBnb4, and MatMulNBits' fp32 product at 2 and 8 bits, dequantize the weight on every run and
# hand it to MlasGemmBatch as B transposed, not packed. Where N > M its threads split N in blocks of
# 16 columns (MlasPartitionWork), each part an MlasSgemmOperation whose K block (stride_k) follows
# the part's width; so the sums depend on the thread count. Measured equal on all three and on an
# fp16 graph's MatMul by a weight, at 2-200 rows and K 32-3072 (onnxruntime 1.32, AMD EPYC, 2
# threads); the probes (probe.bnb4_compute, nbits_compute, fp16_matmul_compute) check it here.
SGEMM_THREAD_COMPLEXITY = 64 * 1024  # MLAS_SGEMM_THREAD_COMPLEXITY: multiplies per thread before another joins
STRIDEN_THREAD_ALIGN = 16  # MLAS_SGEMM_STRIDEN_THREAD_ALIGN


def gemm_batch_parts(M: int, N: int, K: int, threads: int) -> list[tuple[int, int]]:
    """MlasGemmBatch's split of one [M, K] @ [K, N] over `threads` (ONNX Runtime's intra-op
    threads): the columns [(n0, n1)] of each part. Split by rows (N <= M), every part has all N."""
    target = min(int(M * N * K / SGEMM_THREAD_COMPLEXITY) + 1, threads)
    if N <= M:
        return [(0, N)]
    blocks = -(-N // STRIDEN_THREAD_ALIGN)
    parts = min(target, blocks)
    per, extra = divmod(blocks, parts)  # the first `extra` parts take one block more
    cuts = [min(N, STRIDEN_THREAD_ALIGN * (t * per + min(t, extra))) for t in range(parts + 1)]
    return [(n0, n1) for n0, n1 in zip(cuts, cuts[1:]) if n0 < n1]


def gemm_batch_weight(x, w, threads):  # [M, K] @ W^T, W [N, K] as MlasGemmBatch sums it (M >= 2) -> [M, N]
    """Each part's MlasSgemmOperation (one row takes MLAS' M1 kernel, not emulated; so does a
    part of one row where N <= M, which only M < 2 x threads can make)."""
    x, w = np.ascontiguousarray(x, F32), np.ascontiguousarray(w, F32)
    (M, K), out = x.shape, np.empty((x.shape[0], w.shape[0]), F32)
    for n0, n1 in gemm_batch_parts(M, w.shape[0], K, threads):
        out[:, n0:n1] = sgemm_weight(x, w[n0:n1], stride_k(n1 - n0, K))
    return out


# ------------------------------------------------------------------------ the same sums by BLAS
# Where NumPy's BLAS computes a block's product as one FMA chain per output from 0, k in order,
# the blocked sum is BLAS's products added in order: ~180 GFLOP/s against the emulation's ~37. The
# OpenBLAS 0.3.31 of NumPy 2 does so on this AMD EPYC for most shapes, but not in its kernels for
# one row or few columns (gemv, small-matrix paths: 60-100% of outputs differ), so each shape is
# measured once against _sgemm before BLAS stands in for it.
blas_matmul = np.matmul  # (a test swaps it for one that is not a chain)


def _blocks(K, stride):  # [(k0, k1)]: K's blocks
    return [(k0, min(K, k0 + stride)) for k0 in range(0, K, stride)]


def blocks_by_blas(a, b, stride):  # [M, K] @ [K, N] -> [M, N]: each block's product by BLAS, added in order
    out = None
    for k0, k1 in _blocks(a.shape[1], stride):
        part = blas_matmul(a[:, k0:k1], b[k0:k1])  # [M, N]
        out = part if out is None else np.add(out, part, out=out)
    return out


def blas_chains(a, b, stride) -> bool:
    """Does BLAS compute each of a @ b's blocks as _sgemm's chain? Measured per block shape and
    memory order (OpenBLAS picks its kernels by both)."""
    orders = tuple(m.strides[-1] == 4 or m.strides[0] != 4 for m in (a, b))  # row-major, or copied so by NumPy
    return all(_blas_chains(a.shape[0], k1 - k0, b.shape[1], orders) for k0, k1 in set(_blocks(a.shape[1], stride)))


@functools.cache
def _blas_chains(M, K, N, orders) -> bool:  # random [M, K] @ [K, N] in those memory orders: BLAS == _sgemm?
    rng = np.random.default_rng(M * 7919 + K * 31 + N)
    a = rng.standard_normal((M, K), dtype=F32)
    b = rng.standard_normal((K, N), dtype=F32)
    a, b = (a if orders[0] else np.asfortranarray(a)), (b if orders[1] else np.asfortranarray(b))
    want = np.empty((M, N), F32)
    _sgemm(np.ascontiguousarray(a), np.ascontiguousarray(b), K, np.empty(N, F32), want)
    return np.array_equal(blas_matmul(a, b), want)
