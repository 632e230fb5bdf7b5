"""python -m q3ref bench: speed and memory of the forward pass, with this machine's GEMM rate
measured in the same run as the yardstick (these machines are shared and noisy, so only a
ratio within one run means anything)."""

from __future__ import annotations

import resource
import time

import numpy as np

from . import kernels
from . import model as M

# Each tap closes a stretch of work; the time since the previous tap goes to its stage.
STAGE_OF = {"embed": "embed", "input_norm": "norms", "q_norm": "norms", "k_norm": "norms",
            "post_norm": "norms", "norm": "norms", "q": "projections", "k": "projections",
            "v": "projections", "o_proj": "projections", "q_rope": "rope", "k_rope": "rope",
            "attn": "attention", "gate": "mlp", "up": "mlp", "act": "mlp", "down": "mlp",
            "attn_residual": "residual", "out": "residual", "pooled": "pool", "embedding": "pool"}


class StageTimer(dict):
    """A taps dict that keeps no tensors, only the time spent making each one, by stage."""

    def __init__(self):
        super().__init__()
        self.seconds = {}
        self.last = time.perf_counter()

    def __setitem__(self, name, value):
        now = time.perf_counter()
        stage = STAGE_OF[name.rsplit(".", 1)[-1]]
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now


def forward_flops(cfg, lengths) -> float:
    """Multiply-adds x 2 of one forward over sequences of these lengths (causal attention)."""
    D, H, Hkv, Dh, F, L = (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                           cfg.head_dim, cfg.intermediate_size, cfg.num_hidden_layers)
    per_token = 2 * (D * (H + 2 * Hkv) * Dh + H * Dh * D + 3 * D * F)  # projections + MLP
    pairs = sum(t * (t + 1) // 2 for t in lengths)  # visible (query, key) pairs
    return L * (per_token * sum(lengths) + pairs * H * 4 * Dh)  # q.k and p.v


def gemm_rate(rows, cfg, seconds=1.0) -> float:
    """GFLOP/s of NumPy's BLAS on this model's own MLP shape [rows, D] @ [D, F], right now."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, cfg.hidden_size), dtype=np.float32)
    w = rng.standard_normal((cfg.intermediate_size, cfg.hidden_size), dtype=np.float32)
    x @ w.T
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2:
        x @ w.T
        n += 1
    return 2 * rows * cfg.hidden_size * cfg.intermediate_size * n / (time.perf_counter() - t0) / 1e9


def kernel_load_seconds() -> float:
    """First call of every Numba kernel: compile time on a fresh machine, cache load after."""
    t0 = time.perf_counter()
    x = np.ones((2, 1, 2, 4), np.float32)
    kernels.attention_numba(x, x[:, :, :1], x[:, :, :1], np.ones((2, 1), bool))
    kernels.rms_norm_numba(x[0, 0], x[0, 0, 0], 1e-6)
    cos, sin = kernels.rope_tables(np.arange(2), 4, 1e6)
    kernels.rope_numba(x[0], cos, sin)
    kernels.silu_mul_numba(x[0, 0], x[0, 0])
    return time.perf_counter() - t0


def peak_rss_gb() -> float:
    """This process's peak RSS. Linux's VmHWM belongs to the process's own memory map; ru_maxrss
    carries over the parent's peak through fork and exec (a child of a 1.8 GB benchmark reported
    1.8 GB)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024 / 1e9  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB; macOS: bytes


# The yardstick's GEMM rate is taken right before and right after the reported forward and
# averaged: the host's speed drifts over minutes (this Zen 4 EPYC: attention 12.5-13.5 ms a
# layer in some stretches, 18-21 in others), and one probe after the forward put that drift
# into the ratio unseen. Their spread is reported, and named when it is over SPREAD_NOTE.
PROBE_S = 0.5
SPREAD_NOTE = 0.10


def run(model, seq=512, batch=1, runs=2, progress_factory=None) -> dict:
    """Time `runs` forwards of random ids [batch, seq]; report the last (warm) one, against
    the GEMM rate measured just before and just after it."""
    cfg = model.cfg
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, seq))  # [B, T]
    mask = np.ones((batch, seq), bool)  # [B, T]
    result = {"weights": str(model.path), "seq": seq, "batch": batch, "kernels": model.kernels,
              "mode": "resident" if model.weights.resident else "streaming", "dtype": str(model.weights.dtype),
              "kernel_load_s": kernel_load_seconds()}
    walls = []
    for r in range(runs):
        if r == runs - 1:
            gemm_before = gemm_rate(batch * seq, cfg, PROBE_S)
        timer = StageTimer()
        tick = progress_factory(f"forward {r + 1}/{runs}", cfg.num_hidden_layers) if progress_factory else None
        t0 = time.perf_counter()
        M.embed(model.weights, cfg, ids, mask, None, model.kernels, timer, tick)
        walls.append(time.perf_counter() - t0)
    gemm_after = gemm_rate(batch * seq, cfg, PROBE_S)
    flops = forward_flops(cfg, [seq] * batch)
    gemm = (gemm_before + gemm_after) / 2
    achieved = flops / walls[-1] / 1e9
    result.update(first_run_s=walls[0], forward_s=walls[-1], tokens_per_s=batch * seq / walls[-1],
                  gflop=flops / 1e9, achieved_gflops=achieved, gemm_gflops=gemm,
                  gemm_before_gflops=gemm_before, gemm_after_gflops=gemm_after,
                  gemm_spread=abs(gemm_after - gemm_before) / gemm,
                  ratio_to_gemm=achieved / gemm, peak_rss_gb=peak_rss_gb(),
                  stages_s=dict(sorted(timer.seconds.items(), key=lambda kv: -kv[1])))
    return result
