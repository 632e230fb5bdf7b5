"""XNNPACK's float kernels for the ops of litert-torch's RMSNorm (odml.rms_norm's decomposition:
MUL, MEAN, ADD, RSQRT, MUL, MUL), bit for bit, as ai-edge-litert's default delegate runs them on
an AVX-512 CPU. Each was found by running one-op graphs through the delegate (probe.py) and
reading XNNPACK's microkernels:

- MEAN over the last axis: f32-rsum with 16 lanes and 2 accumulators, 32 values a step; the
  full 16-value blocks left over go to the first accumulator, the two are added, then the masked
  tail (C % 16 values), then the lanes as a tree of halves (512 -> 256 -> 128 -> 64 -> 32 bits),
  then times 1/C in fp32. Matched on every row for C = 8 .. 3072. SUM is the same sum (scale 1).
- RSQRT: vrsqrt14ps (14-bit table estimate, the CPU's own instruction) and one Newton-Raphson
  step written without FMA, y = y0 - (0.5 y0) (x (y0 y0) - 1), each op rounded. Matched on 65536
  values spread over 2^-29 .. 2^29; 1/sqrtf agrees on 67% of them, the exact value on 80%.

The RSQRT estimate is the CPU's: q3ref executes the same instruction through Numba (an LLVM
intrinsic), so this emulation exists only where the CPU has AVX-512F, which is also where
XNNPACK picks that kernel. Elsewhere XNNPACK runs rsqrtps (12-bit, and vendor-specific):
`available()` is False there and the simulation says it is approximate.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

F32 = np.float32
LANES = 16


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


def rms_norm(x, w, eps):  # [N, C] -> [N, C]: odml.rms_norm's decomposition on XNNPACK
    x = np.asarray(x, F32)
    r = rsqrt(mean(x * x) + F32(eps))  # [N]
    return (x * r[:, None]) * np.asarray(w, F32)


def l2norm(x, eps):  # [N, C] -> [N, C]: x * rsqrt(sum(x^2) + eps) (litert-torch's GatedDeltaNet q and k)
    x = np.asarray(x, F32)
    return x * rsqrt(rsum(x * x) + F32(eps))[:, None]
