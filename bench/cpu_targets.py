"""Issue 12's targets on the CPU this runs on, in one command, each with its figure.

    python bench/cpu_targets.py [--inputs 16] [--weights weights/random-0.6b] [--record]

The machine kind comes with an AMD EPYC or an Intel Xeon, and the runtimes pick their kernels by
ISA, so every figure here holds for the CPU it names. The targets:
- the probes: which LiteRT kernels this CPU's interpreter runs, and whether q3ref emulates them;
- builtin chain: every tap explained at >= 0.99 (taps farther than 1e-4 from the fp32 reference;
  "explained" = 1 - d_sim/d_ref at that tap, diff.py), on --inputs random inputs per graph;
- XNNPACK int8: worst output d_sim/d_ref <= 0.1 over the same number of inputs, for the simulation
  a diff holds to the graph (quant_sim.py's held ratios; the one without a graph is a figure);
  and, as a figure, on how many inputs each chain is the graph to the bit, on both runtimes;
- speed: `q3ref bench` at 0.6B, 512 tokens, >= 0.8 of the same run's GEMM rate (needs --weights:
  `python -m q3ref make-checkpoint --preset 0.6b --out weights/random-0.6b` makes one).
--record appends the table to bench/RESULTS.md.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import q3ref  # noqa: E402
from q3ref.diff import diff  # noqa: E402
from q3ref.formats import open_export  # noqa: E402
from q3ref.formats.cpu import cpu_name  # noqa: E402
from q3ref.formats.litert.probe import builtin_variant, xnnpack_variant  # noqa: E402
from quant_sim import GRAPHS, landing_ratios  # noqa: E402

F = ROOT / "tests/fixtures"
BUILTIN_GRAPHS = ("stress_dynamic_int8", "int4_dynamic_int4_block32", "int4_dynamic_int4_block128")
XNNPACK_GRAPHS = ("stress_dynamic_int8", "tiny_dynamic_int8")
FLOAT_GRAPHS = {name: F / "stress-checkpoint" for name in ("stress_fp32", "stress_fp16", "stress_weight_only_int8")}  # f32-gemm


def isa() -> str:
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    return ", ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags)


def chain(name, runtime, n_inputs) -> tuple[float, str, int]:
    """Over n_inputs inputs (the tests' draws: seeds 0, 1, 2, ...): the smallest share of any far
    tap's distance that the simulation explains and where, and on how many inputs every tap is
    the graph's to the bit (local and global 0)."""
    model, g = q3ref.Model({**GRAPHS, **FLOAT_GRAPHS}[name]), open_export(F / f"graphs/{name}.tflite")
    worst, exact = (1.0, ""), 0
    for seed in range(n_inputs):
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, 1000, int(rng.integers(8, 64))).tolist()
        r = diff(model, g, ids, "right", runtime, quant="auto")
        exact += all(t["local_rel_l2"] == 0 and t["sim_rel_l2"] == 0 for t in r["taps"])
        for t in r["taps"]:
            if t["rel_l2"] > 1e-4 and t["explained"] < worst[0]:
                worst = (t["explained"], f"{t['name']}, seed {seed}")
    return (*worst, exact)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=16)
    p.add_argument("--weights", help="a 0.6B checkpoint for the speed target")
    p.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    a = p.parse_args()

    rows = []  # (target, figure, met)
    for name, v in (("builtin", builtin_variant()), ("xnnpack", xnnpack_variant())):
        ops = ", ".join(f"{op} {'ok' if ok else 'DIFFERS'}" for op, ok in v["ops"].items())
        rows.append((f"probe: {v['runtime']}", f"variant {v['variant']} ({ops})", v["emulated"]))
    for name in BUILTIN_GRAPHS:
        explained, where, exact = chain(name, "builtin", a.inputs)
        rows.append((f"builtin chain, {name}: every tap explained >= 0.99",
                     (f"least {explained:.4f} ({where})" if where else "1 at every far tap")
                     + f"; every tap bit-exact on {exact}/{a.inputs} inputs", explained >= 0.99))
    for name in FLOAT_GRAPHS:  # the builtin float GEMM (Eigen's blocks): no target of the issue's, a figure
        explained, where, exact = chain(name, "builtin", a.inputs)
        rows.append((f"builtin chain, {name} (figure only)",
                     (f"least {explained:.4f} ({where})" if where else "1 at every far tap")
                     + f"; every tap bit-exact on {exact}/{a.inputs} inputs", True))
    for name in XNNPACK_GRAPHS + ("int4_dynamic_int4_block32", "int4_dynamic_int4_block128", *FLOAT_GRAPHS):
        explained, where, exact = chain(name, "xnnpack", a.inputs)  # no target of the issue's: a figure
        rows.append((f"XNNPACK chain, {name} (figure only)",
                     (f"least {explained:.4f} ({where})" if where else "1 at every far tap")
                     + f"; every tap bit-exact on {exact}/{a.inputs} inputs", True))
    for name in XNNPACK_GRAPHS:
        r, h = landing_ratios(name, "xnnpack", a.inputs)
        rows.append((f"XNNPACK int8, {name}: worst d_sim/d_ref <= 0.1", f"median {np.median(h):.1e}, worst {h.max():.1e}",
                     h.max() <= 0.1))
        # Without the graph, q3ref's own RoPE tables and attention are ~1e-7 from XNNPACK's, which
        # flips an activation level on 1-2 inputs in 64 (both Numba targets, Intel Xeon): a figure.
        rows.append((f"XNNPACK int8, {name}, no graph (figure only)",
                     f"median {np.median(r):.1e}, worst {r.max():.1e}, lands on {(r < 1e-3).sum()}/{a.inputs}", True))
    if a.weights:
        from q3ref import bench

        b = bench.run(q3ref.Model(a.weights), seq=512, runs=2)
        rows.append(("bench 0.6B 512 tokens: >= 0.8 of the GEMM rate",
                     f"{b['ratio_to_gemm']:.0%} ({b['forward_s']:.2f} s, {b['achieved_gflops']:.0f} of "
                     f"{b['gemm_gflops']:.0f} GFLOP/s; GEMM moved {b['gemm_spread']:.0%})", b["ratio_to_gemm"] >= 0.8))
    text = (f"\n## Issue 12's targets on {cpu_name()} ({isa()}): bench/cpu_targets.py, {a.inputs} inputs\n\n"
            "| target | figure | met |\n|---|---|---|\n"
            + "".join(f"| {t} | {f} | {'yes' if ok else 'NO'} |\n" for t, f, ok in rows))
    print(text)
    if a.record:
        with open(ROOT / "bench/RESULTS.md", "a") as fh:
            fh.write(text)
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
