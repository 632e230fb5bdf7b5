"""Quantization as LiteRT recipes do it, on plain arrays. Each function names its rounding and
returns its error.

int8 per channel (litert-torch dynamic_int8 and weight_only_int8): symmetric, narrow range,
one scale per output channel (per row of [out, in]; per vocabulary row for the embedding table):
    scale = max|w| / 127                 in fp32
    q     = clip(rint(w / scale), -127, 127)   rint: round half to even; the division in fp32
Bit-identical to the int8 payload and scales litert-torch 0.10 writes (tests/test_quant.py);
dividing in float64 instead leaves a few values one step off.

int4 blockwise (dynamic_int4_block32 / block128, by ai-edge-quantizer): symmetric, one scale per
block of `block` input values in each output row, full range (num_bits < 8 is not narrow):
    scale = bf16(max|w_block| / 7)     fp32 division, rounded to 7 mantissa bits, stored as fp16
    q     = clip(rint(w / scale), -8, 7)
"""

from __future__ import annotations

import numba
import numpy as np

from .errors import Q3RefError


def int8_per_channel(w):  # [out, in] -> q int8 [out, in], scale fp32 [out], max abs error
    w = np.asarray(w, np.float32)
    scale = np.abs(w).max(axis=1) / np.float32(127)  # [out]
    safe = np.where(scale > 0, scale, np.float32(1))  # an all-zero row quantizes to zeros
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)  # [out, in]
    err = float(np.abs(q.astype(np.float32) * scale[:, None] - w).max(initial=0.0))
    return q, scale, err


def bf16_round(x):  # fp32 -> fp32 values on the bf16 grid (round to nearest even), max abs error
    """What torch's .to(bfloat16) and ml_dtypes do: keep 8 exponent and 7 mantissa bits."""
    x = np.ascontiguousarray(x, np.float32)
    bits = x.view(np.uint32)
    bits = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) & np.uint32(0xFFFF0000)  # NaN/Inf not expected
    out = bits.view(np.float32)
    return out, float(np.abs(out - x).max(initial=0.0))


def to_fp16_numpy(x):  # fp32 -> fp32 values on the fp16 grid (round to nearest even); beyond 65504: inf
    with np.errstate(over="ignore"):  # overflow is what an fp16 device does, not an error here
        return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


@numba.njit(cache=True, nogil=True)  # no fastmath: (f + 0.5) - 0.5 must round as written
def to_fp16_numba_into(x, xbits, out, outbits):
    """to_fp16_numpy, x [n] fp32 with xbits its uint32 view -> out [n] fp32 with outbits its
    uint32 view. NumPy's two conversions took 4.3 ns a value (13 ms per [3072, 1024] weight,
    AMD EPYC); this 1.2 ns."""
    half = np.float32(0.5)
    for i in range(x.size):
        sign, a = xbits[i] & 0x80000000, xbits[i] & 0x7FFFFFFF
        if a < 0x38800000:  # |x| < 2^-14: fp16 subnormals are multiples of 2^-24, 0.5's ulp,
            y = (abs(x[i]) + half) - half  # so this sum rounds there, half to even
            out[i] = -y if sign else y  # -0.0 for a tiny negative, as NumPy
        elif a > 0x7F800000:  # NaN stays NaN (quiet; its payload's top 10 bits)
            outbits[i] = sign | 0x7FC00000 | (a & 0x007FE000)
        elif a >= 0x477FF000:  # |x| >= 65520, halfway past 65504 (odd): rounds to inf, as inf does
            outbits[i] = sign | 0x7F800000
        else:  # a normal fp16: 13 mantissa bits off, half to even
            outbits[i] = sign | ((a + 0xFFF + ((a >> 13) & 1)) & 0xFFFFE000)


def to_fp16(x):  # fp32 -> fp32 values on the fp16 grid (round to nearest even); beyond 65504: inf
    x = np.asarray(x, np.float32)
    x = x if x.flags.c_contiguous else x.copy(order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    flat, out = x.reshape(-1), np.empty(x.shape, np.float32)  # [n], the input's shape
    to_fp16_numba_into(flat, flat.view(np.uint32), out.reshape(-1), out.reshape(-1).view(np.uint32))
    return out


def fp16_round(x):  # fp32 -> fp32 values on the fp16 grid, max abs error
    x = np.asarray(x, np.float32)
    out = to_fp16(x)
    return out, float(np.abs(out - x).max(initial=0.0)) if np.isfinite(out).all() else float("inf")


def int4_blockwise(w, block):  # [out, in] -> q int8 [out, in] in -8..7, scale fp32 [out, in/block], max abs error
    w = np.asarray(w, np.float32)
    out_dim, in_dim = w.shape
    if in_dim % block:
        raise Q3RefError(f"int4-block{block}: this model has an input width of {in_dim}, not a multiple of "
                         f"{block} (the recipe quantizes whole blocks of {block} inputs)")
    wb = w.reshape(out_dim, in_dim // block, block)  # [out, blocks, block]
    scale, _ = bf16_round(np.maximum(np.abs(wb).max(axis=2), np.float32(1e-9)) / np.float32(7))  # [out, blocks]
    q = np.clip(np.rint(wb / scale[..., None]), -8, 7).astype(np.int8)  # [out, blocks, block]
    err = float(np.abs(q * scale[..., None] - wb).max(initial=0.0))
    return q.reshape(out_dim, in_dim), scale, err


def dequantize_blockwise(q, scale):  # int [out, in], [out, blocks] -> fp32 [out, in]
    out_dim, in_dim = q.shape
    block = in_dim // scale.shape[1]
    return (q.reshape(out_dim, -1, block).astype(np.float32) * scale[..., None]).reshape(out_dim, in_dim)


def int4_dequantized(w, block):  # [out, in] -> [out, in] fp32: int4 blockwise, dequantized (exact)
    return dequantize_blockwise(*int4_blockwise(w, block)[:2])


def int4_packed(w, block):  # [O, K] fp32 -> integer weights [K/block, block, O] fp32, scales [K/block, O]
    """int4_blockwise laid out for block_sums: one [block, O] matrix per block of inputs."""
    q, scale, _ = int4_blockwise(w, block)  # [O, K], [O, K/block]
    O, K = q.shape
    return (np.ascontiguousarray(q.astype(np.float32).reshape(O, K // block, block).transpose(1, 2, 0)),
            np.ascontiguousarray(scale.T))


def block_sums(q, wq):  # integer-valued fp32 [N, K], [K/block, block, O] -> [K/block, N, O]
    """Each block's integer sum of q * w, what an int4 kernel accumulates in int32: exact in fp32
    while block * max|q| * max|w| < 2^24 (128 * 255 * 8 = 261120)."""
    nb, block, _ = wq.shape
    return np.matmul(q.reshape(-1, nb, block).transpose(1, 0, 2), wq)  # [nb, N, O]



# ------------------------------------------------------------------ run-time activations
def round_half_away(x):
    """C's roundf: halves away from zero, unlike np.rint's to-even. Not trunc(x + 0.5): for
    0.49999997 that sum already rounds up to 1.0. x - trunc(x) is exact."""
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)


def round_add_half(x):  # fp32 -> fp32
    """trunc(x + copysign(0.5, x)) in fp32: how the builtin hybrid kernels' TfLiteRound (std::round
    in the source) runs in this build. It differs from roundf only just below a half: 0.49999997
    gives 1, not 0 (a one-op FULLY_CONNECTED fed exactly that value: probe.py). At 0.6B size that
    value came up once in 393216 inputs of one down_proj and moved its whole row by 1e-3."""
    x = np.asarray(x, np.float32)
    return np.trunc(x + np.copysign(np.float32(0.5), x))


def act_int8_symmetric(x):  # [N, K] fp32 -> integer values [N, K], scale [N]
    """Builtin TFLite hybrid kernels: per row, range = max|x|, inv = 127/range in fp32,
    q = round(x * inv) (round_add_half) clipped to +-127; dequantized value q * range/127."""
    rng = np.abs(x).max(axis=1)  # [N]
    inv = np.float32(127) / np.where(rng > 0, rng, np.float32(1))  # [N], fp32
    q = np.clip(round_add_half(x * inv[:, None]), -127, 127)  # [N, K]
    return q, rng / np.float32(127)


def row_range(x):  # [N, K] -> min, max (0 included), scale = range / 255, scale safe to divide by; [N] each
    lo = np.minimum(x.min(axis=1), 0)  # [N]
    hi = np.maximum(x.max(axis=1), 0)  # [N]
    scale = (hi - lo) / np.float32(255)  # [N]
    return lo, hi, scale, np.where(scale > 0, scale, np.float32(1))


def act_qd8(x):  # [N, K] fp32 -> q [N, K] in -128..127, zero point [N], dequantizing scale [N]
    """XNNPACK (xnn_f32_qd8_asymmetric_quantization_params): per row, with 0 included in the range,
    the multiplier inv = 255 / (max - min) in fp32, q = clip(rint(x * inv) + zp, -128, 127), the
    zero point from whichever end of the range rounds better, and the dequantizing scale 1 / inv.
    Each choice was measured: a division by the scale rounds values such as x/scale = -47.499996
    the other way (int4 graphs: 2 rows of 51 off); zp = rint(-128 - min / scale) and the scale
    (max - min) / 255 each left FULLY_CONNECTED outputs of the stress int8 graph off."""
    lo, hi, scale, safe = row_range(x)
    inv = np.float32(255) / np.where(hi > lo, hi - lo, np.float32(255))  # [N]
    # xnn_f32_qd8_asymmetric_quantization_params: the zero point from whichever end rounds better,
    # both through the multiplier (lo * inv, not lo / scale), then rintf.
    lo_s, hi_s = lo * inv, hi * inv  # [N]
    zp = np.where((np.float32(-128) + lo_s) + (np.float32(127) + hi_s) > 0, np.float32(-128) - lo_s,
                  np.float32(127) - hi_s)
    zp = np.rint(np.clip(zp, -128, 127))  # [N]
    q = np.clip(np.rint(x * inv[:, None]) + zp[:, None], -128, 127)  # [N, K]
    # The scale the GEMM dequantizes with is 1 / inv (xnn_f32_qd8_asymmetric_quantization_params
    # keeps the multiplier; its inverse goes to the kernel), not range / 255: they differ in the
    # last bit on a quarter of rows (measured on a FULLY_CONNECTED of the stress graph).
    return q, zp, np.where(hi > lo, np.float32(1) / inv, scale)


def act_int8_asymmetric(x):  # [N, K] fp32 -> integer values minus zero point [N, K], scale [N]
    """XNNPACK's run-time activations (act_qd8), as the integers its exact int32 sums see."""
    q, zp, scale = act_qd8(x)
    return q - zp[:, None], scale


def act_int8_asymmetric_builtin(x):  # [N, K] fp32 -> q [N, K] in -128..127, zero point [N], scale [N]
    """Builtin kernels' asymmetric per-row quantization (their int4 blockwise products use it,
    tensor_utils' AsymmetricQuantizeFloats row by row): the fp32 scale (max - min) / 255; the zero
    point in double, from whichever end of the range is nearer, rounded half away, clamped
    (an fp32 roundf(-128 - min / scale) left a row with min = -max at 0 where the kernel has -1:
    115 values of one q row off, 1 input of 16); q = clip(round(x * (1 / scale)) + zp, -128, 127),
    rounded as the symmetric path rounds (round_add_half: a row fed 0.49999997 at inv = 1 is off
    with roundf; probe.py's int4 FULLY_CONNECTED). Each choice here was measured on int4 graphs: a
    division, rint, a double scale, or rounding after adding zp (in fp32, or fused as one FMA, as
    the portable source reads) each leave rows off."""
    lo, hi, scale, safe = row_range(x)
    rmin, rmax = lo.astype(np.float64), hi.astype(np.float64)  # [N]
    sd = np.where(rmax > rmin, (rmax - rmin) / 255.0, 1.0)  # [N]
    from_min, from_max = -128 - rmin / sd, 127 - rmax / sd  # [N]
    zp = np.where(128 + np.abs(rmin / sd) < 127 + np.abs(rmax / sd), from_min, from_max)  # [N]
    zp = np.where(rmax > rmin, np.clip(round_half_away(zp), -128, 127), 0)  # [N]
    inv = np.float32(1) / safe  # [N]
    q = np.clip(round_add_half(x * inv[:, None]) + zp[:, None], -128, 127)  # [N, K]
    return q, zp, scale


def act_int8_asymmetric_tensor(x):  # fp32 array -> integer values minus zero point, scale (one for all)
    """TFLite's tensor_utils::AsymmetricQuantizeFloats over a whole tensor (the builtin hybrid
    DEPTHWISE_CONV_2D quantizes its input per batch, so a batch-1 tensor gets one scale), as the
    x86 build runs its NEON version: min and max capped at 0 in fp32, their difference in fp32
    (the portable source takes it in double), / 255 in double for the zero point (from whichever
    end is nearer, rounded, clamped), the scale that double rounded to fp32, q = x * fp32(1 /
    scale) rounded half away from zero (round_add_half), plus the zero point. Measured on Qwen3.5
    int8 graphs' convs: a double difference was 1 ulp off the scale on a 1-token prefill (99% of
    that conv's outputs off), and moved x * (1 / scale) onto a tie at full size (-11.5 where the
    graph has -11.499998: 2 of 393216 inputs)."""
    x = np.asarray(x, np.float32)
    rmin, rmax = min(np.float32(0), x.min()), max(np.float32(0), x.max())
    if rmin == rmax:
        return np.zeros_like(x), np.float32(1)
    scale = float(rmax - rmin) / 255.0  # the difference in fp32
    from_min, from_max = -128 - float(rmin) / scale, 127 - float(rmax) / scale
    zp = from_min if 128 + abs(float(rmin) / scale) < 127 + abs(float(rmax) / scale) else from_max
    zp = -128 if zp <= -128 else 127 if zp >= 127 else float(round_half_away(np.float64(zp)))
    scale = np.float32(scale)
    q = np.clip(round_add_half(x * np.float32(1 / float(scale))) + zp, -128, 127)
    return q - zp, scale


def hybrid_dwconv(padded, wq, ws):  # [T + C - 1, channels] fp32, [channels, C] int8 values, [channels] -> [T, channels]
    """The builtin hybrid DEPTHWISE_CONV_2D over time (Qwen3.5's causal conv in an int8 graph;
    XNNPACK does not take it): the input quantized as one tensor (act_int8_asymmetric_tensor),
    exact integer sums, times the channel's scale, then times the input's. The other order,
    acc * (input scale * channel scale), was off on 7% of a graph's outputs."""
    xq, xs = act_int8_asymmetric_tensor(padded)
    C = wq.shape[1]
    T = xq.shape[0] - C + 1
    acc = sum(xq[j:j + T] * np.asarray(wq[:, j], np.float32) for j in range(C))  # integers < 2^24: exact
    return (acc * np.asarray(ws, np.float32)) * xs


ACT_QUANT = {"builtin": act_int8_symmetric, "xnnpack": act_int8_asymmetric}


def lane_sum(x, lanes=8, offset=0):  # [..., C] fp32 -> [...] fp32
    """Sum over the last axis as a vectorized kernel does it: element j goes to lane
    (j + offset) % lanes, each lane adds in order, then the lanes are folded in halves (a
    horizontal add). `offset` is where x[..., 0] sits in the kernel's row (the padding before it)."""
    x = np.asarray(x, np.float32)
    pad = np.zeros(x.shape[:-1] + (offset % lanes,), np.float32)
    x = np.concatenate([pad, x], axis=-1)  # zeros add nothing exactly: the lanes line up as in the kernel
    acc = np.zeros(x.shape[:-1] + (lanes,), np.float32)  # [..., lanes]
    full = x.shape[-1] - x.shape[-1] % lanes
    for j in range(0, full, lanes):
        acc += x[..., j:j + lanes]
    acc[..., :x.shape[-1] - full] += x[..., full:]  # a partial last packet, still lane by lane
    while acc.shape[-1] > 1:  # horizontal add: halves folded onto each other
        acc = acc[..., :acc.shape[-1] // 2] + acc[..., acc.shape[-1] // 2:]
    return acc[..., 0]


def rms_norm_builtin(x, w, eps):  # [N, C] -> [N, C]
    """The odml.rms_norm composite as TFLite's builtin kernels run its decomposition (MUL, MEAN,
    ADD, RSQRT, MUL, MUL), bit for bit: MEAN sums in 8 fp32 lanes (AVX), lanes added as a tree,
    then / C; RSQRT is 1/sqrt in fp32; then (x * r) * w. Matched on every row of 2 graphs (C = 48,
    128). It matters because run-time int8 quantization turns a 1-ulp difference into a whole
    step (FACTS.md). XNNPACK's own decomposition is formats/litert/xnnpack.rms_norm."""
    x = np.asarray(x, np.float32)
    sq, C = x * x, x.shape[1]  # [N, C]
    full = C - C % 8
    total = lane_sum(sq[:, :full])  # [N]
    for j in range(full, C):  # a tail the lanes do not cover (none for C % 8 == 0), added after
        total = total + sq[:, j]
    r = np.float32(1) / np.sqrt(total / np.float32(C) + np.float32(eps))  # [N]
    return (x * r[:, None]) * np.asarray(w, np.float32)  # [N, C]


def exp_eigen(x):  # fp32 -> fp32
    """Eigen's pexp_float, which TFLite's builtin SOFTMAX calls, as this ai-edge-litert build
    runs it: no FMA (each madd is a rounded multiply, then a rounded add), Cephes constants,
    m = floor(x log2(e) + 1/2), r = x - m ln2 in two parts, a degree-6 polynomial split into
    even and odd halves, times 2^m. Measured bit-exact on every softmax value of the stress graph."""
    f = np.float32
    x = np.asarray(x, f)

    def madd(a, b, c):  # a * b + c, two roundings (pmadd without FMA)
        return (np.asarray(a, f) * np.asarray(b, f)).astype(f) + np.asarray(c, f)

    xc = np.minimum(x, f(88.723))
    m = np.floor(madd(xc, f(1.44269504088896341), f(0.5)))
    r = madd(m, f(-0.693359375), xc)
    r = madd(m, f(2.12194440e-4), r)
    r2 = r * r
    p_even = madd(r2, f(1.37449637986719608306884765625e-3), f(4.166965186595916748046875e-2))
    p_odd = madd(r2, f(8.36894474923610687255859375e-3), f(0.16666518151760101318359375))
    p_even = madd(p_even, r2, f(0.49999988079071044921875))
    y = madd(r, p_odd, p_even)
    y = madd(r2, y, r + f(1))
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.ldexp(y, np.clip(m, -200, 200).astype(np.int32)).astype(f)
    return np.where(x < f(-104), f(0), np.maximum(y, x))


def logistic_eigen(x):  # fp32 -> fp32
    """Eigen's scalar_logistic_op<float> packet path, which TFLite's builtin LOGISTIC calls
    (optimized_ops::Logistic), as this build runs it (no FMA, as exp_eigen): exp(x/2) by Cephes'
    reduction and a degree-5 polynomial, 2^m by building the exponent bits, squared, then
    e / (1 + e); x < -104 gives 0, x is first clipped to 16.6355324. Measured bit-exact on 44001
    values through the interpreter (probe.py's LOGISTIC graph; 1/(1+exp(-x)) differs on 62% of them).
    Eigen runs a tensor's last size % 8 values through its scalar path (libm's expf); a Qwen3
    MLP width is a multiple of 8, so only the packet path is emulated."""
    f = np.float32
    x = np.asarray(x, f)

    def madd(a, b, c):  # pmadd without FMA: a rounded multiply, then a rounded add
        return (np.asarray(a, f) * np.asarray(b, f)).astype(f) + np.asarray(c, f)

    half = np.minimum(x, f(16.6355324)) * f(0.5)  # exp(x) = exp(x/2)^2: 2^m stays normal
    m = np.floor(madd(half, f(1.44269504088896341), f(0.5)))
    r = madd(m, f(-0.693359375), half)
    r = madd(m, f(2.12194440e-4), r)
    r2 = r * r
    p_even = madd(r2, f(4.1898667812347412109375e-2), f(0.49999141693115234375))
    p_odd = madd(r2, f(8.33471305668354034423828125e-3), f(0.16666877269744873046875))
    p = madd(r2, madd(r, p_odd, p_even), r + f(1))
    two_m = (np.clip(m + f(127), 0, 255).astype(np.int32) << 23).view(f)  # pldexp_fast: 2^m as bits
    e = p * two_m
    e = e * e
    with np.errstate(invalid="ignore"):
        return np.where(x < f(-104), f(0), e / (f(1) + e)).astype(f)


def silu_mul_builtin(gate, up):  # [N, F] x2 -> [N, F]
    """litert-torch's SwiGLU as the builtin kernels run it: LOGISTIC(gate) (logistic_eigen), then
    two MULs, gate * that, times up, each rounded to fp32."""
    gate, up = np.asarray(gate, np.float32), np.asarray(up, np.float32)
    return (gate * logistic_eigen(gate)) * up


def normalize_builtin(x, dim=None):  # [B, D] -> [B, dim]
    """litert-torch's L2 normalization as the builtin kernels run it: ABS, MUL (|x|*|x|), SUM in
    order (one rounded add after another: measured on 40 inputs, where 8 or 16 lanes and NumPy's
    sum each missed more than half), SQRT, MAXIMUM with 1e-12, DIV. An MRL dim is the bridge's,
    after the graph: model.normalize."""
    from .model import normalize

    if dim is not None:
        return normalize(x, dim)
    sq = np.abs(np.asarray(x, np.float32)) * np.abs(np.asarray(x, np.float32))  # [B, D]
    total = np.cumsum(sq, axis=-1, dtype=np.float32)[..., -1:]  # [B, 1]: a sequential fp32 sum
    return x / np.maximum(np.sqrt(total), np.float32(1e-12))  # [B, D]


def matmul_sequential(a, b):  # [..., M, K] @ [..., K, N] -> [..., M, N] fp32
    """Each output is a sum over K in order, a rounded multiply then a rounded add per step (no
    FMA): how this build's builtin BATCH_MATMUL computes (measured bit-exact on the stress graph;
    BLAS and FMA orders leave ~half the values 1 ulp off)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    acc = np.zeros(np.broadcast_shapes(a.shape[:-1], b.shape[:-2] + (1,))[:-1] + (a.shape[-2], b.shape[-1]), np.float32)
    for k in range(a.shape[-1]):
        acc += a[..., :, k, None] * b[..., None, k, :]
    return acc


# ------------------------------------------------------------ builtin float FULLY_CONNECTED (Eigen)
# The builtin float FULLY_CONNECTED on x86 is Eigen's GEMM (cpu_backend_gemm_eigen): weights
# [O, K] as the left factor, the inputs [K, N] as the right. Eigen's blocking heuristic cuts K
# into blocks of kc inputs; per output, each block is a sum from 0 in order, a rounded product
# then a rounded add per step (no FMA in this build), and the blocks are added to the output in
# order. The same with 1 and 2 interpreter threads (Eigen's threaded blocking would cap kc at 320).
# kc comes from max_kc, which Eigen derives from the L1 data cache size it reads from the CPU.
# Measured: 680 on the AMD EPYC here (32 KB L1d), Eigen's (L1 - mr nr 4) / ((mr + nr) 4) rounded
# down to a multiple of 8 with mr = 8, nr = 4; a 48 KB L1d would give 1016 by that formula (not
# measured). So the probe finds max_kc by running the kernel (probe.eigen_max_kc), not from a
# formula or a table. Measured on one-op graphs: every output for K up to 4000, O a multiple of 8
# and N >= 2 (K = 680 is one block, 688 two). The O % 8 output channels past the last multiple
# of 8 take Eigen's other paths, each block summed in its own order (eigen_tail), except for the
# N % 4 inputs past the last whole 4-column panel, which are sequential again. A 1-row input
# (N = 1) is Eigen's matrix-vector product instead: eigen_gemv.
def eigen_kc(k, max_kc, peel=8):  # Eigen's evaluateProductBlockingSizesHeuristic, its kc
    """K up to max_kc is one block; past it, blocks as equal as the peeling allows, the number of
    sweeps over the output kept that of max_kc."""
    if k <= max_kc:
        return k
    if k % max_kc == 0:
        return max_kc
    return max_kc - peel * ((max_kc - 1 - k % max_kc) // (peel * (k // max_kc + 1)))


@numba.njit(cache=True, nogil=True)  # no fastmath: no FMA, each product rounded before its sum
def _matmul_blocks(a, b, kc, out):  # [M, K] @ [K, N] -> out [M, N], zeroed
    M, K = a.shape
    N = b.shape[1]
    acc = np.empty(N, np.float32)
    for m in range(M):
        for k0 in range(0, K, kc):  # the blocks in order, each summed from 0 into acc, then added to out
            acc[:] = 0
            for k in range(k0, min(k0 + kc, K)):  # k outside n: each output's order, and n vectorizes
                x = a[m, k]
                for n in range(N):
                    acc[n] += x * b[k, n]
            for n in range(N):
                out[m, n] += acc[n]


def matmul_blocks_numpy(a, b, kc):  # the plain twin: [M, K] @ [K, N] -> [M, N]
    out = np.zeros((a.shape[0], b.shape[1]), np.float32)
    for k0 in range(0, a.shape[1], kc):
        out += matmul_sequential(a[:, k0:k0 + kc], b[k0:k0 + kc])
    return out


def _matmul_blocks_threaded(a, b, kc, out):  # rows over the cores, as XNNPACK's FMA chain (each row its own)
    from .kernels import by_rows

    by_rows(lambda r0, r1: _matmul_blocks(a[r0:r1], b, kc, out[r0:r1]), a.shape[0], 16)


def _matmul_blocks_numpy_into(a, b, kc, out):
    out += matmul_blocks_numpy(a, b, kc)


MATMUL_BLOCKS = {"numba": _matmul_blocks_threaded, "numpy": _matmul_blocks_numpy_into}


def _even_odd(p):  # [..., K] products -> [...]: a half-packet row (4 rows) in one block
    """Even k into C, odd k into D over the whole 8-steps (Eigen's doubled accumulators), C + D,
    then the rest in order."""
    peeled = p.shape[-1] - p.shape[-1] % 8
    C, D = np.zeros(p.shape[:-1], np.float32), np.zeros(p.shape[:-1], np.float32)
    for k in range(0, peeled, 2):
        C, D = C + p[..., k], D + p[..., k + 1]
    C = C + D
    for k in range(peeled, p.shape[-1]):
        C = C + p[..., k]
    return C


def _four_accumulators(p):  # [..., K] products -> [...]: a single row (past the half packet) in one block
    """k % 4 into C0 .. C3 over the whole 4-steps, (C0 + C1) + (C2 + C3), then the rest in order."""
    whole = p.shape[-1] - p.shape[-1] % 4
    C = [np.zeros(p.shape[:-1], np.float32) for _ in range(4)]
    for k in range(0, whole, 4):
        C = [C[i] + p[..., k + i] for i in range(4)]
    s = (C[0] + C[1]) + (C[2] + C[3])
    for k in range(whole, p.shape[-1]):
        s = s + p[..., k]
    return s


def eigen_tail(x, wt, kc):  # [N4, K], [K, t] -> [N4, t]: the O % 8 = t last output channels
    """For inputs in whole 4-column panels: the first 4 of the t channels (if t >= 4) by _even_odd,
    the rest by _four_accumulators, block by block, the blocks added in order. Measured on one-op
    graphs of O = 3 .. 300 (t = 1 .. 7), N = 6 .. 128 and K = 100 .. 4000: every output."""
    t = wt.shape[1]
    half = 4 if t >= 4 else 0
    out = np.zeros((x.shape[0], t), np.float32)  # [N4, t]
    for k0 in range(0, x.shape[1], kc):
        p = x[:, None, k0:k0 + kc] * wt[k0:k0 + kc].T[None]  # [N4, t, block] products, each rounded
        out[:, :half] += _even_odd(p[:, :half])
        out[:, half:] += _four_accumulators(p[:, half:])
    return out


def eigen_gemv(x, wt):  # [1, K], [K, O] -> [1, O]: Eigen's matrix-vector product (the float FC at N = 1)
    """Per output: the products rounded, summed in 4 lanes (input k in lane k % 4: SSE packets) over
    the whole packets, the lanes folded in halves, (l0 + l2) + (l1 + l3), then the K % 4 last
    products added in order. Measured on one-op graphs: every output for O 1 .. 2048 (odd ones
    too) and K 3 .. 8197; a sequential sum matched 6-52%, 8 lanes 8-100% (K = 8 only)."""
    p = np.asarray(x, np.float32)[0][:, None] * wt  # [K, O]
    full = p.shape[0] - p.shape[0] % 4
    acc = np.zeros((4, p.shape[1]), np.float32)  # [4, O]
    for k in range(0, full, 4):
        acc += p[k:k + 4]
    out = (acc[0] + acc[2]) + (acc[1] + acc[3])  # [O]
    for k in range(full, p.shape[0]):
        out = out + p[k]
    return out[None]


def eigen_float_linear(max_kc, values=None, kernels="numba", cache=True):
    """FULLY_CONNECTED with float weights as the builtin kernel computes it (Eigen's GEMM, see
    above). values(w): the weight as the graph holds it, in fp32 (fp16 graphs: to_fp16; weight-
    only int8: int8_dequantizer). Like XNNPACK's FMA chain, 3-5x BLAS's time: only a diff runs it."""
    weights = QuantizedWeights(lambda w: np.ascontiguousarray((values(w) if values else np.asarray(w, np.float32)).T), cache)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        x = np.ascontiguousarray(x, np.float32)
        if x.shape[0] == 1:
            return eigen_gemv(x, weights(w))
        wt, kc = weights(w), eigen_kc(x.shape[1], max_kc)  # [in, out]
        out = np.zeros((x.shape[0], wt.shape[1]), np.float32)  # [N, out]
        MATMUL_BLOCKS[kernels](x, wt, kc, out)
        main, n4 = wt.shape[1] - wt.shape[1] % 8, x.shape[0] - x.shape[0] % 4
        if main < wt.shape[1] and n4:  # Eigen's other paths for the last O % 8 channels
            out[:n4, main:] = eigen_tail(x[:n4], wt[:, main:], kc)
        return out
    linear.quantized = weights
    return linear


def rope_tables_litert(pos, head_dim, theta, dtype=np.float32):  # [N] -> cos, sin [N, Dh]
    """The cos/sin constants litert-torch bakes into a graph: angle = pos / theta**((2/Dh) *
    arange(Dh/2)) in fp32 (a division, where transformers multiplies by 1/theta**...), then
    cos and sin rounded once to fp32 from the exact value of that angle. On the stress graph:
    every cos value and 508 of 512 sin values (the export's torch sinf is not correctly rounded:
    those 4 are 1 ulp off); transformers' formula matches 85% of them."""
    f = np.float32
    denom = f(theta) ** ((f(2) / f(head_dim)) * np.arange(head_dim // 2, dtype=f))  # [Dh/2]
    angles = (np.asarray(pos, f)[:, None] / denom[None, :]).astype(np.float64)  # [N, Dh/2]
    cos, sin = np.cos(angles).astype(f), np.sin(angles).astype(f)  # [N, Dh/2] each
    return np.concatenate([cos, cos], axis=-1), np.concatenate([sin, sin], axis=-1)  # [N, Dh] each


def attention_builtin(offset=0):
    """The odml.scaled_dot_product_attention composite as the builtin kernels run its
    decomposition, bit for bit given its inputs: q and k each times Dh^-1/4 (MUL), scores by
    BATCH_MATMUL (matmul_sequential), + mask, SOFTMAX as Eigen computes it (max, x - max,
    exp_eigen, an 8-lane sum, 1/sum, times), then BATCH_MATMUL with v. Only visible keys are
    summed; masked ones are exactly 0 after the exp, so they change no sum. `offset` is the
    first real token's column in the graph (its left padding), which sets the sum's lanes."""
    def attention(q, k, v, mask):  # [B, T, H, Dh], [B, T, Hkv, Dh] x2, [B, T] -> [B, T, H, Dh]
        B, T, H, Dh = q.shape
        rep = H // k.shape[2]
        s = np.float32(Dh ** -0.25)
        out = np.zeros(q.shape, np.float32)
        for b in range(B):
            qs = (q[b] * s).transpose(1, 0, 2)  # [H, T, Dh]
            ks = np.repeat((k[b] * s).transpose(1, 0, 2), rep, axis=0)  # [H, T, Dh]
            vs = np.repeat(v[b].transpose(1, 0, 2), rep, axis=0)  # [H, T, Dh]
            scores = matmul_sequential(qs, ks.transpose(0, 2, 1))  # [H, T, T]
            visible = np.tril(np.ones((T, T), bool)) & mask[b][None, :]  # [T, T]
            top = np.where(visible, scores, -np.inf).max(axis=-1, keepdims=True)  # [H, T, 1]
            top = np.where(np.isfinite(top), top, np.float32(0))
            e = np.where(visible, exp_eigen(np.where(visible, scores - top, 0)), np.float32(0))  # [H, T, T]
            p = e * (np.float32(1) / lane_sum(e, 8, offset))[..., None]  # [H, T, T]
            out[b] = matmul_sequential(np.nan_to_num(p), vs).transpose(1, 0, 2)  # [T, H, Dh]
        return out * mask[:, :, None, None]  # padded query rows: zeros, as q3ref's attention
    return attention


class QuantizedWeights:
    """quantize(w) of each weight the simulation multiplies with. With resident weights it is
    made once per array (keyed by the array's identity, which resident weights keep); with
    streaming weights every access brings a fresh array, so nothing is kept."""

    def __init__(self, quantize, cache=True):
        self.quantize, self.cache = quantize, ({} if cache else None)

    def __call__(self, w):
        if self.cache is None:
            return self.quantize(w)
        key = id(w)
        if key not in self.cache:
            self.cache[key] = (w, self.quantize(w))  # w kept so its id stays unique
        return self.cache[key][1]


def int8_for_matmul(w):  # [out, in] -> integer-valued fp32 [out, in], scale fp32 [out]
    q, scale, _ = int8_per_channel(w)
    return q.astype(np.float32), scale


@numba.njit(cache=True, nogil=True)  # no fastmath: the division must stay a division
def int8_for_matmul_numba_into(w, q, scale):
    """int8_for_matmul row by row, w [out, in] -> q [out, in], scale [out]: two reads and one
    write, where the twin's temporaries (w / scale, rint, clip, int8, back to fp32) took
    18-23 ms per [3072, 1024] weight (a 0.6B's pass: ~3 s, AMD EPYC); this 4.5 ms."""
    O, I = w.shape
    lo, hi, zero = np.float32(-127), np.float32(127), np.float32(0)
    for o in range(O):
        amax = zero
        for i in range(I):
            a = abs(w[o, i])
            if a > amax or a != a:  # a NaN weight makes the scale NaN, as np.max does
                amax = a
            if amax != amax:
                break
        s = amax / hi
        scale[o] = s
        safe = s if s > zero else np.float32(1)  # an all-zero row quantizes to zeros
        for i in range(I):
            q[o, i] = min(max(np.rint(w[o, i] / safe), lo), hi)


def int8_for_matmul_numba(w):  # [out, in] -> integer-valued fp32 [out, in], scale fp32 [out]
    w = np.ascontiguousarray(w, np.float32)
    q, scale = np.empty_like(w), np.empty(w.shape[0], np.float32)  # [out, in], [out]
    int8_for_matmul_numba_into(w, q, scale)
    return q, scale


INT8_FOR_MATMUL = {"numba": int8_for_matmul_numba, "numpy": int8_for_matmul}


def exact_int_matmul(xq, wq, w_max):  # integer-valued fp32 [N, K], [out, K], max |w| -> exact sums [N, out]
    """The int32 accumulation of an int8 kernel, exactly, at fp32 GEMM speed. fp32 holds every
    integer below 2^24, and every partial sum of a row's products is at most its sum of |x| times
    w_max: where that stays below 2^24 the GEMM is exact in whatever order BLAS adds. So K is cut
    into the fewest equal chunks (1, 2, 4 ...) for which it does, and the chunks are added in
    float64 (exact too). The worst case, |x| = 255 and |w| = 127 everywhere, needs 512-input
    chunks; a real activation row mostly needs one (its outliers set the scale)."""
    N, K = xq.shape
    base = np.add.reduceat(np.abs(xq), np.arange(0, K, EXACT_UNIT), axis=1)  # [N, units]: sums of |x|
    step = base.shape[1]  # units per chunk
    while step > 1 and float(np.add.reduceat(base, np.arange(0, base.shape[1], step), axis=1).max()) * w_max >= EXACT:
        step = (step + 1) // 2
    chunk = step * EXACT_UNIT
    if chunk >= K:
        return xq @ wq.T  # [N, out], exact: fp32 as it is
    acc = None
    for k in range(0, K, chunk):
        part = xq[:, k:k + chunk] @ wq[:, k:k + chunk].T  # [N, out], exact
        acc = part.astype(np.float64) if acc is None else acc + part
    return acc  # [N, out] float64


EXACT = 2 ** 24  # fp32's integers are exact below this
EXACT_UNIT = 64  # chunks are whole multiples of 64 inputs: 64 * 255 * 255 < 2^24 always
INT8_MAX = 127  # the int8 weights' largest |q|: symmetric, per channel


def dynamic_int8_linear(runtime, kernels="numba", cache=True):
    """x @ W.T as a dynamic_int8 graph computes it: int8 weights per channel, activations
    quantized per row at run time, exact integer accumulation, then acc * (activation scale *
    weight scale) in fp32."""
    quantize_act, weights = ACT_QUANT[runtime], QuantizedWeights(INT8_FOR_MATMUL[kernels], cache)

    def linear(x, w, bias=None):  # [N, in], [out, in], [out] -> [N, out]
        wq, ws = weights(w)  # [out, in] integer-valued, [out]
        xq, xs = quantize_act(np.asarray(x, np.float32))  # [N, in], [N]
        acc = exact_int_matmul(xq.astype(np.float32), wq, INT8_MAX).astype(np.float32, copy=False)  # [N, out]
        if runtime == "xnnpack":  # qd8-f32-qc8w gemm's epilogue: (acc * input scale), then fma with the filter
            if bias is None:  # scale and a zero bias: a multiply. Every value of a stress FC.
                return (acc * xs[:, None]) * ws[None, :]
            from .formats.litert.xnnpack import fma
            return fma(acc * xs[:, None], ws[None, :], np.asarray(bias, np.float32))  # one rounding (probed)
        out = acc * (xs[:, None] * ws[None, :])  # [N, out] fp32
        return out if bias is None else out + np.asarray(bias, np.float32)  # (not probed on the builtin kernel)
    linear.quantized = weights
    return linear


def int8_dequantizer(kernels="numba"):
    """w [out, in] -> its int8 per-channel values dequantized, q * scale in fp32 [out, in]."""
    def dequantized(w):
        q, scale = INT8_FOR_MATMUL[kernels](w)  # [out, in] integer-valued fp32, [out]
        return q * scale[:, None]
    return dequantized


def weight_only_int8_linear(kernels="numba", cache=True):
    """weight_only_int8: weights dequantized (q * scale, fp32), the product in float."""
    weights = QuantizedWeights(int8_dequantizer(kernels), cache)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        return x @ weights(w).T
    linear.quantized = weights
    return linear


def dynamic_int4_linear(block, runtime, kernels="numba", cache=True, exact_order=True):
    """x @ W.T as a dynamic_int4_block graph computes it: int4 weights with a scale per block,
    activations quantized per row asymmetrically (both runtimes; they round differently), each
    block's exact integer sum times its block's scale, the zero point's share, then the
    activation scale. The fp32 sums over blocks round, so with exact_order each runtime's order
    is kept (XNNPACK's in formats/litert/xnnpack.py): one fp32 GEMM over all inputs was off on
    87% of the outputs of a one-op builtin graph whose block scales span 2^-12 .. 2^6 (probe.py),
    and on 2 of 262144 of a 0.6B graph's q_proj (XNNPACK). That order costs: the block sums go
    through BLAS 32 or 128 inputs at a time, 3-4x one GEMM at block 32 (0.6B, 512 tokens: the
    simulated forward 5.7x the fp32 one, against 1.2x). So without it (exact_order=False: a
    simulation without a graph, already not the device's to the bit) the product is one fp32 GEMM
    of the same integers with the dequantized weights."""
    if not exact_order:
        return gemm_int4_linear(block, runtime, cache)
    if runtime == "xnnpack":
        from .formats.litert.xnnpack import int4_linear
        return int4_linear(block, kernels, cache)
    return builtin_int4_linear(block, kernels, cache)


def gemm_int4_linear(block, runtime, cache=True):
    """The int4 product as one fp32 GEMM: the runtime's activation integers and scale, the
    dequantized weights (each product exact in fp32), BLAS's order of the sums."""
    weights = QuantizedWeights(lambda w: int4_dequantized(w, block), cache)  # [out, in] fp32
    quantize = act_qd8 if runtime == "xnnpack" else act_int8_asymmetric_builtin

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        q, zp, xs = quantize(np.asarray(x, np.float32))  # [N, in], [N], [N]
        return ((q - zp[:, None]).astype(np.float32) @ weights(w).T) * xs[:, None]  # [N, out]
    linear.quantized = weights
    return linear


INT4_ROWS = 128  # activation rows per step: [blocks, rows, out] sums, 50 MB at the 0.6B's down_proj


def builtin_int4_weights(w, block):  # [O, K] -> integer weights [nb, block, O], scales [nb, O], kfsum [O]
    """kfsum = the sum over blocks of scale * (block's integer weight sum), in fp32, in block order."""
    wq, scale = int4_packed(w, block)
    ksum = wq.sum(axis=1)  # [nb, O], exact
    kfsum = np.zeros(scale.shape[1], np.float32)  # [O]
    for b in range(scale.shape[0]):
        kfsum += scale[b] * ksum[b]  # the product exact (8 bits x 8 bits), the sum rounded in order
    return wq, scale, kfsum


@numba.njit(cache=True, nogil=True)  # no fastmath: no FMA, each product rounded before its sum
def _add_blocks(sums, scale, acc):  # sums [nb, N, O], scale [nb, O], acc [N, O] in place, blocks in order
    nb, N, O = sums.shape
    for b in range(nb):
        for n in range(N):
            for o in range(O):
                acc[n, o] += sums[b, n, o] * scale[b, o]


def _add_blocks_numpy(sums, scale, acc):  # the plain twin
    for b in range(len(sums)):
        acc += sums[b] * scale[b][None, :]


ADD_BLOCKS = {"numba": _add_blocks, "numpy": _add_blocks_numpy}


def builtin_int4_linear(block, kernels="numba", cache=True):
    """The builtin kernel (fully_connected.cc, EvalBlockwise4Bit), per output: out = the sum over
    blocks, in order, of (integer sum of q * w) * scale, each product and sum rounded (no FMA:
    with one, 4.5% of a one-op graph's outputs were off at block 128); then out - zp * kfsum,
    product and difference rounded (one FMA there: 18-20% off); then times the activation scale.
    q is the stored int8 (zero point included)."""
    weights, accumulate = QuantizedWeights(lambda w: builtin_int4_weights(w, block), cache), ADD_BLOCKS[kernels]

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        wq, scale, kfsum = weights(w)  # [nb, block, O], [nb, O], [O]
        q, zp, xs = act_int8_asymmetric_builtin(np.asarray(x, np.float32))  # [N, in], [N], [N]
        out = np.empty((q.shape[0], scale.shape[1]), np.float32)  # [N, O]
        for r in range(0, q.shape[0], INT4_ROWS):
            acc = np.zeros((min(INT4_ROWS, q.shape[0] - r), scale.shape[1]), np.float32)  # [n, O]
            accumulate(block_sums(q[r:r + INT4_ROWS].astype(np.float32), wq), scale, acc)
            acc -= zp[r:r + INT4_ROWS, None].astype(np.float32) * kfsum[None, :]
            out[r:r + INT4_ROWS] = acc * xs[r:r + INT4_ROWS, None]
        return out
    linear.quantized = weights
    return linear


class QuantizedEmbedding:
    """The checkpoint's weights with the embedding table as the graph stores it, rows quantized
    independently (so only the looked-up rows are): int8 per vocabulary row or int4 blockwise."""

    def __init__(self, weights, dequantize_rows):
        self.inner, self.dtype, self.resident = weights, weights.dtype, weights.resident
        self.dequantize_rows = dequantize_rows

    def __getitem__(self, name):
        return self.inner[name]

    def embed_rows(self, ids):  # [N] -> [N, D]
        return self.dequantize_rows(self.inner.embed_rows(ids)).astype(self.dtype)

    def head_rows(self, ids):  # [n] -> [n, D]: a reranker's LM head rows, which the linear kernel quantizes
        return self.inner.head_rows(ids)


def int8_rows(rows):  # [N, D] -> [N, D] fp32: per-row int8, dequantized
    q, scale, _ = int8_per_channel(rows)
    return q.astype(np.float32) * scale[:, None]


def int4_rows(block):
    def dequantize(rows):  # [N, D] -> [N, D] fp32
        return int4_dequantized(rows, block)
    return dequantize


def fp16_weight_linear(cache=True):
    weights = QuantizedWeights(to_fp16, cache)  # (fp16_round would also find the error, unused here)

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        return x @ weights(w).T
    linear.quantized = weights
    return linear


SIMULATIONS = ("int8", "int8-weight-only", "int4-block32", "int4-block128", "fp16", "fp16-activations")
# Float recipes. "fp32" is no --quant choice (that is the reference): a diff simulates an fp32
# graph's runtime with it.
FLOAT_SIMULATIONS = ("fp32", "fp16", "fp16-activations")


def float_graph_weights(weights, quant, kernels):
    """A float graph's weights as its runtime holds them: (values(w) for its float FULLY_CONNECTED,
    the weights for model.forward, embedding table included). fp32 as they are; fp16 ones widened
    to fp32; weight-only int8 ones dequantized at load, q * scale."""
    if quant == "fp32":
        return None, weights
    if quant == "fp16":
        return to_fp16, QuantizedEmbedding(weights, to_fp16)
    return int8_dequantizer(kernels), QuantizedEmbedding(weights, int8_rows)


def simulation(weights, kernels, quant, runtime="xnnpack", offset=0, width=None):
    """(weights, kernel dict) that make model.forward compute like a graph of that recipe.

    fp16 is litert-torch's fp16 recipe as a CPU runs it: fp16 weights, fp32 activations.
    fp16-activations is what an fp16 runtime (GPU delegate, XNNPACK's fp16 inference) adds on
    top: every op's output rounded to fp16 (model.forward applies K["round"] at each tap), the
    arithmetic inside an op in fp32. An overflow becomes inf, as it does on the device.
    offset, width: where a graph's first real token sits and its seq_len, which set the lanes of
    the attention's sums (builtin: offset; XNNPACK: both). Without a width (no graph to be held
    to), XNNPACK's attention is q3ref's own, int4 products are one fp32 GEMM, not the kernels'
    slower order of sums (dynamic_int4_linear), and fp16 is q3ref's own kernels and BLAS's
    product. fp32 (a diff's only) is a float graph's runtime: on XNNPACK every op, its float
    FULLY_CONNECTED an FMA chain; on the builtin kernels their float ops, and a float graph's
    FULLY_CONNECTED (fp32, fp16 and weight-only int8) as Eigen's GEMM sums it, where the probe
    found its blocking on this CPU (eigen_float_linear)."""
    from .kernels import KERNELS, rope_numpy

    K, cache = dict(KERNELS[kernels]), weights.resident
    # The runtime's own float ops: where they feed a quantized matmul (1 ulp there flips an
    # activation level), and in a float graph that a diff holds the simulation to (width given).
    held_to_graph = width is not None and quant != "fp16-activations"
    emulate = weights.dtype == np.float32 and (quant not in FLOAT_SIMULATIONS or held_to_graph)
    if runtime == "builtin" and emulate:
        # what feeds a quantized matmul must match to the bit: the float ops before it too
        K["rms_norm"], K["attention"] = rms_norm_builtin, attention_builtin(offset)
        K["silu_mul"] = silu_mul_builtin  # LOGISTIC as Eigen computes it: 1 ulp here flips activation levels
        K["normalize"] = normalize_builtin  # the graph's own L2 normalization, its SUM in order
        K["rope"], K["rope_tables"] = rope_numpy, rope_tables_litert  # the graph's tables; no FMA
        if width is not None and quant in ("fp32", "fp16", "int8-weight-only"):
            from .formats.litert.probe import builtin_variant

            max_kc = builtin_variant()["params"].get("eigen_max_kc")
            if max_kc:  # its float FULLY_CONNECTED: Eigen's GEMM, in blocks of the kc the probe found on this CPU
                values, held = float_graph_weights(weights, quant, kernels)
                K["linear"] = eigen_float_linear(max_kc, values, kernels, cache)
                return held, K
    if runtime == "xnnpack" and emulate:
        from .formats.litert import xnnpack

        # each of XNNPACK's ops where the probe finds this CPU running what xnnpack.py does; q3ref's own elsewhere
        K.update({name: getattr(xnnpack, name) for name in ("rms_norm", "silu_mul", "normalize") if xnnpack.emulates(name)})
        if width is not None:
            if xnnpack.emulates("attention"):
                K["attention"] = xnnpack.attention(offset, width)
            # its float FULLY_CONNECTED, an FMA chain (3-5x BLAS's time), on the weights as it holds them
            if quant in ("fp32", "fp16", "int8-weight-only") and xnnpack.emulates("f32_gemm_linear"):
                values, held = float_graph_weights(weights, quant, kernels)
                K["linear"] = xnnpack.f32_gemm_linear(values, cache)
                return held, K
    if quant == "fp32":  # a float graph elsewhere: the runtime's float ops above, BLAS's product
        return weights, K
    if quant == "int8":
        return QuantizedEmbedding(weights, int8_rows), dict(K, linear=dynamic_int8_linear(runtime, kernels, cache))
    if quant == "int8-weight-only":
        return QuantizedEmbedding(weights, int8_rows), dict(K, linear=weight_only_int8_linear(kernels, cache))
    if quant in ("int4-block32", "int4-block128"):
        block = int(quant.removeprefix("int4-block"))
        linear = dynamic_int4_linear(block, runtime, kernels, cache, exact_order=width is not None)
        return QuantizedEmbedding(weights, int4_rows(block)), dict(K, linear=linear)
    if quant == "fp16":  # the embedding table is fp16 in the graph too
        return QuantizedEmbedding(weights, to_fp16), dict(K, linear=fp16_weight_linear(cache))
    if quant == "fp16-activations":
        return QuantizedEmbedding(weights, to_fp16), dict(K, linear=fp16_weight_linear(cache), round=to_fp16)
    raise ValueError(f"unknown simulation {quant!r}; choose from {', '.join(SIMULATIONS)}")


FP16_MAX = 65504.0


def fp16_headroom(taps: dict, names) -> dict:
    """Per tap in forward order: max |x| and how many times it fits under fp16's largest value.
    Qwen3's residual stream is known to outgrow fp16 in real weights; the first tap that would
    overflow (or is already non-finite) is where an fp16 runtime goes inf/NaN."""
    rows, first = [], None
    for name in names:
        x = np.asarray(taps[name])
        peak = float(np.abs(x).max(initial=0.0)) if np.isfinite(x).all() else float("inf")
        rows.append({"name": name, "max_abs": peak, "headroom": FP16_MAX / peak if peak > 0 else float("inf")})
        if first is None and peak > FP16_MAX:
            first = name
    tightest = min(rows, key=lambda r: r["headroom"])
    return {"taps": rows, "first_overflow": first, "tightest": tightest["name"], "min_headroom": tightest["headroom"]}
