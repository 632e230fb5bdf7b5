"""The four non-matmul kernels of the decoder, each as a plain NumPy twin and a Numba kernel.

The NumPy twin is the textbook formula and the definition; the Numba kernel is the fast
path and is held to its twin by tests/test_kernels.py. Matrix products are not here: they go
through BLAS (`x @ w.T`) in model.py.

    rms_norm(x [N, C], w [C], eps)                 -> [N, C]
    rope_tables(pos [N], Dh, theta, dtype)         -> cos, sin [N, Dh]
    rope(x [N, Hx, Dh], cos [N, Dh], sin [N, Dh])  -> [N, Hx, Dh]
    attention(q [B, T, H, Dh], k, v [B, T, Hkv, Dh], mask [B, T] bool) -> [B, T, H, Dh]
    silu_mul(gate [N, F], up [N, F])               -> [N, F]

The attention "kernel" is Numba for the masked online softmax and BLAS for its two products.
Softmax and SiLU share exp_fast, a float32 exp that vectorizes (twin: np.exp).
"""

from __future__ import annotations

import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload
from threadpoolctl import ThreadpoolController

# Reassociation and fused multiply-add let the compiler vectorize the loops; NaN and Inf
# semantics stay strict because masked scores are -inf. error_model="numpy": x/0 is inf or NaN,
# as in the twins, instead of a ZeroDivisionError check whose branch stops vectorization
# (silu_mul: 6.2 -> 1.9 ns per value).
# The kernels are serial: a Numba thread pool next to OpenBLAS's spinning threads made attention
# 2x slower on 2 cores (140 ms vs 65 ms per layer at T=512). Long sequences run attention's
# tiles on Python threads instead, each with single-threaded BLAS (attention_numba).
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
JIT = dict(cache=True, fastmath=FAST, error_model="numpy")


# ---------------------------------------------------------------------------- RMSNorm
def rms_norm_numpy(x, w, eps):
    """x * rsqrt(mean(x^2) + eps) * w over the last axis (transformers Qwen3RMSNorm).

    Plain `w`, not `1 + w` (that is Gemma). Computed in x's float dtype, as transformers does
    in fp32.
    """
    var = np.mean(x * x, axis=-1, keepdims=True)  # [N, 1]
    return x * (1.0 / np.sqrt(var + x.dtype.type(eps))) * w  # [N, C]


@numba.njit(**JIT)
def _rms_norm_numba(x, w, eps, out):
    n, c = x.shape
    for r in range(n):
        ss = x.dtype.type(0)  # in x's dtype, as transformers; reassociation lets it vectorize
        for j in range(c):
            ss += x[r, j] * x[r, j]
        inv = x.dtype.type(1) / math.sqrt(ss / c + x.dtype.type(eps))
        for j in range(c):
            out[r, j] = x[r, j] * inv * w[j]


def rms_norm_numba(x, w, eps):
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)  # [N, C]
    _rms_norm_numba(x, w.astype(x.dtype, copy=False), eps, out)
    return out


# ---------------------------------------------------------------------------- RoPE
def rope_inv_freq(head_dim, theta, dtype=np.float32):  # -> [Dh/2]
    dtype = np.dtype(dtype)
    return dtype.type(1.0) / dtype.type(theta) ** (np.arange(0, head_dim, 2, dtype=dtype) / dtype.type(head_dim))


def rope_tables(pos, head_dim, theta, dtype=np.float32, inv_freq=None):
    """cos, sin [N, Dh] for integer positions, computed in `dtype` as transformers does.

    transformers (Qwen3RotaryEmbedding, default rope): inv_freq = 1 / theta**(arange(0, Dh, 2)/Dh)
    in fp32, angle = position * inv_freq in fp32, then the half-table duplicated:
    emb = cat(freqs, freqs). An fp32 angle at position 30000 is already off by ~1e-3 rad from
    the exact one; that is part of what exported graphs are compared against, so fp32 mode
    keeps it and fp64 mode ("the reference for the reference") does not. `inv_freq` [Dh/2]: an
    export's own frequencies in place of rope_inv_freq's (an fp16 graph stores them in fp16).
    """
    dtype = np.dtype(dtype)
    inv_freq = rope_inv_freq(head_dim, theta, dtype) if inv_freq is None else inv_freq  # [Dh/2]
    angles = np.asarray(pos, dtype=dtype)[:, None] * inv_freq[None, :]  # [N, Dh/2]
    angles = np.concatenate([angles, angles], axis=-1)  # [N, Dh]
    return np.cos(angles), np.sin(angles)


def rope_numpy(x, cos, sin):
    """Split-half RoPE: x*cos + rotate_half(x)*sin with rotate_half(x) = cat(-x2, x1).

    This is transformers' / GPT-NeoX's convention (first half of the head dim pairs with the
    second half), not llama2.c's interleaved pairs.
    """
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)  # [N, Hx, Dh]
    return x * cos[:, None, :] + rotated * sin[:, None, :]  # [N, Hx, Dh]


@numba.njit(**JIT)
def _rope_numba(x, cos, sin, out):
    n, hx, dh = x.shape
    half = dh // 2
    for r in range(n):
        for h in range(hx):
            for j in range(half):
                a, b = x[r, h, j], x[r, h, j + half]
                out[r, h, j] = a * cos[r, j] - b * sin[r, j]
                out[r, h, j + half] = b * cos[r, j + half] + a * sin[r, j + half]


def rope_numba(x, cos, sin):
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)  # [N, Hx, Dh]
    _rope_numba(x, np.ascontiguousarray(cos, x.dtype), np.ascontiguousarray(sin, x.dtype), out)
    return out


# ---------------------------------------------------------------------------- attention
def attention_numpy(q, k, v, mask):
    """Causal GQA attention with a key-padding mask, one full score matrix per sequence.

    Query head h reads KV head h // (H // Hkv) (transformers repeat_kv). Key j is visible to
    query i when j <= i and mask[j]; softmax in the input dtype (fp32, as transformers).
    A padded query row sees no key: its output is defined as 0, never NaN (transformers uses
    finfo.min instead of -inf for the same reason; 0 * NaN would leak into real rows).
    """
    B, T, H, Dh = q.shape
    rep = H // k.shape[2]
    out = np.zeros_like(q)  # [B, T, H, Dh]
    causal = np.tril(np.ones((T, T), dtype=bool))  # [T, T]
    for b in range(B):
        visible = causal & mask[b][None, :] & mask[b][:, None]  # [T, T], pad rows see nothing
        kb = np.repeat(k[b], rep, axis=1).transpose(1, 2, 0)  # [H, Dh, T]
        vb = np.repeat(v[b], rep, axis=1).transpose(1, 0, 2)  # [H, T, Dh]
        scores = q[b].transpose(1, 0, 2) @ kb * q.dtype.type(Dh ** -0.5)  # [H, T, T]
        scores = np.where(visible, scores, -np.inf)  # [H, T, T]
        row_max = scores.max(axis=-1, keepdims=True)  # [H, T, 1]
        row_max = np.where(np.isfinite(row_max), row_max, 0)
        p = np.exp(scores - row_max)  # [H, T, T], 0 where masked
        denom = p.sum(axis=-1, keepdims=True)  # [H, T, 1]
        probs = p / np.where(denom > 0, denom, 1)  # [H, T, T]
        out[b] = (probs @ vb).transpose(1, 0, 2)  # [T, H, Dh]
    return out


# ---------------------------------------------------------------------------- exp
# The softmax's exponentials dominate attention's non-GEMM time: 0.6B at T=8192 takes ~15e9 of
# them. Numba's math.exp is a scalar libm call (~4 ns each here; LLVM has no vector exp without
# Intel's SVML), so fp32 gets its own exp that LLVM can vectorize: Cephes' expf (range
# reduction by ln 2, degree-6 polynomial, 2^n put straight into the exponent bits). Measured
# on this machine: 1.0 ns vs 4.1 ns per value, and within 0.98 ulp of the exact value over its
# range (np.exp's float32: 2.3 ulp; test_kernels.py). fp64 keeps math.exp.
@intrinsic
def _int32_bits_as_float32(typingctx, i):  # reinterpret, not convert: builds 2^n from n + 127
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


# n = round(x / ln 2) must stay a normal float32 exponent, -126 .. 127.
EXP_LO = np.float32(-87.33654)  # exp(EXP_LO) ~ 2^-126, float32's smallest normal number
EXP_HI = np.float32(88.37626)  # exp(EXP_HI) ~ 2.4e38, under float32's largest, 3.4e38


def _exp_f32(x):
    """exp(x) for float32 x in [EXP_LO, EXP_HI], and clamped to that range outside it. Below,
    it returns 2^-126 (not 0), which no softmax row can notice: its largest term is exp(0) = 1;
    above, 2.4e38 (not inf), which makes silu(x) about 0 as it should. NaN stays NaN."""
    x = EXP_LO if x < EXP_LO else x  # both written so that NaN falls through
    x = EXP_HI if x > EXP_HI else x
    n = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))  # round(x / ln 2)
    r = x - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)  # x - n ln 2, ln 2 in two parts
    y = (((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
            + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
          + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)) * (r * r) + r + np.float32(1)
    return y * _int32_bits_as_float32((np.int32(n) + np.int32(127)) << np.int32(23))  # y * 2^n


def exp_fast(x):
    """The twin, np.exp. In jitted code the overload below replaces it (_exp_f32 for float32)."""
    return np.exp(x)


@overload(exp_fast, fastmath=FAST)
def _exp_fast(x):
    if x == types.float32:
        return _exp_f32
    return lambda x: math.exp(x)


# Tile sizes of the streaming attention: a query tile's score block is
# [Q_TILE * H/Hkv, K_TILE] fp32 (512 KB at GQA 2:1, one core's L2 here), whatever T is.
# Measured on 2 cores (0.6B shapes, T=8192, one layer, best of 3): 128 x 512 4.77 s,
# 128 x 1024 4.82 s, 256 x 512 4.73 s, 128 x 256 4.71 s (within this machine's noise), and
# 64 x 512 5.10 s.
Q_TILE, K_TILE = 128, 512
# Query tiles run on this many threads at once, each with single-threaded BLAS: at T=8192 that
# was 4.9 s per layer against 6.1 s for one tile at a time on 2-thread BLAS, which leaves the
# second core idle during the softmax and splits every small product in two.
# Shorter sequences make tiles too small to pay for the threads (per attention call, measured:
# T=128 x 4 sequences 30 ms threaded vs 19 ms one tile at a time; T=512 x 2, 63 vs 69 ms).
THREADS_FROM_T = 1024
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@intrinsic
def _maxnum(typingctx, a, b):  # LLVM's maxnum: the larger, and the number if one is NaN
    def codegen(context, builder, signature, args):
        ty = args[0].type
        return builder.call(builder.module.declare_intrinsic("llvm.maxnum", [ty], ir.FunctionType(ty, [ty, ty])), args)
    return a(a, b), codegen


# A row's max, NaNs ignored. Written as `s if s > mx else mx`, the running max is one chain of
# dependent compares that LLVM cannot vectorize (a select is not reassociable without nnan).
# maxnum's result does not depend on the order (a NaN never wins, the row starts at -inf), so
# LLVM vectorizes its reduction as it is. On the Intel Xeon, a [256, 512] tile: 0.30 ns per
# score, against 0.50 for the 128 running maxima in memory it replaces.
@numba.njit(nogil=True, **JIT)
def _row_max(S, r, n):  # max of S[r, :n] (-inf if none is a number)
    mx = S.dtype.type(-np.inf)
    for j in range(n):
        mx = _maxnum(mx, S[r, j])
    return mx


@numba.njit(nogil=True, **JIT)
def _online_softmax_tile(S, stats, q0, k0, rep, kmask, scale):
    """One key tile of the online softmax, in place.

    S [R, Tk]: raw scores q.k of query rows (row r is query q0 + r // rep) against keys k0..;
    on return S holds p = exp(s*scale - m_new), 0 where masked. stats [3, R]: m, l the running
    max and sum, started here on the first key tile (k0 = 0) and updated; corr = exp(m_old -
    m_new), by which the caller rescales its accumulator.
    Row r sees the keys k0 .. qi (causal: a prefix of the tile) that kmask marks real. The
    loops over that prefix have no branch, so LLVM vectorizes them; in a tile with padded keys,
    their scores are set to -inf first and their p to 0 after.
    """
    R, Tk = S.shape
    ninf = S.dtype.type(-np.inf)
    zero = S.dtype.type(0)
    m, l, corr = stats[0], stats[1], stats[2]
    if k0 == 0:
        m[:] = ninf
        l[:] = zero
    padded = False
    for j in range(Tk):
        padded |= not kmask[k0 + j]
    for r in range(R):
        qi = q0 + r // rep
        nvis = min(Tk, qi - k0 + 1) if kmask[qi] else 0  # a padded query row sees no key: output 0
        if padded:  # the masked loops apart from the plain ones, so that those vectorize
            for j in range(nvis):
                S[r, j] = S[r, j] if kmask[k0 + j] else ninf
        # max of the raw scores: scale > 0, so it is the max of the scaled ones too. NaN never
        # wins, so the exp below passes it on
        mx = _row_max(S, r, nvis)
        if mx == ninf:  # no visible score is a number: none visible, or NaN ones only
            for j in range(nvis):
                if S[r, j] != S[r, j]:
                    mx = S[r, j]  # NaN: pass it on to this row's output, as the twin does
        mx = m[r] if m[r] > mx * scale else mx * scale  # (a NaN mx stays NaN)
        if mx == ninf:  # nothing visible yet (padded query row, or keys all padded so far)
            nvis = 0
        # corr: ~0 on the first visible tile, where m = -inf (exactly 0 in fp64), and l, acc are 0
        corr[r] = exp_fast(m[r] - mx) if nvis else 1
        total = zero
        for j in range(nvis):
            p = exp_fast(S[r, j] * scale - mx)  # exp(-inf) is not 0 in exp_fast: masked keys below
            S[r, j] = p
            total += p
        if padded:
            for j in range(nvis):
                if not kmask[k0 + j]:
                    total -= S[r, j]
                    S[r, j] = zero
        for j in range(nvis, Tk):  # past the causal diagonal
            S[r, j] = zero
        if nvis:
            l[r] = l[r] * corr[r] + total
            m[r] = mx


def attention_numba(q, k, v, mask):
    """Streaming causal GQA attention: BLAS for the two products, Numba for the softmax.

    The work is cut into query tiles: one sequence, one KV head g, Q_TILE queries. The H/Hkv
    query heads that share g are stacked as the tile's rows, so each K and V tile is read once
    per group. Tiles are independent; from THREADS_FROM_T tokens on, they run on THREADS
    threads, longest first.
    """
    B, T, H, Dh = q.shape
    Hkv = k.shape[2]
    mask = np.ascontiguousarray(mask, dtype=np.bool_)  # [B, T]
    out = np.empty_like(q)  # [B, T, H, Dh], every element written by its tile's _finish_tile
    tiles = [(b, g, q0) for q0 in range(0, T, Q_TILE)[::-1] for b in range(B) for g in range(Hkv)]
    if T < THREADS_FROM_T:
        for tile in tiles:
            _attention_tile(q, k, v, mask, out, *tile)
        return out
    # Long sequences copy K and V once, each head's rows contiguous (O(T) against the tiles'
    # O(T^2)). Read in place, T=8192 took 5-13% longer on the Intel Xeon: median 2.72 s against 2.40
    # copied so, and 2.34 s against 2.23 with the earlier [B, Hkv, T, Dh] copies.
    k, v = (np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for x in (k, v))  # [B, T, Hkv, Dh]
    with _blas().limit(limits=1, user_api="blas"):
        for _ in pool().map(lambda tile: _attention_tile(q, k, v, mask, out, *tile), tiles):
            pass  # (iterating re-raises a tile's exception here)
    return out


@functools.cache
def pool():  # kept for the process: starting threads on every call cost 2 ms at T=8
    """The worker threads of attention's query tiles here, and of by_rows (the GEMM emulations)."""
    return ThreadPoolExecutor(THREADS, thread_name_prefix="q3ref-attention")


def by_rows(run, rows, min_rows):
    """run(r0, r1) over row ranges on the pool's threads, at least min_rows rows each (fewer rows:
    one call here). For nogil kernels whose rows are independent (the FMA-chain and Eigen GEMM
    emulations); iterating the results re-raises a part's exception."""
    parts = min(THREADS, rows // min_rows)
    if parts < 2:
        run(0, rows)
        return
    cuts = np.linspace(0, rows, parts + 1).astype(int)
    for _ in pool().map(lambda p: run(cuts[p], cuts[p + 1]), range(parts)):
        pass


@functools.cache
def _blas():  # finding the BLAS libraries takes 0.3 ms; setting their threads after that, 10 us
    return ThreadpoolController()


# A query tile's work arrays, kept by each thread between tiles and calls. Fresh ones cost a
# page fault per 4 KB touched (~4 us each on the Intel Xeon here) and arrive cold in cache.
# With K and V read in place (no [B, Hkv, T, Dh] copies), one layer's attention on that Xeon
# (0.6B shapes, medians of 40, alternating): T=512 22.9-29.6 -> 18.9-25.2 ms in five runs,
# 4 x 128 tokens 14.8-15.9 -> 10.5-11.3 ms; T=2048 and 4096 unchanged.
_scratch = threading.local()


def _tile_scratch(rows, Dh, dtype):  # -> Q [rows*Dh], S [rows*K_TILE], acc, pv [rows, Dh], stats [3, rows]
    key = (rows, Dh, K_TILE, np.dtype(dtype))
    kept = getattr(_scratch, "arrays", None)
    if kept is None or kept[0] != key:
        kept = _scratch.arrays = (key, np.empty(rows * Dh, dtype), np.empty(rows * K_TILE, dtype),
                                  np.empty((rows, Dh), dtype), np.empty((rows, Dh), dtype), np.empty((3, rows), dtype))
    return kept[1:]


def _attention_tile(q, k, v, mask, out, b, g, q0):
    """Queries q0 .. q0+Q_TILE of sequence b, query heads of KV head g, into `out`.

    Key tiles past the causal diagonal are skipped. Online softmax (running max and sum, fp32):
    memory is O(T), not O(T^2). K and V go to BLAS as views of k, v: strided (rows Hkv*Dh
    apart) below THREADS_FROM_T tokens, where a copy per call cost more than it saved.
    """
    T, H, Dh = q.shape[1:]
    rep = H // k.shape[2]
    q1 = min(q0 + Q_TILE, T)
    R = (q1 - q0) * rep  # row i*rep + r is query q0+i, head g*rep+r
    Qs, Ss, acc, pv, stats = _tile_scratch(Q_TILE * rep, Dh, q.dtype)
    Q = Qs[:R * Dh].reshape(R, Dh)  # [R, Dh]: one copy of the tile's queries, heads of g side by side
    np.copyto(Q.reshape(q1 - q0, rep, Dh), q[b, q0:q1, g * rep:(g + 1) * rep])
    acc, pv, stats = acc[:R], pv[:R], stats[:, :R]  # stats: running max m, sum l, correction
    for k0 in range(0, q1, K_TILE):  # keys beyond the last query are never visible
        k1 = min(k0 + K_TILE, q1)
        S = np.matmul(Q, k[b, k0:k1, g].T, out=Ss[:R * (k1 - k0)].reshape(R, k1 - k0))  # [R, Tk]
        _online_softmax_tile(S, stats, q0, k0, rep, mask[b], q.dtype.type(Dh ** -0.5))
        if k0 == 0:  # the first key tile's product is the accumulator: nothing to rescale yet
            np.matmul(S, v[b, k0:k1, g], out=acc)  # [R, Dh]
        else:
            np.matmul(S, v[b, k0:k1, g], out=pv)  # [R, Dh]
            acc *= stats[2][:, None]
            acc += pv
    _finish_tile(acc, stats[1], out, b, q0, g * rep, rep)


@numba.njit(nogil=True, cache=True, fastmath=FAST - {"arcp"}, error_model="numpy")  # a true division
def _finish_tile(acc, denom, out, b, q0, h0, rep):
    """out[b, q0 + i, h0 + r] = acc [i*rep + r] / denom [i*rep + r], denom being the softmax's
    running sum l; a padded query row (denom = 0, acc = 0) stays 0. One pass in place of five
    NumPy calls: at T=512 every tile's Python overhead added up to a sixth of attention's time.
    The whole (C-contiguous) out, not a view of the tile: with a view's strides unknown the loop
    did not vectorize (1 ns per value)."""
    Dh = out.shape[3]
    for row in range(acc.shape[0]):
        i, r = divmod(row, rep)
        s = denom[row] if denom[row] > 0 else denom.dtype.type(1)
        for d in range(Dh):
            out[b, q0 + i, h0 + r, d] = acc[row, d] / s


# ---------------------------------------------------------------------------- SwiGLU
def silu_mul_numpy(gate, up):
    """silu(gate) * up, silu(x) = x * sigmoid(x) = x / (1 + exp(-x))."""
    return gate / (1 + np.exp(-gate)) * up  # [N, F]


@numba.njit(**JIT)
def _silu_mul_numba(gate, up, out):
    n, f = gate.shape
    one = gate.dtype.type(1)  # a bare 1 would make the division float64 and stop vectorization
    for r in range(n):
        for j in range(f):
            g = gate[r, j]
            out[r, j] = g / (one + exp_fast(-g)) * up[r, j]


def silu_mul_numba(gate, up):
    gate, up = np.ascontiguousarray(gate), np.ascontiguousarray(up)
    out = np.empty_like(gate)  # [N, F]
    _silu_mul_numba(gate, up, out)
    return out


def linear(x, w):  # [N, in], [out, in] -> [N, out]: BLAS, with W used as stored (transposed view)
    return x @ w.T


KERNELS = {
    "numpy": dict(rms_norm=rms_norm_numpy, rope=rope_numpy, attention=attention_numpy,
                  silu_mul=silu_mul_numpy, linear=linear),
    "numba": dict(rms_norm=rms_norm_numba, rope=rope_numba, attention=attention_numba,
                  silu_mul=silu_mul_numba, linear=linear),
}
