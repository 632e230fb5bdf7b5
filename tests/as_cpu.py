"""Run the test suite with another CPU's summation orders, wherever a library lets them be forced.

    python tests/as_cpu.py avx2 [pytest arguments]        # what .ci/run does after the plain run
    python tests/as_cpu.py sapphirerapids [pytest arguments]

This project's machines are an AMD EPYC (AVX2 on some, AVX-512 on the Zen 4 ones) or an Intel
Xeon (AVX-512, AMX). OpenBLAS, NumPy and Numba pick their kernels per CPU, and each kernel sums in
its own order, so a test whose bound sits at fp32's rounding noise passes on one CPU and fails on
another (two did: a Qwen3.5 bound at 1.04e-5 against 1e-5 with OpenBLAS's AVX2 kernels, 1.005e-5
with Numba's code for Sapphire Rapids; and on the Intel Xeon, the avx2 run caught a test that
cast out-of-range floats to int8, which NumPy's AVX2 loop wrapped and Numba's code saturated).
Each of these libraries can be told to pick another CPU's kernels, and a profile below does that.
ONNX Runtime's MLAS and XNNPACK cannot; q3ref's probes measure what they do on the CPU at hand.

- avx2: OpenBLAS's Haswell kernels (what it picks on an AVX2 EPYC), NumPy's AVX2 loops, Numba
  code for Haswell: everything an AVX2 machine sums differently, on this machine.
- sapphirerapids: Numba's code as LLVM tunes it for Intel's Sapphire Rapids (its vector widths
  and unrolling), with this CPU's own features, so that nothing this CPU lacks (AMX, AVX512-FP16)
  is emitted. OpenBLAS already picks the same SkylakeX sgemm kernels on both AVX-512 CPUs.

Numba's compiled kernels go to .cache/numba-<profile>: its cache is keyed by CPU name, and the
repository's __pycache__ keeps the native ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def host_features() -> str:  # LLVM's feature string of this CPU (+avx2,-amx-tile,...)
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    return llvm.get_host_cpu_features().flatten()


def profile(name: str) -> tuple[dict, str]:  # -> (its environment, what PICKED must then say)
    if name == "avx2":
        return ({"OPENBLAS_CORETYPE": "Haswell", "NUMBA_CPU_NAME": "haswell",
                 "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},  # NumPy's AVX-512 loops
                "OpenBLAS ['Haswell'], NumPy loops up to ['X86_V3'], Numba for haswell")
    if name == "sapphirerapids":
        return {"NUMBA_CPU_NAME": "sapphirerapids", "NUMBA_CPU_FEATURES": host_features()}, "Numba for sapphirerapids"
    raise SystemExit(f"as_cpu.py: unknown profile {name!r} (avx2, sapphirerapids)")


# What the libraries picked, asked in the forced environment: a request a library ignores (an
# OpenBLAS built without that kernel) would otherwise pass as a run on another CPU's orders.
PICKED = """
import numba, numpy
from threadpoolctl import threadpool_info
from numpy._core._multiarray_umath import __cpu_dispatch__ as dispatch, __cpu_features__ as has
blas = [i["architecture"] for i in threadpool_info() if i["user_api"] == "blas"]
numpy_loops = [d for d in dispatch if has[d]][-1:]
print(f"OpenBLAS {blas}, NumPy loops up to {numpy_loops}, Numba for {numba.config.CPU_NAME or 'this CPU'}")
"""


def main(argv) -> int:
    if not argv:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    forced, expected = profile(argv[0])
    env = {**os.environ, **forced, "NUMBA_CACHE_DIR": str(ROOT / ".cache" / f"numba-{argv[0]}")}
    picked = subprocess.run([sys.executable, "-c", PICKED], env=env, capture_output=True, text=True)
    said = picked.stdout.strip() or picked.stderr.strip().splitlines()[-1]
    print(f"as_cpu.py {argv[0]}: {said}", flush=True)
    if picked.returncode or expected not in said:
        print(f"as_cpu.py: the libraries did not pick {argv[0]}'s kernels (wanted: {expected})", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *argv[1:]], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
