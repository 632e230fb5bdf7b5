"""The one fp32 operation runtimes' kernels use that NumPy lacks: a fused multiply-add, in its
NumPy form (fma) and as a Numba intrinsic (fma32). Shared by the formats whose runtimes run FMA
chains (XNNPACK, ggml, MLAS)."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def fma(a, b, c):  # fp32 a * b + c with one rounding: the product of two fp32 is exact in fp64
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


@intrinsic
def fma32(typingctx, a, b, c):  # fp32 a * b + c, one rounding (LLVM's llvm.fma: vfmadd where the CPU has FMA)
    def codegen(context, builder, signature, args):
        f = ir.FloatType()
        return builder.call(builder.module.declare_intrinsic("llvm.fma.f32", fnty=ir.FunctionType(f, [f, f, f])), args)
    return types.float32(types.float32, types.float32, types.float32), codegen
