"""Would q3ref gain by running BLAS single-threaded and splitting the work over 2 threads itself?

    python bench/split_gemm.py [--weights weights/random-0.6b] [--seq 512] [--reps 4]

The idea (left open in an earlier note): OpenBLAS's worker spins on the second core after each
2-thread GEMM, so the serial Numba kernels between GEMMs leave that core to a spinner. With BLAS
limited to one thread for the whole forward, q3ref could split every GEMM (by output columns or
by rows) and every row kernel over a 2-thread pool, and run attention's query tiles threaded.
Part 1 times each GEMM shape of the 0.6B forward and two row kernels both ways (best of 20);
part 2 times whole forwards, interleaved in one process (the host drifts over minutes).
"""

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from q3ref import bench, kernels as Kn, model as M  # noqa: E402
from q3ref.api import load  # noqa: E402

POOL = ThreadPoolExecutor(2)
JIT = dict(Kn.JIT, nogil=True)  # the row kernels, releasing the GIL so that two can run at once
RMS, ROPE, SILU = (numba.njit(**JIT)(f.py_func) for f in (Kn._rms_norm_numba, Kn._rope_numba, Kn._silu_mul_numba))


def halves(fn, n):  # fn(a, b) on [0, n/2) and [n/2, n), on the pool
    for f in [POOL.submit(fn, a, b) for a, b in ((0, n // 2), (n // 2, n))]:
        f.result()


def linear(x, w, split):  # [N, in], [out, in] -> [N, out], each half a single-threaded GEMM
    out = np.empty((x.shape[0], w.shape[0]), x.dtype)
    if split == "rows":
        halves(lambda a, b: np.matmul(x[a:b], w.T, out=out[a:b]), x.shape[0])
    else:
        halves(lambda a, b: np.matmul(x, w[a:b].T, out=out[:, a:b]), w.shape[0])
    return out


def rms_norm(x, w, eps):
    x, out = np.ascontiguousarray(x), np.empty_like(x)
    halves(lambda a, b: RMS(x[a:b], w.astype(x.dtype, copy=False), eps, out[a:b]), x.shape[0])
    return out


def rope(x, cos, sin):
    x, out = np.ascontiguousarray(x), np.empty_like(x)
    cos, sin = np.ascontiguousarray(cos, x.dtype), np.ascontiguousarray(sin, x.dtype)
    halves(lambda a, b: ROPE(x[a:b], cos[a:b], sin[a:b], out[a:b]), x.shape[0])
    return out


def silu_mul(gate, up):
    out = np.empty_like(gate)
    halves(lambda a, b: SILU(gate[a:b], up[a:b], out[a:b]), gate.shape[0])
    return out


def attention(q, k, v, mask):  # every query tile threaded, as attention_numba does from 1024 tokens
    saved, Kn.THREADS_FROM_T = Kn.THREADS_FROM_T, 1
    try:
        return Kn.attention_numba(q, k, v, mask)
    finally:
        Kn.THREADS_FROM_T = saved


def best_ms(fn, reps=20):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default=str(ROOT / "weights/random-0.6b"))
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--reps", type=int, default=4)
    a = p.parse_args()
    one_thread = Kn._blas().limit
    model = load(a.weights)
    cfg, N = model.cfg, a.seq
    rng = np.random.default_rng(0)
    D, F, Q = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads * cfg.head_dim

    print(f"part 1: best of 20, ms ({N} rows)")
    for k, n in ((D, F), (F, D), (D, Q), (Q, D)):
        x, w = rng.standard_normal((N, k), dtype=np.float32), rng.standard_normal((n, k), dtype=np.float32)
        two = best_ms(lambda: x @ w.T)
        with one_thread(limits=1, user_api="blas"):
            row = [best_ms(lambda: x @ w.T)] + [best_ms(lambda s=s: linear(x, w, s)) for s in ("rows", "cols")]
        print(f"  GEMM [{N}, {k}] x [{k}, {n}]: OpenBLAS 2 threads {two:.2f}; 1 thread {row[0]:.2f}; "
              f"split by rows {row[1]:.2f}; by columns {row[2]:.2f}")
    g = rng.standard_normal((N, F), dtype=np.float32)
    print(f"  silu_mul [{N}, {F}]: serial {best_ms(lambda: Kn.silu_mul_numba(g, g)):.2f}; "
          f"halves {best_ms(lambda: silu_mul(g, g)):.2f}")
    x, w = rng.standard_normal((N, D), dtype=np.float32), np.ones(D, np.float32)
    print(f"  rms_norm [{N}, {D}]: serial {best_ms(lambda: Kn.rms_norm_numba(x, w, 1e-6)):.2f}; "
          f"halves {best_ms(lambda: rms_norm(x, w, 1e-6)):.2f}")

    ids = rng.integers(0, cfg.vocab_size, (1, N))  # [1, T]
    mask = np.ones((1, N), bool)  # [1, T]
    split = dict(rms_norm=rms_norm, rope=rope, attention=attention, silu_mul=silu_mul,
                 linear=lambda x, w: linear(x, w, "cols"))
    ref = M.embed(model.weights, cfg, ids, mask)
    with one_thread(limits=1, user_api="blas"):
        same = np.abs(M.embed(model.weights, cfg, ids, mask, kernels=split) - ref).max()
    times = {"q3ref as it is": [], "BLAS 1 thread, q3ref splits": []}
    for _ in range(a.reps):
        t0 = time.perf_counter()
        M.embed(model.weights, cfg, ids, mask)
        times["q3ref as it is"].append(time.perf_counter() - t0)
        with one_thread(limits=1, user_api="blas"):
            t0 = time.perf_counter()
            M.embed(model.weights, cfg, ids, mask, kernels=split)
            times["BLAS 1 thread, q3ref splits"].append(time.perf_counter() - t0)
    gemm, flops = bench.gemm_rate(N, cfg), bench.forward_flops(cfg, [N])
    print(f"part 2: forwards, interleaved (max |difference| of the embeddings {same:.1e}); GEMM {gemm:.0f} GFLOP/s")
    for label, t in times.items():
        print(f"  {label}: {', '.join(f'{s:.2f}' for s in t)} s; best {flops / min(t) / 1e9 / gemm:.3f} of the GEMM rate")


if __name__ == "__main__":
    main()
