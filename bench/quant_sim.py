"""How closely the quantization simulation lands on real graphs, and what it costs.

    python bench/quant_sim.py [--inputs 16] [--weights weights/random-0.6b --seq 512 --rounds 4]

Part 1: for every committed quantized graph and both runtimes, random inputs of 8..63 tokens:
the output's distance to the simulation over its distance to the fp32 reference (issue 5's target:
<= 0.1), median and worst, and how many inputs the whole simulated chain lands on (ratio < 1e-3);
then the same for the simulation a diff holds to that graph.
Part 2 (with --weights): forwards of the fp32 reference and of each simulation on the same
input, in alternating rounds of one run (issue 5's budget: <= 1.5x the fp32 forward).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import q3ref  # noqa: E402
from q3ref import model as M  # noqa: E402
from q3ref.formats import open_export  # noqa: E402
from q3ref.quant import simulation  # noqa: E402

F = ROOT / "tests/fixtures"
GRAPHS = {"stress_dynamic_int8": F / "stress-checkpoint", "stress_weight_only_int8": F / "stress-checkpoint",
          "tiny_dynamic_int8": ROOT / "weights/q3ref-tiny", "int4_dynamic_int4_block32": F / "int4-checkpoint",
          "int4_dynamic_int4_block128": F / "int4-checkpoint"}


def landing_ratios(name, runtime, n_inputs) -> tuple[np.ndarray, np.ndarray]:
    """The graph's output distance to the simulation over its distance to the fp32 reference, for
    n_inputs random inputs of 8..63 tokens (seeded: the same inputs on every machine), for two
    simulations of one run each: (no graph, held). No graph: the one `q3ref embed --quant` runs,
    with q3ref's own RoPE tables and attention; held: the one a diff holds to this graph
    (Export.simulate: the graph's own tables and its runtime's attention over its seq_len). They
    part where only those ~1e-7 local differences flip an activation level."""
    g, model = open_export(F / f"graphs/{name}.tflite"), q3ref.Model(GRAPHS[name])
    sims = (simulation(model.weights, "numba", g.simulation, runtime), g.simulate(model.weights, "numba", runtime))
    rng, ratios = np.random.default_rng(0), []
    for _ in range(n_inputs):
        ids = rng.integers(0, min(model.cfg.vocab_size, 1000), int(rng.integers(8, 64))).tolist()
        x, mask = g.place(ids, "right", 0)  # right padding: the first token at column 0, simulate's offset
        out = g.run(x, mask, [], runtime)[g.output][0]
        a, ones = np.array([ids]), np.ones((1, len(ids)), bool)
        d_ref = np.linalg.norm(out - M.embed(model.weights, model.cfg, a, ones)[0])
        ratios.append([np.linalg.norm(out - M.embed(w, model.cfg, a, ones, kernels=K)[0]) / d_ref for w, K in sims])
    no_graph, held = np.array(ratios).T
    return no_graph, held


def landing(n_inputs):
    print("| graph | runtime | inputs | median d_sim/d_ref | worst | chain lands (< 1e-3) | held to the graph: worst, lands |\n"
          "|---|---|---|---|---|---|---|")
    for name in GRAPHS:
        for runtime in ("xnnpack", "builtin"):
            r, h = landing_ratios(name, runtime, n_inputs)
            print(f"| {name} | {runtime} | {len(r)} | {np.median(r):.1e} | {r.max():.2f} | {(r < 1e-3).sum()}/{len(r)} "
                  f"| {h.max():.2f}, {(h < 1e-3).sum()}/{len(h)} |")


QUANTS = ("none", "int8", "int8-weight-only", "int4-block32", "int4-block128", "fp16", "fp16-activations")


def cost(weights, seq, rounds):
    """Each simulation's forward against the fp32 one, in rounds that run every computation once:
    the host's speed drifts by 10-15% over minutes (Zen 4), so a ratio is taken within a round and
    the median over rounds reported."""
    model = q3ref.Model(weights)
    ids = np.random.default_rng(0).integers(0, 1000, (1, seq))
    ones = np.ones((1, seq), bool)
    sims = {q: (model.weights, "numba") if q == "none" else simulation(model.weights, "numba", q, "xnnpack")
            for q in QUANTS}
    for w, K in sims.values():
        M.embed(w, model.cfg, ids[:, :16], ones[:, :16], kernels=K)  # warm-up: kernels and weight quantization
    sec = {q: [] for q in QUANTS}
    for _ in range(rounds):
        for q, (w, K) in sims.items():
            t = time.perf_counter()
            M.embed(w, model.cfg, ids, ones, kernels=K)
            sec[q].append(time.perf_counter() - t)
    base = np.array(sec["none"])
    print(f"\n{weights}, {seq} tokens, resident weights: {rounds} rounds of one forward each, after a warm-up\n")
    print("| computation | seconds (median) | / fp32, median over rounds | range |\n|---|---|---|---|")
    for q in QUANTS:
        r = np.array(sec[q]) / base
        print(f"| {q} | {np.median(sec[q]):.2f} | {np.median(r):.2f}x | {r.min():.2f}-{r.max():.2f}x |")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--inputs", type=int, default=16, help="random inputs per graph for part 1 (0: skip it)")
    p.add_argument("--weights")
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--rounds", type=int, default=4)
    a = p.parse_args()
    if a.inputs:
        landing(a.inputs)
    if a.weights:
        cost(a.weights, a.seq, a.rounds)
