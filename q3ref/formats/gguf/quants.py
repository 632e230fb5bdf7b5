"""llama.cpp's quantizers, to the bit: what `llama-quantize` (no importance matrix) and
convert_hf_to_gguf.py write for each tensor type, in NumPy.

Source: ggml/src/ggml-quants.c, quantize_row_{q8_0,q4_0,q4_K,q5_K,q6_K}_ref and their helpers
make_qkx2_quants (K-quants with a min: a search over 21 (Q4_K) or 16 (Q5_K) trial scales, each
refined by weighted least squares) and make_qx_quants (Q6_K: 18 trial scales). That file is built
without FMA or vector code (libggml-base is baseline x86-64), so each C statement is one fp32
operation after another: here every sum runs element by element in fp32, vectorized over blocks.
nearest_int (the 1.5*2^23 trick) rounds half to even, as np.rint; roundf (Q8_0) rounds half away.
The loops that cost seconds a model (the K-quant searches, their weights and requantization,
Q8_0's roundf) also run as the C loops in Numba (the *_numba and *_into functions, which the
quantizers call); each is tested equal to its NumPy twin here.

Each quantizer takes fp32 [rows, cols] and returns the stored bytes, uint8 [rows, row bytes], in
ggml's block layout, so a file's tensor can be compared with them byte for byte.
"""

from __future__ import annotations

import numba
import numpy as np

from ...quant import bf16_round

F32 = np.float32
QK_K = 256
GROUP_MAX_EPS = F32(1e-15)


def fp16_bytes(x):  # fp32 [...] -> uint8 [..., 2]: GGML_FP32_TO_FP16, round to nearest even
    return np.ascontiguousarray(np.asarray(x, F32).astype(np.float16)).view(np.uint8).reshape(*np.shape(x), 2)


def fp16_value(x):  # fp32 -> fp32 on the fp16 grid (what the block stores, read back)
    return np.asarray(x, F32).astype(np.float16).astype(F32)


def blocks(w, size):  # [rows, cols] -> [rows * cols / size, size] fp32
    w = np.ascontiguousarray(w, F32)
    if w.shape[-1] % size:
        raise ValueError(f"row width {w.shape[-1]} is not a multiple of the block size {size}")
    return w.reshape(-1, size)


def seq_sum(a):  # [B, n] fp32 -> [B]: a C loop's `sum += a[i]` in fp32, in order (np.sum pairs instead)
    return np.add.accumulate(np.asarray(a, F32), axis=1, dtype=F32)[:, -1]


def first_max_abs(x):  # [B, n] -> amax, the signed value where |x| first reaches it; [B] each
    """The C loops keep the first element with the largest |x| (a strict > comparison)."""
    at = np.argmax(np.abs(x), axis=1)
    signed = x[np.arange(x.shape[0]), at]
    return np.abs(signed), signed


def safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, np.asarray(a, F32) / np.where(b != 0, b, F32(1)), F32(0)).astype(F32)


# ------------------------------------------------------------------ float types
def quantize_f16(w):
    return np.ascontiguousarray(np.asarray(w, F32).astype(np.float16)).view(np.uint8)


def quantize_bf16(w):
    rounded, _ = bf16_round(w)
    return np.ascontiguousarray((rounded.view(np.uint32) >> 16).astype(np.uint16)).view(np.uint8)


# ------------------------------------------------------------------ 32-wide blocks
def quantize_q8_0(w):  # block: d fp16, qs int8[32]
    rows = np.shape(w)[0]
    x = blocks(w, 32)
    d = np.abs(x).max(axis=1) / F32(127)  # [B]
    inv = safe_div(F32(1), d)
    qs = np.empty(x.shape, np.int8)
    scaled_roundf_into(x, inv, qs)  # roundf(x * id)
    out = np.concatenate([fp16_bytes(d), qs.view(np.uint8)], axis=1)  # [B, 34]
    return out.reshape(rows, -1)


@numba.njit(cache=True, nogil=True)
def scaled_roundf_into(x, inv, out):  # [B, n] fp32 x [B] -> out [B, n]: roundf(x * inv), in one pass
    """round_half_away(x * inv[:, None]) without its six temporaries: 25-36 ms a [3072, 1024]
    weight, 7 s of a 0.6B Q8_0 diff (AMD EPYC)."""
    half = np.float32(0.5)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            v = x[b, i] * inv[b]
            t = np.trunc(v)
            if abs(v - t) >= half:
                t += np.sign(v)
            out[b, i] = t


def quantize_q4_0(w):  # block: d fp16, qs uint8[16] (low nibble j, high nibble j + 16)
    rows = np.shape(w)[0]
    x = blocks(w, 32)
    _, signed = first_max_abs(x)
    d = signed / F32(-8)
    inv = safe_div(F32(1), d)
    xi = np.minimum(15, np.trunc(x * inv[:, None] + F32(8.5)).astype(np.int8)).astype(np.uint8)  # (int8_t) truncates
    qs = xi[:, :16] | (xi[:, 16:] << 4)
    return np.concatenate([fp16_bytes(d), qs], axis=1).reshape(rows, -1)


# ------------------------------------------------------------------ K-quants
def make_qkx2_quants(x, weights, nmax, rmin, rdelta, nstep):
    """x, weights [B, n] -> L uint8 [B, n], scale [B], the_min [B] (= -min >= 0). The search of
    ggml-quants.c, one sub-block per row, each sum in the C loop's order."""
    B, n = x.shape
    mn, mx = x.min(axis=1), x.max(axis=1)
    sum_w, sum_x = seq_sum(weights), seq_sum(weights * x)
    mn = np.where(mn > 0, F32(0), mn)
    flat = mx == mn
    span = np.where(flat, F32(1), mx - mn)
    iscale = F32(nmax) / span
    scale = F32(1) / iscale

    def levels(iscale):  # nearest_int(iscale * (x - min)) clamped to [0, nmax]
        return np.clip(np.rint(iscale[:, None] * (x - mn[:, None])), 0, nmax).astype(F32)

    def error(scale, mn_, L):
        diff = scale[:, None] * L + mn_[:, None] - x
        return seq_sum(weights * (diff * diff))

    L = levels(iscale)
    best = error(scale, mn, L)
    for step in range(nstep + 1):
        span = np.where(flat, F32(1), mx - mn)  # min moves with the best trial so far, and so does the span
        iscale = (F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / span
        Laux = levels(iscale)
        wl = weights * Laux
        sum_l, sum_l2, sum_xl = seq_sum(wl), seq_sum(wl * Laux), seq_sum(wl * x)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > 0
        Dsafe = np.where(ok, D, F32(1))
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / Dsafe
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / Dsafe
        positive = this_min > 0
        this_scale = np.where(positive, sum_xl / np.where(sum_l2 != 0, sum_l2, F32(1)), this_scale)
        this_min = np.where(positive, F32(0), this_min)
        cur = error(this_scale, this_min, Laux)
        better = ok & (cur < best)
        L = np.where(better[:, None], Laux, L)
        best = np.where(better, cur, best)
        scale = np.where(better, this_scale, scale)
        mn = np.where(better, this_min, mn)
    L = np.where(flat[:, None], F32(0), L)
    scale = np.where(flat, F32(0), scale)
    return L.astype(np.uint8), scale.astype(F32), (-mn).astype(F32)


@numba.njit(cache=True, nogil=True, inline="always")
def _nearest_int(v):  # ggml's nearest_int: the 1.5*2^23 trick, half to even (|v| < 2^22)
    return np.float32(np.float32(v + np.float32(12582912.0)) - np.float32(12582912.0))


TILE = 32  # sub-blocks searched side by side, one in each SIMD lane: 2.5x one after another


@numba.njit(cache=True, nogil=True, error_model="numpy")  # x / 0 -> inf, as C
def _make_qkx2_quants(x, weights, nmax, rmin, rdelta, nstep, L, scales, the_mins):
    """make_qkx2_quants as ggml-quants.c writes it (use_mad false), one row of x a sub-block:
    x, weights [B, n] fp32 -> L [B, n] uint8, scales [B], the_mins [B]. Each sub-block's sums run
    in the C loop's order; TILE sub-blocks go side by side (the inner loops over g), and each
    decision the C code branches on is taken per lane."""
    B, n = x.shape
    zero, one, top = np.float32(0), np.float32(1), np.float32(nmax)
    xt, wt = np.empty((n, TILE), np.float32), np.empty((n, TILE), np.float32)
    Lbest, Laux = np.empty((n, TILE), np.float32), np.empty((n, TILE), np.float32)
    mn, mx, sum_w, sum_x = np.empty(TILE, np.float32), np.empty(TILE, np.float32), np.empty(TILE, np.float32), np.empty(TILE, np.float32)
    scale, best, iscale = np.empty(TILE, np.float32), np.empty(TILE, np.float32), np.empty(TILE, np.float32)
    sum_l, sum_l2, sum_xl, cur = np.empty(TILE, np.float32), np.empty(TILE, np.float32), np.empty(TILE, np.float32), np.empty(TILE, np.float32)
    ts, tm, better = np.empty(TILE, np.float32), np.empty(TILE, np.float32), np.empty(TILE, np.bool_)
    flat, mn0 = np.empty(TILE, np.bool_), np.empty(TILE, np.float32)
    for b0 in range(0, B, TILE):
        g1 = min(TILE, B - b0)
        for g in range(TILE):  # a partial tile repeats its last sub-block
            src = b0 + min(g, g1 - 1)
            for i in range(n):
                xt[i, g], wt[i, g] = x[src, i], weights[src, i]
        for g in range(TILE):
            mn[g], mx[g], sum_w[g] = xt[0, g], xt[0, g], wt[0, g]
            sum_x[g] = sum_w[g] * xt[0, g]
        for i in range(1, n):
            for g in range(TILE):
                v = xt[i, g]
                mn[g] = v if v < mn[g] else mn[g]
                mx[g] = v if v > mx[g] else mx[g]
                sum_w[g] += wt[i, g]
                sum_x[g] += wt[i, g] * v
        for g in range(TILE):
            mn[g] = zero if mn[g] > zero else mn[g]
            flat[g], mn0[g] = mx[g] == mn[g], mn[g]
            iscale[g] = top / (mx[g] - mn[g])
            scale[g] = one / iscale[g]
            best[g] = zero
        for i in range(n):
            for g in range(TILE):
                l = min(max(_nearest_int(iscale[g] * (xt[i, g] - mn[g])), zero), top)
                Lbest[i, g] = l
                diff = scale[g] * l + mn[g] - xt[i, g]
                best[g] += wt[i, g] * (diff * diff)
        for step in range(nstep + 1):
            for g in range(TILE):
                iscale[g] = (np.float32(rmin) + np.float32(rdelta) * np.float32(step) + top) / (mx[g] - mn[g])
                sum_l[g], sum_l2[g], sum_xl[g], cur[g] = zero, zero, zero, zero
            for i in range(n):
                for g in range(TILE):
                    l = min(max(_nearest_int(iscale[g] * (xt[i, g] - mn[g])), zero), top)
                    Laux[i, g] = l
                    wl = wt[i, g] * l
                    sum_l[g] += wl
                    sum_l2[g] += wl * l
                    sum_xl[g] += wl * xt[i, g]
            for g in range(TILE):
                D = sum_w[g] * sum_l2[g] - sum_l[g] * sum_l[g]
                s = (sum_w[g] * sum_xl[g] - sum_x[g] * sum_l[g]) / D
                m = (sum_l2[g] * sum_x[g] - sum_l[g] * sum_xl[g]) / D
                if m > zero:
                    m = zero
                    s = sum_xl[g] / sum_l2[g]
                ts[g], tm[g] = s, m
            for i in range(n):
                for g in range(TILE):
                    diff = ts[g] * Laux[i, g] + tm[g] - xt[i, g]
                    cur[g] += wt[i, g] * (diff * diff)
            for g in range(TILE):
                D = sum_w[g] * sum_l2[g] - sum_l[g] * sum_l[g]
                better[g] = D > zero and cur[g] < best[g]
                if better[g]:
                    best[g], scale[g], mn[g] = cur[g], ts[g], tm[g]
            for i in range(n):
                for g in range(TILE):
                    if better[g]:
                        Lbest[i, g] = Laux[i, g]
        for g in range(g1):
            b = b0 + g
            for i in range(n):
                L[b, i] = 0 if flat[g] else np.uint8(Lbest[i, g])
            scales[b], the_mins[b] = (zero, -mn0[g]) if flat[g] else (scale[g], -mn[g])


def make_qkx2_quants_numba(x, weights, nmax, rmin, rdelta, nstep):
    """make_qkx2_quants' twin as the C loops run, sub-blocks split over the cores (a [3072, 1024]
    Q4_K weight's search on one core: 1.97 s in NumPy, 0.07 s here, AMD EPYC)."""
    from ...kernels import by_rows

    x, weights = np.ascontiguousarray(x, F32), np.ascontiguousarray(weights, F32)
    L, scales, mins = np.empty(x.shape, np.uint8), np.empty(x.shape[0], F32), np.empty(x.shape[0], F32)
    by_rows(lambda b0, b1: _make_qkx2_quants(x[b0:b1], weights[b0:b1], nmax, rmin, rdelta, nstep,
                                             L[b0:b1], scales[b0:b1], mins[b0:b1]), x.shape[0], THREAD_BLOCKS)
    return L, scales, mins


THREAD_BLOCKS = 256  # sub-blocks per thread at the least


def k_scales(x, nmax, rmin, rdelta, nstep):
    """The shared front of Q4_K and Q5_K: per super-block [S, 256] -> L [S, 256], the 12 packed
    scale bytes, d, dmin (fp32 on the fp16 grid) and their fp16 bytes."""
    S = x.shape[0]
    sub = x.reshape(S * 8, 32)
    weights = np.empty_like(sub)
    qkx2_weights_into(sub, weights)
    L, scales, mins = make_qkx2_quants_numba(sub, weights, nmax, rmin, rdelta, nstep)
    scales, mins, L = scales.reshape(S, 8), mins.reshape(S, 8), L.reshape(S, QK_K)
    max_scale = np.max(np.maximum(scales, 0), axis=1)  # the C loop starts from 0
    max_min = np.max(np.maximum(mins, 0), axis=1)
    inv_scale = np.where(max_scale > 0, F32(63) / np.where(max_scale > 0, max_scale, F32(1)), F32(0))
    inv_min = np.where(max_min > 0, F32(63) / np.where(max_min > 0, max_min, F32(1)), F32(0))
    ls = np.minimum(63, np.rint(inv_scale[:, None] * scales).astype(np.int64).astype(np.uint8))
    lm = np.minimum(63, np.rint(inv_min[:, None] * mins).astype(np.int64).astype(np.uint8))
    packed = np.zeros((S, 12), np.uint8)
    packed[:, 0:4], packed[:, 4:8] = ls[:, :4], lm[:, :4]
    packed[:, 8:12] = (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)
    packed[:, 0:4] |= (ls[:, 4:] >> 4) << 6
    packed[:, 4:8] |= (lm[:, 4:] >> 4) << 6
    dm_bytes = np.concatenate([fp16_bytes(max_scale / F32(63)), fp16_bytes(max_min / F32(63))], axis=1)
    d = fp16_value(max_scale / F32(63))[:, None] * ls.astype(F32)  # [S, 8]
    dm = fp16_value(max_min / F32(63))[:, None] * lm.astype(F32)
    L = L.reshape(S, 8, 32)
    requantize_into(x.reshape(S, 8, 32), d, dm, nmax, L)
    return L.reshape(S, QK_K), packed, dm_bytes


def qkx2_weights(sub):  # [B, 32] -> [B, 32]: av_x + |x|, av_x = sqrtf(the in-order sum of x^2 / 32)
    return np.sqrt(seq_sum(sub * sub) / F32(32))[:, None] + np.abs(sub)


@numba.njit(cache=True, nogil=True)
def qkx2_weights_into(sub, out):  # qkx2_weights in one pass (its temporaries cost seconds a model in a diff)
    for b in range(sub.shape[0]):
        sum_x2 = np.float32(0)
        for i in range(sub.shape[1]):
            sum_x2 += sub[b, i] * sub[b, i]
        av_x = np.sqrt(sum_x2 / np.float32(32))
        for i in range(sub.shape[1]):
            out[b, i] = av_x + abs(sub[b, i])


def requantized(xs, d, dm, nmax, L):  # [S, 8, 32], [S, 8] x 2 -> L [S, 8, 32] with the 6-bit scales
    """Each element again with its sub-block's stored scale and min, nearest_int((x + dm) / d)
    clamped to 0..nmax; a sub-block whose scale is 0 keeps the search's L."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint((xs + dm[..., None]) / d[..., None])
    return np.where(d[..., None] != 0, np.clip(q, 0, nmax), L).astype(np.uint8)


@numba.njit(cache=True, nogil=True)
def requantize_into(xs, d, dm, nmax, L):  # requantized in place, in one pass
    top = np.float32(nmax)
    for s in range(xs.shape[0]):
        for j in range(xs.shape[1]):
            if d[s, j] == 0:
                continue
            for i in range(xs.shape[2]):
                L[s, j, i] = np.uint8(min(max(np.rint((xs[s, j, i] + dm[s, j]) / d[s, j]), np.float32(0)), top))


def quantize_q4_K(w):  # block: d, dmin fp16, scales[12], qs[128]
    rows = np.shape(w)[0]
    x = blocks(w, QK_K)
    L, packed, dm_bytes = k_scales(x, 15, -1.0, 0.1, 20)
    L = L.reshape(-1, 4, 2, 32)  # [S, 64-chunk, half, 32]
    qs = (L[:, :, 0] | (L[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([dm_bytes, packed, qs], axis=1).reshape(rows, -1)


def quantize_q5_K(w):  # block: d, dmin fp16, scales[12], qh[32], qs[128]
    rows = np.shape(w)[0]
    x = blocks(w, QK_K)
    L, packed, dm_bytes = k_scales(x, 31, -0.5, 0.1, 15)
    L = L.reshape(-1, 4, 2, 32)  # [S, chunk n/64, half, 32]
    high = (L >> 4) & 1
    qh = np.zeros((L.shape[0], 32), np.uint8)
    for chunk in range(4):
        qh |= high[:, chunk, 0] << (2 * chunk)
        qh |= high[:, chunk, 1] << (2 * chunk + 1)
    low = L & 0xF
    qs = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([dm_bytes, packed, qh, qs], axis=1).reshape(rows, -1)


def make_qx_quants(x, nmax):
    """rmse_type 1 (weights x^2), as Q6_K calls it: x [B, n] -> L [B, n] in 0..2*nmax-1, scale [B]."""
    B, n = x.shape
    amax, signed = first_max_abs(x)
    zero = amax < GROUP_MAX_EPS
    safe_max = np.where(zero, F32(1), signed)

    def trial(iscale):
        l = np.clip(np.rint(iscale[:, None] * x), -nmax, nmax - 1).astype(F32)
        w = x * x
        return l, seq_sum(w * x * l), seq_sum(w * l * l)

    l, sumlx, suml2 = trial(F32(-nmax) / safe_max)
    scale = np.where(suml2 != 0, sumlx / np.where(suml2 != 0, suml2, F32(1)), F32(0))
    best = scale * sumlx
    for step in [s for s in range(-9, 10) if s != 0]:
        lt, sumlx, suml2 = trial(-(F32(nmax) + F32(0.1) * F32(step)) / safe_max)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        l = np.where(better[:, None], lt, l)
        scale = np.where(better, sumlx / np.where(suml2 != 0, suml2, F32(1)), scale)
        best = np.where(better, scale * sumlx, best)
    L = np.where(zero[:, None], F32(0), l + F32(nmax))  # an all-zero group: L = 0, scale 0
    return L.astype(np.int64), np.where(zero, F32(0), scale).astype(F32)


@numba.njit(cache=True, nogil=True)
def _make_qx_quants(x, nmax, L, scales):
    """make_qx_quants(n, nmax, x, L, rmse_type=1, NULL) as ggml-quants.c writes it, one row of x a
    group: x [B, n] fp32 -> L [B, n] in 0 .. 2 nmax - 1, scales [B]."""
    B, n = x.shape
    zero, top = np.float32(0), np.float32(nmax)
    for b in range(B):
        mx, amax = zero, zero
        for i in range(n):
            ax = abs(x[b, i])
            if ax > amax:
                amax, mx = ax, x[b, i]
        if amax < np.float32(1e-15):  # GROUP_MAX_EPS: all zero
            L[b, :] = 0
            scales[b] = zero
            continue
        iscale = -top / mx
        sumlx, suml2 = zero, zero
        for i in range(n):
            l = min(max(_nearest_int(iscale * x[b, i]), -top), top - np.float32(1))
            L[b, i] = np.int64(l + top)
            w = x[b, i] * x[b, i]
            sumlx += w * x[b, i] * l
            suml2 += w * l * l
        scale = sumlx / suml2 if suml2 != zero else zero
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = -(top + np.float32(0.1) * np.float32(step)) / mx
            sumlx, suml2 = zero, zero
            for i in range(n):
                l = min(max(_nearest_int(iscale * x[b, i]), -top), top - np.float32(1))
                w = x[b, i] * x[b, i]
                sumlx += w * x[b, i] * l
                suml2 += w * l * l
            if suml2 > zero and sumlx * sumlx > best * suml2:
                for i in range(n):
                    L[b, i] = np.int64(min(max(_nearest_int(iscale * x[b, i]), -top), top - np.float32(1)) + top)
                scale = sumlx / suml2
                best = scale * sumlx
        scales[b] = scale


def make_qx_quants_numba(x, nmax):  # make_qx_quants' twin as the C loops run, groups split over the cores
    from ...kernels import by_rows

    x = np.ascontiguousarray(x, F32)
    L, scales = np.empty(x.shape, np.int64), np.empty(x.shape[0], F32)
    by_rows(lambda b0, b1: _make_qx_quants(x[b0:b1], nmax, L[b0:b1], scales[b0:b1]), x.shape[0], THREAD_BLOCKS)
    return L, scales


def quantize_q6_K(w):  # block: ql[128], qh[64], scales int8[16], d fp16
    rows = np.shape(w)[0]
    x = blocks(w, QK_K)
    S = x.shape[0]
    L, scales = make_qx_quants_numba(x.reshape(S * 16, 16), 32)
    L, scales = L.reshape(S, QK_K), scales.reshape(S, 16)
    _, max_scale = first_max_abs(scales)
    zero = np.abs(max_scale) < GROUP_MAX_EPS
    iscale = F32(-128) / np.where(zero, F32(1), max_scale)
    d16 = fp16_value(F32(1) / iscale)
    sc = np.minimum(127, np.rint(iscale[:, None] * scales)).astype(np.int8)  # [S, 16]
    d = d16[:, None] * sc.astype(F32)  # [S, 16]
    xs = x.reshape(S, 16, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(np.rint(xs / d[..., None]), -32, 31) + 32
    L = np.where(d[..., None] != 0, q, L.reshape(S, 16, 16)).astype(np.uint8).reshape(S, 2, 4, 32)  # [S, half, quarter, 32]
    parts_ql, parts_qh = [], []
    for h in range(2):  # each 128-value half: ql 64 bytes, qh 32 bytes
        q1, q2, q3, q4 = (L[:, h, k] for k in range(4))
        parts_ql += [(q1 & 0xF) | ((q3 & 0xF) << 4), (q2 & 0xF) | ((q4 & 0xF) << 4)]
        parts_qh.append((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6))
    out = np.concatenate(parts_ql + parts_qh + [sc.view(np.uint8), fp16_bytes(np.where(zero, F32(0), 1 / iscale))], axis=1)
    out[zero] = 0
    return out.reshape(rows, -1)


QUANTIZERS = {"F16": quantize_f16, "BF16": quantize_bf16, "Q8_0": quantize_q8_0, "Q4_0": quantize_q4_0,
              "Q4_K": quantize_q4_K, "Q5_K": quantize_q5_K, "Q6_K": quantize_q6_K}
