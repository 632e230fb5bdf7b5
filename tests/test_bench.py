"""bench: its arithmetic and its report (speed targets live in bench/RESULTS.md, not here)."""

import json
import subprocess
import sys

import numpy as np

import q3ref
from q3ref import bench
from conftest import STRESS


def test_flop_count_matches_the_forward_matmuls():
    """Count 2*m*n*k of every product the forward makes, from the tap shapes of a real trace."""
    model = q3ref.Model(STRESS)
    T = 9
    taps = model.trace(np.arange(1, T + 1))
    cfg, flops = model.cfg, 0
    D, H, Dh, F = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim, cfg.intermediate_size
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        for tap, k in (("q", D), ("k", D), ("v", D), ("o_proj", H * Dh), ("gate", D), ("up", D), ("down", F)):
            flops += 2 * taps[p + tap].size * k  # outputs x inputs
        flops += 2 * 2 * H * Dh * (T * (T + 1) // 2)  # q.k and p.v over visible pairs
    assert bench.forward_flops(cfg, [T]) == flops


def test_bench_json_report():
    r = subprocess.run([sys.executable, "-m", "q3ref", "bench", "--weights", str(STRESS), "--seq", "16",
                        "--runs", "1", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["seq"] == 16 and rep["forward_s"] > 0 and rep["gemm_gflops"] > 0 and rep["peak_rss_gb"] > 0
    assert set(rep["stages_s"]) <= set(bench.STAGE_OF.values()) and "attention" in rep["stages_s"]
    assert abs(rep["achieved_gflops"] / rep["gemm_gflops"] - rep["ratio_to_gemm"]) < 1e-9
    before, after = rep["gemm_before_gflops"], rep["gemm_after_gflops"]
    assert abs(rep["gemm_gflops"] - (before + after) / 2) < 1e-9 * before  # the yardstick brackets the forward
    assert abs(rep["gemm_spread"] - abs(after - before) / rep["gemm_gflops"]) < 1e-12
