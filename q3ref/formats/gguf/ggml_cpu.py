"""ggml-cpu's float kernels as an AVX-512 build computes them, to the bit, in NumPy (the matmuls
also in Numba, per output with the rows in SIMD lanes: the *_numba functions the simulation runs,
each tested equal to its NumPy twin here).

llama-cpp-python builds llama.cpp for the CPU it is installed on (GGML_NATIVE), so on the
AVX-512 machines q3ref runs on, these are the code paths (ggml/src/ggml-cpu):
- F16, BF16 and Q8_0 matmuls with two or more rows go to llamafile's tinyBLAS (llamafile/sgemm.cpp):
  F16: 16 fp32 lanes, lane t sums a[16l+t]*b[16l+t] over l with FMA (the product of two fp16
  values is exact in fp32, so FMA = multiply then add), then _mm512_reduce_add_ps (GCC's tree:
  8+8, 4+4, 2+2, 1+1). Q8_0: 8 lanes, lane t the exact integer sum of bytes 4t..4t+3 of a
  block, acc = fma(d_w*d_x, sum, acc) block after block, then hsum(__m256) (4+4, 2+2, 1+1).
  BF16 (an AVX512_BF16 build): 16 lanes of VDPBF16PS over 32 values at a time, then the same reduce.
- exp (softmax, SiLU): ggml_v_expf, a degree-5 polynomial after a ln2 range reduction, FMA.
- softmax: per row, exp(x - max) 16 at a time, each group's sum by _mm512_reduce_add_ps added
  to a double; then every value times (float)(1/sum).
- RoPE: cosf and sinf from the C library (glibc's are within an ulp, not always the correctly
  rounded value), and GCC contracts x0*cos - x1*sin into fma(x0, cos, -(x1*sin)) (and the
  second line alike): on the committed dumps that matched every value; no contraction left 771
  of 5632 values off, the other contraction 1227.
Which build ran is recorded with the run (llama_print_system_info); gguf/sim.py falls back to its
plain kernels when the build is not AVX-512 (each kernel here has its plain twin there).
FMA in fp32 is emulated as float64 product (exact for these operands) plus float64 add, rounded
once to fp32: one double rounding in ~2^29 cases can differ from the hardware.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from ..fp32 import fma, fma32

F32, F64 = np.float32, np.float64


def reduce_add16(v):  # [..., 16] fp32 -> [...]: GCC's _mm512_reduce_add_ps
    t = v[..., 8:] + v[..., :8]
    t = t[..., 4:] + t[..., :4]
    t = t[..., :2] + t[..., 2:]  # shuffle (2, 3, 0, 1): lanes 0, 1 meet 2, 3
    return t[..., 0] + t[..., 1]


def hsum8(v):  # [..., 8] fp32 -> [...]: tinyBLAS's hsum(__m256): hi + lo, movehl, movehdup
    t = v[..., 4:] + v[..., :4]
    t = t[..., :2] + t[..., 2:]
    return t[..., 0] + t[..., 1]


# ------------------------------------------------------------------ matmuls
def matmul_f16(x, w):  # fp16-valued fp32 [N, K], [O, K] -> [N, O]: tinyBLAS<16, __m512>
    N, K = x.shape
    acc = np.zeros((N, w.shape[0], 16), F32)
    for l in range(0, K, 16):
        acc += x[:, None, l:l + 16] * w[None, :, l:l + 16]  # exact products, rounded sums
    return reduce_add16(acc)


@numba.njit(cache=True, nogil=True)
def _matmul_f16_lanes(xt, w, out):  # fp32 xt [K, N] (x transposed), w [O, K] -> out [O, N]
    K, N = xt.shape
    acc = np.empty((16, N), np.float32)  # one output's 16 lanes for every row: stays in L1
    a = np.empty(8, np.float32)
    for o in range(w.shape[0]):
        acc[:] = 0
        for k in range(K):
            wk, t = w[o, k], k % 16
            for n in range(N):  # over the rows: contiguous, vectorized
                acc[t, n] += xt[k, n] * wk  # the product is exact (fp16 x fp16): rounded once, in the add
        for n in range(N):  # _mm512_reduce_add_ps
            for j in range(8):
                a[j] = acc[j + 8, n] + acc[j, n]
            for j in range(4):
                a[j] = a[j + 4] + a[j]
            out[o, n] = (a[0] + a[2]) + (a[1] + a[3])


def matmul_f16_numba(x, w):  # matmul_f16 in one pass per output, its lanes over the rows: ~50x faster
    return _by_outputs(_matmul_f16_lanes, x, w)


def _by_outputs(kernel, x, w, *rest):  # kernel(xt [K, N], w [o0:o1], ...) -> [N, O], the outputs over the cores
    from ...kernels import by_rows

    xt = np.ascontiguousarray(np.asarray(x, F32).T)  # [K, N]
    out = np.empty((w.shape[0], xt.shape[1]), F32)  # [O, N]
    by_rows(lambda o0, o1: kernel(xt, w[o0:o1], *(r[o0:o1] for r in rest), out[o0:o1]), w.shape[0], THREAD_OUTPUTS)
    return np.ascontiguousarray(out.T)


THREAD_OUTPUTS = 64  # outputs per thread at the least


def matmul_f16_vec_dot(x, w):  # fp16-valued fp32 [N, K], [O, K] -> [N, O]: ggml_vec_dot_f16 (AVX-512)
    """The one-row product (llamafile takes two rows or more): 4 accumulators of 16 lanes over
    64-value steps, reduced 0+2, 1+3, then 0+1, then _mm512_reduce_add_ps into a double; the
    values past the last full step are added to that double one by one."""
    N, K = x.shape
    full = K - K % 64
    acc = np.zeros((N, w.shape[0], 4, 16), F32)
    for l in range(0, full, 64):
        acc += x[:, None, l:l + 64].reshape(N, 1, 4, 16) * w[None, :, l:l + 64].reshape(1, -1, 4, 16)
    pair = acc[:, :, :2] + acc[:, :, 2:]
    total = reduce_add16(pair[:, :, 0] + pair[:, :, 1]).astype(F64)
    for l in range(full, K):
        total = total + (x[:, None, l] * w[None, :, l]).astype(F64)
    return total.astype(F32)


def dpbf16(acc, a, b):  # [..., 16] fp32, bf16-valued [..., 32] x2 -> [..., 16]: VDPBF16PS
    """Lane t adds a[2t+1]*b[2t+1], then a[2t]*b[2t], rounding after each (Intel's pseudo-code; a
    product of two bf16 values is exact in fp32). One rounding of both, or the even pair first,
    left 222 and 359 of 5632 values off the recorded BF16 q projection."""
    a2, b2 = a.reshape(*a.shape[:-1], 16, 2), b.reshape(*b.shape[:-1], 16, 2)
    return (acc + a2[..., 1] * b2[..., 1]) + a2[..., 0] * b2[..., 0]


def matmul_bf16(x, w):  # bf16-valued fp32 [N, K], [O, K] -> [N, O]: tinyBLAS<32, __m512, __m512bh> (AVX512_BF16)
    N, K = x.shape
    acc = np.zeros((N, w.shape[0], 16), F32)
    for l in range(0, K, 32):
        acc = dpbf16(acc, x[:, None, l:l + 32], w[None, :, l:l + 32])
    return reduce_add16(acc)


def matmul_bf16_vec_dot(x, w):  # bf16-valued fp32 [N, K], [O, K] -> [N, O]: ggml_vec_dot_bf16 (AVX512_BF16)
    """The one-row product: two accumulators over 64-value steps (the first 32 values, the next
    32), each reduced by _mm512_reduce_add_ps and added to a double; the values past the last full
    step are added to it one by one."""
    N, K = x.shape
    full = K - K % 64
    c = np.zeros((2, N, w.shape[0], 16), F32)
    for l in range(0, full, 64):
        for h in range(2):
            c[h] = dpbf16(c[h], x[:, None, l + 32 * h:l + 32 * h + 32], w[None, :, l + 32 * h:l + 32 * h + 32])
    total = reduce_add16(c[0]).astype(F64) + reduce_add16(c[1]).astype(F64)
    for l in range(full, K):
        total = total + (x[:, None, l] * w[None, :, l]).astype(F64)
    return total.astype(F32)


def matmul_q8_0(xq, dx, wq, dw):
    """Q8_0 x Q8_0 by tinyBLAS_Q0_AVX (ggml_vec_dot_q8_0_q8_0, for one row, sums the same way; so
    do both for Q4_0 weights, levels less 8, whose rows do not come in eights):
    integer-valued fp32 xq [N, K], wq [O, K], block scales
    (fp16 values) dx [N, K/32], dw [O, K/32] -> [N, O]."""
    N, K = xq.shape
    O = wq.shape[0]
    acc = np.zeros((N, O, 8), F32)
    for b in range(K // 32):
        xs = xq[:, 32 * b:32 * b + 32].reshape(N, 8, 4)
        ws = wq[:, 32 * b:32 * b + 32].astype(F32).reshape(O, 8, 4)
        s = np.einsum("nlk,olk->nol", xs, ws)  # [N, O, 8] exact integer lane sums
        d = dw[None, :, b] * dx[:, None, b]  # [N, O] fp32 (exact: fp16 x fp16)
        acc = fma(d[..., None], s, acc)
    return hsum8(acc)


@numba.njit(cache=True, nogil=True)
def _matmul_q8_0_lanes(xt, dxt, w, dw, out):  # xt [K, N], dxt [K/32, N], w [O, K] int8 or fp32, dw [O, K/32] -> out [O, N]
    K, N = xt.shape
    acc = np.empty((8, N), np.float32)  # one output's 8 lanes for every row
    s = np.empty(N, np.float32)
    d = np.empty(N, np.float32)
    for o in range(w.shape[0]):
        acc[:] = 0
        for b in range(K // 32):
            for n in range(N):
                d[n] = dw[o, b] * dxt[b, n]  # exact: fp16 x fp16
            for lane in range(8):
                k = 32 * b + 4 * lane
                w0, w1, w2, w3 = np.float32(w[o, k]), np.float32(w[o, k + 1]), np.float32(w[o, k + 2]), np.float32(w[o, k + 3])
                for n in range(N):  # exact integers (|s| <= 4 * 127 * 128), then one FMA
                    s[n] = xt[k, n] * w0 + xt[k + 1, n] * w1 + xt[k + 2, n] * w2 + xt[k + 3, n] * w3
                    acc[lane, n] = fma32(d[n], s[n], acc[lane, n])
        for n in range(N):  # hsum(__m256)
            out[o, n] = ((acc[4, n] + acc[0, n]) + (acc[6, n] + acc[2, n])) + ((acc[5, n] + acc[1, n]) + (acc[7, n] + acc[3, n]))


def matmul_q8_0_numba(xq, dx, wq, dw):  # matmul_q8_0 in one pass per output, its lanes over the rows: ~50x faster
    dxt = np.ascontiguousarray(np.asarray(dx, F32).T)  # [K/32, N]
    return _by_outputs(lambda xt, w, dw_part, out: _matmul_q8_0_lanes(xt, dxt, w, dw_part, out), xq, wq, np.asarray(dw, F32))


def q4_0_parts(raw, shape):  # stored Q4_0 bytes -> levels less 8, integer-valued fp32 [O, K]; d [O, K/32]
    b = raw.reshape(-1, 18)
    d = np.ascontiguousarray(b[:, :2]).view(np.float16).astype(F32).reshape(shape[0], -1)
    qs = b[:, 2:].astype(np.int16)
    return (np.concatenate([qs & 0xF, qs >> 4], axis=1) - 8).reshape(shape).astype(F32), d


def matmul_q4_0_repack(xq, dx, wq, dw):
    """ggml_gemm/gemv_q4_0_8x8_q8_0 (x86, arch/x86/repack.cpp): Q4_0 weights whose rows come in
    eights, repacked. Per 32-value block one exact integer sum of (level - 8) * q8, then
    acc = fma(float(sum), d_w * d_x, acc) block after block: no lanes to reduce (each lane of the
    kernel is an output). Arguments as matmul_q8_0's (q4_0_parts, act_q8_0_parts)."""
    N, K = xq.shape
    acc = np.zeros((N, wq.shape[0]), F32)
    for b in range(K // 32):
        s = xq[:, 32 * b:32 * b + 32] @ wq[:, 32 * b:32 * b + 32].T  # [N, O] exact (|sum| < 2^15)
        acc = fma(s, dw[None, :, b] * dx[:, b, None], acc)
    return acc


@numba.njit(cache=True, nogil=True)
def _q4_K_repack_rows(xt, xdt, bsum, scaled, mn, wd, wdmin, width, out):
    """matmul_q4_K_repack's `run` for one group of rows, per output with the rows in SIMD lanes:
    xt [K, N] integer-valued, xdt [K/256, N], bsum [K/32, N] (each 32-value sub-block's sum of q8),
    scaled int16 [O, K], mn [O, K/32] (each sub-block's min), wd, wdmin [O, K/256] -> out [O, N].
    The integer sums are exact in float64, rounded to fp32 as float(int32) is."""
    K, N = xt.shape
    iacc, imin = np.empty(N, np.float64), np.empty(N, np.float64)
    acc, acc_min = np.empty(N, np.float32), np.empty(N, np.float32)
    for o in range(scaled.shape[0]):
        acc[:], acc_min[:] = 0, 0
        for k0 in range(0, K, width):
            iacc[:], imin[:] = 0, 0
            for k in range(k0, k0 + width):
                w = np.float64(scaled[o, k])
                for n in range(N):
                    iacc[n] += xt[k, n] * w
            for j in range(k0 // 32, (k0 + width) // 32):
                m = np.float64(mn[o, j])
                for n in range(N):
                    imin[n] += bsum[j, n] * m
            i = k0 // 256
            for n in range(N):
                acc[n] = fma32(np.float32(iacc[n]), wd[o, i] * xdt[i, n], acc[n])
                acc_min[n] = fma32(np.float32(imin[n]), wdmin[o, i] * xdt[i, n], acc_min[n])
        for n in range(N):
            out[o, n] = acc[n] - acc_min[n]


def matmul_q4_K_repack_numba(xq, xd, scaled, mins, wd, wdmin):  # matmul_q4_K_repack, per output: ~30x
    N, K = xq.shape
    n4 = N - N % 4
    mn = np.ascontiguousarray(mins[:, ::32])  # [O, K/32]: each sub-block's min
    out = np.empty((N, scaled.shape[0]), F32)
    for rows, width in ((slice(0, n4), 64), (slice(n4, N), 256)):  # the gemm kernel's groups of four, then gemv's rows
        x = np.asarray(xq[rows], F32)  # [n, K]
        if x.shape[0] == 0:
            continue
        xdt = np.ascontiguousarray(np.asarray(xd[rows], F32).T)  # [K/256, n]
        bsum = np.ascontiguousarray(x.astype(np.float64).reshape(-1, K // 32, 32).sum(axis=2).T)  # [K/32, n]: exact

        def kernel(xt, w, mn_part, wd_part, wdmin_part, o, xdt=xdt, bsum=bsum, width=width):
            _q4_K_repack_rows(xt, xdt, bsum, w, mn_part, wd_part, wdmin_part, width, o)
        out[rows] = _by_outputs(kernel, x, scaled, mn, np.asarray(wd, F32), np.asarray(wdmin, F32))
    return out


# ------------------------------------------------------------------ the C library's float functions
@functools.cache
def _libm(name):  # the C library's float function `name`, value by value on an array
    """Loaded once per name: find_library runs ldconfig, and one_chunk asks for expf key after key."""
    import ctypes
    import ctypes.util

    lib = ctypes.CDLL(ctypes.util.find_library("m"))
    f = getattr(lib, name)
    f.restype, f.argtypes = ctypes.c_float, [ctypes.c_float]
    ufunc = np.frompyfunc(lambda v: f(v), 1, 1)
    return lambda x: ufunc(np.asarray(x, F32).ravel().astype(float)).astype(F32).reshape(np.shape(x))


def cos_sin(angles):  # fp32 -> cosf, sinf (the C library's, value by value)
    return _libm("cosf")(angles), _libm("sinf")(angles)


def libm_expf(x):  # fp32 -> fp32: the C library's expf (scalar code calls it; ggml_v_expf is the SIMD one)
    return _libm("expf")(x)


# ------------------------------------------------------------------ RoPE
def rope(x, cos, sin):  # [N, Hx, Dh], cos/sin [N, Dh] (halves equal) -> [N, Hx, Dh]: rotate_pairs, NEOX
    half = x.shape[-1] // 2
    x0, x1 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :half], sin[:, None, :half]
    return np.concatenate([fma(x0, c, -(x1 * s)), fma(x0, s, x1 * c)], axis=-1)


# ------------------------------------------------------------------ exp, softmax, SiLU
C = {k: F32(float.fromhex(v)) for k, v in dict(
    log2e="0x1.715476p+0", ln2_hi="0x1.62e4p-1", ln2_lo="0x1.7f7d1cp-20", c5="0x1.0e4020p-7",
    c4="0x1.573e2ep-5", c3="0x1.555e66p-3", c2="0x1.fffdb6p-2", c1="0x1.ffffecp-1").items()}
SHIFTER = F32(float.fromhex("0x1.8p23"))


def expf(x):  # fp32 -> fp32: ggml_v_expf (AVX-512)
    x = np.asarray(x, F32)
    with np.errstate(over="ignore", invalid="ignore"):
        z = fma(x, C["log2e"], SHIFTER)
        n = z - SHIFTER
        b = fma(-n, C["ln2_lo"], fma(-n, C["ln2_hi"], x))
        u = b * b
        j = fma(fma(fma(C["c5"], b, C["c4"]), u, fma(C["c3"], b, C["c2"])), u, fma(C["c1"], b, F32(1)))
        res = np.ldexp(j, np.nan_to_num(n, posinf=0, neginf=0).astype(np.int32)).astype(F32)  # _mm512_scalef_ps
        out = np.where(np.abs(n) > 192, np.where(n <= 0, F32(0), F32(np.inf)), res)
    return np.where(np.isneginf(x), F32(0), out).astype(F32)


def soft_max_sum(e):  # [..., K] fp32 exps, K a multiple of 16 -> [...] float64: ggml_vec_soft_max_f32's sum
    groups = reduce_add16(e.reshape(*e.shape[:-1], -1, 16)).astype(F64)  # [..., K/16]
    total = np.zeros(groups.shape[:-1], F64)
    for g in range(groups.shape[-1]):  # sum += (ggml_float)group, in order
        total = total + groups[..., g]
    return total


def softmax(s):  # [..., K] fp32 (masked: -inf), K a multiple of 16 -> [..., K]
    mx = s.max(axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, F32(0))
    e = expf(s - mx)
    total = soft_max_sum(e)
    inv = (1.0 / np.where(total > 0, total, 1.0)).astype(F32)
    return e * inv[..., None]


def silu_mul(gate, up):  # ggml_vec_swiglu_f32: x / (1 + expf(-x)) * g
    gate = np.asarray(gate, F32)
    return (gate / (F32(1) + expf(F32(0) - gate))) * np.asarray(up, F32)


# ------------------------------------------------------------------ flash attention (llama.cpp's default)
FA_TILE_Q, FA_TILE_KV = 64, 64  # GGML_FA_TILE_Q, GGML_FA_TILE_KV (ggml-cpu/common.h)


def flash_attn(q, k, v, visible, scale):
    """ggml_compute_forward_flash_attn_ext_f16 (ops.cpp), an F16 KV cache: q [H, T, Dh] fp32,
    k, v [H, Tk, Dh] fp16 values (each query head's kv head), visible [T, Tk] -> [H, T, Dh].
    Fewer than 64 query tokens take one_chunk, 64 or more the tiled kernel; each row is computed on
    its own in both, so how threads split the rows does not matter. (One query token against 512
    or more cache cells takes a third path, split over the cache, which is not emulated.)"""
    return (flash_attn_tiled if q.shape[1] >= FA_TILE_Q else flash_attn_one_chunk)(q, k, v, visible, scale)


def normalized(acc, S):  # [H, T, Dh], [H, T] -> [H, T, Dh]: acc * S_inv, S_inv = S == 0 ? 0 : 1/S
    return acc * np.where(S != 0, F32(1) / np.where(S != 0, S, F32(1)), F32(0))[..., None]


def flash_attn_one_chunk(q, k, v, visible, scale):
    """Per row, key after key in cache order (masked keys skipped): s = ggml_vec_dot_f16(q as fp16,
    k) * scale; on a new maximum M the fp16 accumulator is scaled by expf(Mold - M) (ggml_vec_scale_f16:
    fp32 product, rounded to fp16), else vs = expf(s - M), the C library's expf; then
    acc = fp16(fma(v, vs, acc)) (ggml_vec_mad_f16) and S = fma(S, ms, vs) (GCC contracts
    S*ms + vs: the uncontracted sum left 534 of 5632 values off on the committed run). At the end
    acc in fp32 times 1/S."""
    from ...quant import to_fp16

    H, T, Dh = q.shape
    s_all = np.stack([matmul_f16_vec_dot(to_fp16(q[h]), k[h]) for h in range(H)]) * scale  # [H, T, Tk]
    M = np.full((H, T), -np.inf, F32)  # [H, T] the running maximum
    S = np.zeros((H, T), F32)  # [H, T] the running sum
    acc = np.zeros((H, T, Dh), F32)  # [H, T, Dh] fp16 values: VKQ16
    for ic in range(k.shape[1]):
        live = np.broadcast_to(visible[:, ic], (H, T))  # [H, T]
        s = s_all[:, :, ic]  # [H, T]
        new = live & (s > M)  # [H, T] a new maximum: ms = expf(Mold - s), vs = 1
        with np.errstate(invalid="ignore"):
            ms = np.where(new, libm_expf(M - s), F32(1))  # expf(-inf) = 0 at the first key
            vs = np.where(live & ~new, libm_expf(np.where(live & ~new, s - M, F32(0))), F32(1))
        acc = np.where(new[..., None], to_fp16(acc * ms[..., None]), acc)
        acc = np.where(live[..., None], to_fp16(fma(v[:, None, ic], vs[..., None], acc)), acc)
        S = np.where(live, fma(S, ms, vs), S)
        M = np.where(new, s, M)
    return normalized(acc, S)


def flash_attn_tiled(q, k, v, visible, scale):
    """ggml_compute_forward_flash_attn_ext_tiled: per row, the cache in tiles of 64 keys (tiles
    with no visible key skipped). q stays fp32 and k is widened to fp32; scores by simd_gemm, a
    chain of fp32 FMAs over Dh in order; * scale, masked keys -inf; M grows to the tile's maximum
    (acc and S scaled by expf(Mold - M)); the tile's exps by ggml_vec_soft_max_f32 (ggml_v_expf,
    16-lane sums added to a double), S = float(S + that double); acc += p @ v by simd_gemm, a
    chain of FMAs over the tile's keys in order. At the end acc times 1/S."""
    H, T, Dh = q.shape
    Tk = k.shape[1]
    M = np.full((H, T), -np.inf, F32)  # [H, T]
    S = np.zeros((H, T), F32)  # [H, T]
    acc = np.zeros((H, T, Dh), F32)  # [H, T, Dh] VKQ32
    for ic in range(0, Tk, FA_TILE_KV):
        n = min(FA_TILE_KV, Tk - ic)
        vis = np.zeros((T, FA_TILE_KV), bool)  # [T, 64] the tile padded with masked keys
        vis[:, :n] = visible[:, ic:ic + n]
        rows = np.flatnonzero(vis.any(axis=1))  # a row with no visible key here skips the tile
        if not rows.size:
            continue
        kq = np.zeros((H, rows.size, FA_TILE_KV), F32)  # [H, R, 64]
        for d in range(Dh):
            kq[..., :n] = fma(q[:, rows, d][..., None], k[:, None, ic:ic + n, d], kq[..., :n])
        kq = np.where(vis[rows], kq * scale, F32(-np.inf)).astype(F32)
        Mold = M[:, rows]
        Mnew = np.maximum(Mold, kq.max(axis=-1))  # [H, R]
        grow = Mnew > Mold
        with np.errstate(invalid="ignore"):
            ms = np.where(grow, libm_expf(np.where(grow, Mold - Mnew, F32(0))), F32(1))  # [H, R]
        a, s = acc[:, rows] * ms[..., None], S[:, rows] * ms
        p = expf(kq - Mnew[..., None])  # [H, R, 64]
        s = (s.astype(F64) + soft_max_sum(p)).astype(F32)
        for j in range(n):
            a = fma(p[..., j][..., None], v[:, None, ic + j], a)
        acc[:, rows], S[:, rows], M[:, rows] = a, s, Mnew
    return normalized(acc, S)


# ------------------------------------------------------------------ K-quant dot products (vec_dot, AVX2 code)
def q6_K_parts(raw, shape):
    """Stored Q6_K bytes [O, bytes] -> unsigned levels L [O, K] (0..63, value = L - 32), sub-block
    scales [O, K/16] (int8), super-block d [O, K/256] (fp16 values)."""
    O, K = shape
    b = raw.reshape(O, K // 256, 210)
    ql, qh, sc = b[..., :128].astype(np.int64), b[..., 128:192].astype(np.int64), b[..., 192:208].view(np.int8)
    d = np.ascontiguousarray(b[..., 208:210]).view(np.float16)[..., 0].astype(F32)
    L = np.empty((O, K // 256, 2, 4, 32), np.int64)  # [O, S, 128-chunk, quarter, 32]
    for j in range(2):
        lo, hi, h = ql[..., 64 * j:64 * j + 32], ql[..., 64 * j + 32:64 * j + 64], qh[..., 32 * j:32 * j + 32]
        L[:, :, j, 0] = (lo & 0xF) | ((h & 3) << 4)
        L[:, :, j, 1] = (hi & 0xF) | (((h >> 2) & 3) << 4)
        L[:, :, j, 2] = (lo >> 4) | (((h >> 4) & 3) << 4)
        L[:, :, j, 3] = (hi >> 4) | (((h >> 6) & 3) << 4)
    return L.reshape(O, K).astype(np.int16), sc.reshape(O, K // 16).astype(np.int16), d


def matmul_q6_K(xq, xd, L, sc, wd):
    """ggml_vec_dot_q6_K_q8_K (AVX2), one dot per output: Q8_K activations (integer-valued xq
    [N, K], d [N, K/256]) with Q6_K weights (q6_K_parts). Per super-block, 8 int32 lanes: lane m
    takes bytes 4m..4m+3 of each 32-byte vector, scaled by their sub-block's scale, minus
    32 * scale * bsum of sub-blocks 2m, 2m+1; then acc = fma(d_x * d_w, float(lane), acc)."""
    N, K = xq.shape
    O = L.shape[0]
    acc = np.zeros((N, O, 8), F32)
    for i in range(K // 256):
        blk = slice(256 * i, 256 * i + 256)
        scale = np.repeat(sc[:, 16 * i:16 * i + 16], 16, axis=1)  # [O, 256] per element
        w = (scale * L[:, blk]).astype(F64).reshape(O, 2, 4, 8, 4)  # [O, chunk, vector, lane, byte]
        x = xq[:, blk].astype(F64).reshape(N, 2, 4, 8, 4)
        s1 = np.einsum("njvme,ojvme->nom", x, w)
        bsums = xq[:, blk].astype(F64).reshape(N, 16, 16).sum(axis=2)  # [N, 16] exact
        s2 = 32 * np.einsum("nmk,omk->nom", bsums.reshape(N, 8, 2), sc[:, 16 * i:16 * i + 16].astype(F64).reshape(O, 8, 2))
        sumi = (s1 - s2).astype(F32)  # _mm256_cvtepi32_ps
        d = xd[:, i][:, None] * wd[None, :, i]  # y.d * fp16(x.d), fp32
        acc = fma(d[..., None], sumi, acc)
    return hsum8(acc)


def matmul_tiled(xq, xd, w_scaled, wd, w_mins=None, wdmin=None):
    """The tiled K-quant matmul (ggml-cpu/tiled, AVX-512 VNNI), which takes K-quant x Q8_K products
    of 8 or more rows. Per 256-wide slab, exact integers: s1 = sum of scale * level * q8 (levels
    unsigned, Q6_K's bias of 32 taken off exactly), s2 = sum of min * bsum; then
    r = float(s1) * d_w, r = fnmadd(dmin_w, float(s2), r), out = fma(r, d_x, out), slab after slab.
    xq [N, K] integer-valued, xd [N, K/256]; w_scaled [O, K]: scale * level per element (integers,
    Q6_K's levels already less 32), wd [O, K/256]; for Q4_K/Q5_K w_mins [O, K]: each element's
    sub-block min (so x @ w_mins.T = sum of min * bsum), wdmin [O, K/256]."""
    N, K = xq.shape
    out = np.zeros((N, w_scaled.shape[0]), F32)
    for i in range(K // 256):
        blk = slice(256 * i, 256 * i + 256)
        x = xq[:, blk].astype(F64)
        r = (x @ w_scaled[:, blk].astype(F64).T).astype(F32) * wd[None, :, i]  # exact sums, then one rounding each
        if w_mins is not None:
            s2 = (x @ w_mins[:, blk].astype(F64).T).astype(F32)
            r = fma(-wdmin[None, :, i], s2, r)
        out = fma(r, xd[:, i][:, None], out)
    return out


def k4_scales_mins(packed):  # [..., 12] uint8 -> scales, mins [..., 8]: get_scale_min_k4
    q = packed.astype(np.int64)
    sc, mn = np.empty(q.shape[:-1] + (8,), np.int64), np.empty(q.shape[:-1] + (8,), np.int64)
    sc[..., :4], mn[..., :4] = q[..., 0:4] & 63, q[..., 4:8] & 63
    sc[..., 4:] = (q[..., 8:12] & 0xF) | ((q[..., 0:4] >> 6) << 4)
    mn[..., 4:] = (q[..., 8:12] >> 4) | ((q[..., 4:8] >> 6) << 4)
    return sc, mn


def q45_K_parts(raw, shape, bits):
    """Stored Q4_K / Q5_K bytes -> per element scale*level and min [O, K] (integers), d and dmin
    [O, K/256] (fp16 values)."""
    O, K = shape
    size = 144 if bits == 4 else 176
    b = raw.reshape(O, K // 256, size)
    d = np.ascontiguousarray(b[..., 0:2]).view(np.float16)[..., 0].astype(F32)
    dmin = np.ascontiguousarray(b[..., 2:4]).view(np.float16)[..., 0].astype(F32)
    sc, mn = k4_scales_mins(b[..., 4:16])  # [O, S, 8]
    qs = b[..., -128:].astype(np.int64).reshape(O, K // 256, 4, 32)  # 64-value chunks: low nibble, then high
    L = np.stack([qs & 0xF, qs >> 4], axis=3)  # [O, S, 4, 2, 32]
    if bits == 5:
        qh = b[..., 16:48].astype(np.int64)  # [O, S, 32]
        for chunk in range(4):
            for half in range(2):
                L[:, :, chunk, half] |= ((qh >> (2 * chunk + half)) & 1) << 4
    L = L.reshape(O, K // 256, 8, 32)
    scaled = (sc[..., None] * L).reshape(O, K).astype(np.int16)  # <= 63 * 31: int16 keeps a 0.6B model's in 0.6 GB
    mins = np.repeat(mn, 32, axis=2).reshape(O, K).astype(np.int16)
    return scaled, mins, d, dmin


@numba.njit(cache=True, nogil=True)
def _q45_K_parts_into(b, bits, scaled, mins):  # b [O, S, size] uint8 -> scaled, mins int16 [O, S * 256]
    O, S, _ = b.shape
    sc, mn = np.empty(8, np.int16), np.empty(8, np.int16)
    for o in range(O):
        for s in range(S):
            q = b[o, s, 4:16].astype(np.int32)  # get_scale_min_k4 (uint8 with int64 would mix to float)
            for j in range(4):
                sc[j], mn[j] = q[j] & 63, q[j + 4] & 63
                sc[j + 4] = (q[j + 8] & 0xF) | ((q[j] >> 6) << 4)
                mn[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4)
            for chunk in range(4):  # 64-value chunks: low nibbles, then high
                for half in range(2):
                    j = 2 * chunk + half
                    for i in range(32):
                        v = np.int32(b[o, s, b.shape[2] - 128 + 32 * chunk + i])
                        level = (v >> 4) if half else (v & 0xF)
                        if bits == 5:
                            level |= ((np.int32(b[o, s, 16 + i]) >> (2 * chunk + half)) & 1) << 4
                        scaled[o, 256 * s + 32 * j + i] = sc[j] * np.int16(level)
                        mins[o, 256 * s + 32 * j + i] = mn[j]


def q45_K_parts_numba(raw, shape, bits):  # q45_K_parts in one pass: 18 ns a value in NumPy's int64 temporaries, ~1 here
    O, K = shape
    b = np.ascontiguousarray(raw).reshape(O, K // 256, 144 if bits == 4 else 176)
    d = np.ascontiguousarray(b[..., 0:2]).view(np.float16)[..., 0].astype(F32)
    dmin = np.ascontiguousarray(b[..., 2:4]).view(np.float16)[..., 0].astype(F32)
    scaled, mins = np.empty((O, K), np.int16), np.empty((O, K), np.int16)
    _q45_K_parts_into(b, bits, scaled, mins)
    return scaled, mins, d, dmin


def matmul_q4_K(xq, xd, scaled, mins, wd, wdmin):
    """ggml_vec_dot_q4_K_q8_K (AVX2), one dot per output: what a Q4_K weight whose rows do not come
    in eights (a reranker's 2-row rank head) gets for fewer than 8 activation rows. Per super-block:
    8 int32 lanes, lane m taking bytes 4m..4m+3 of each 32-value sub-block, scaled by that
    sub-block's scale (maddubs, madd), acc = fma(d_x * d_w, float(lane), acc); and 4 lanes of mins,
    lane c = min[2c] * bsum[2c] + min[2c+1] * bsum[2c+1] over 32-value sub-blocks,
    acc_m = fma(-(d_x * dmin_w), float(lane), acc_m). Then hsum_float_8(acc) + ((m0 + m2) + (m1 + m3)).
    Arguments as matmul_q4_K_repack's (q45_K_parts, act_q8_K_parts)."""
    N, K = xq.shape
    O = scaled.shape[0]
    acc, acc_m = np.zeros((N, O, 8), F32), np.zeros((N, O, 4), F32)
    for i in range(K // 256):
        blk = slice(256 * i, 256 * i + 256)
        x = xq[:, blk].astype(F64).reshape(N, 8, 8, 4)  # [N, sub-block, lane, byte]
        sumi = np.einsum("nslb,oslb->nol", x, scaled[:, blk].astype(F64).reshape(O, 8, 8, 4)).astype(F32)
        bsum = x.sum(axis=(2, 3)).reshape(N, 4, 2)  # [N, lane, pair]: each sub-block's 32 values, exact
        mn = mins[:, blk].astype(F64).reshape(O, 4, 2, 32)[..., 0]  # [O, lane, pair]: each sub-block's min
        prod = np.einsum("ncp,ocp->noc", bsum, mn).astype(F32)  # [N, O, 4]
        d = xd[:, i][:, None] * wd[None, :, i]  # [N, O]: y.d * fp16(x.d), fp32
        dmin = -(xd[:, i][:, None] * wdmin[None, :, i])  # [N, O]
        acc = fma(d[..., None], sumi, acc)
        acc_m = fma(dmin[..., None], prod, acc_m)
    return hsum8(acc) + ((acc_m[..., 0] + acc_m[..., 2]) + (acc_m[..., 1] + acc_m[..., 3]))


def matmul_q5_K(xq, xd, scaled, mins, wd, wdmin):
    """ggml_vec_dot_q5_K_q8_K (AVX2), one dot per output: what Q5_K weights get for fewer than 8
    activation rows. The 8 int32 lanes as matmul_q4_K's (lane m: bytes 4m..4m+3 of each 32-value
    sub-block, scaled), acc = fma(d_x * d_w, float(lane), acc); the mins are one exact integer per
    super-block, sum of min * bsum over its 8 sub-blocks, added to a scalar: summs = fma(-(d_x *
    dmin_w), float(that), summs) (GCC contracts summs += dmin * ...: uncontracted, 20 of 48
    values of the full-width recording were off). Then hsum_float_8(acc) + summs."""
    N, K = xq.shape
    O = scaled.shape[0]
    acc, summs = np.zeros((N, O, 8), F32), np.zeros((N, O), F32)
    for i in range(K // 256):
        blk = slice(256 * i, 256 * i + 256)
        x = xq[:, blk].astype(F64).reshape(N, 8, 8, 4)  # [N, sub-block, lane, byte]
        sumi = np.einsum("nslb,oslb->nol", x, scaled[:, blk].astype(F64).reshape(O, 8, 8, 4)).astype(F32)
        mn = mins[:, blk].astype(F64).reshape(O, 8, 32)[..., 0]  # [O, sub-block]: each one's min
        s2 = (x.sum(axis=(2, 3)) @ mn.T).astype(F32)  # [N, O]: exact integers
        acc = fma((xd[:, i][:, None] * wd[None, :, i])[..., None], sumi, acc)
        summs = fma(-(xd[:, i][:, None] * wdmin[None, :, i]), s2, summs)
    return hsum8(acc) + summs


def matmul_q4_K_repack(xq, xd, scaled, mins, wd, wdmin):
    """ggml_gemm/gemv_q4_K_8x8_q8_K (AVX-512BW): the repacked Q4_K path x86 takes when the rows
    come in multiples of 8. Per pair of sub-blocks (64 values), exact integers iacc = sum of
    scale*level*q8 and iacc_min = sum of min*bsum; acc = fma(float(iacc), d_w*d_x, acc), the same
    for the mins with dmin_w*d_x, pair after pair; out = acc - acc_min. The rows past the last
    multiple of 4 go to the gemv kernel, which sums a whole super-block before its fma."""
    N, K = xq.shape
    n4 = N - N % 4

    def run(rows, width):
        acc = np.zeros((rows.stop - rows.start, scaled.shape[0]), F32)
        acc_min = np.zeros_like(acc)
        for p in range(K // width):
            blk, i = slice(width * p, width * p + width), width * p // 256
            x = xq[rows, blk].astype(F64)
            iacc = (x @ scaled[:, blk].astype(F64).T).astype(F32)
            imin = (x @ mins[:, blk].astype(F64).T).astype(F32)
            acc = fma(iacc, wd[None, :, i] * xd[rows, i][:, None], acc)
            acc_min = fma(imin, wdmin[None, :, i] * xd[rows, i][:, None], acc_min)
        return acc - acc_min

    return np.concatenate([run(slice(0, n4), 64), run(slice(n4, N), 256)], axis=0)
