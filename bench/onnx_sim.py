"""How closely `diff --quant auto` lands on the committed ONNX graphs (formats/onnx/sim.py).

    python bench/onnx_sim.py [--inputs 16] [GRAPH.onnx ...]

For each stress graph: the output's distance to the simulation over its distance to the fp32
reference (median and worst over random inputs of 5..39 tokens), and the worst local error of any
stage, and of the stages that read quantized weights, against the limit the export allows there.
"""

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import q3ref  # noqa: E402
from q3ref.diff import diff  # noqa: E402
from q3ref.formats import open_export  # noqa: E402
from q3ref.formats.onnx import QUANTIZED_STAGES  # noqa: E402

GRAPHS = ["stress_int8", "stress_uint8", "stress_q4", "stress_bnb4", "stress_q4f16", "stress_fp16", "stress_q4_zp",
          "stress_q8"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--inputs", type=int, default=16)
    p.add_argument("graphs", nargs="*", help="other .onnx files of the stress checkpoint (default: the committed ones)")
    a = p.parse_args()
    warnings.simplefilter("ignore")
    model = q3ref.Model(ROOT / "tests/fixtures/stress-checkpoint")
    print("| graph | d_sim/d_ref median | worst | worst local, any stage | at the weight-reading stages | limit |")
    print("|---|---|---|---|---|---|")
    for path in a.graphs or [ROOT / "tests/fixtures/onnx" / f"{name}.onnx" for name in GRAPHS]:
        g, name = open_export(path), Path(path).stem
        if not g.simulation:
            print(f"| {name} | ({g.precision}: nothing to simulate) | | | | |")
            continue
        ratios, local, products, limit = [], 0.0, 0.0, 0.0
        for seed in range(a.inputs):
            rng = np.random.default_rng(seed)
            r = diff(model, g, rng.integers(0, 1000, int(rng.integers(5, 40))), quant="auto")
            ratios.append(r["output"]["sim_rel_l2"] / r["output"]["rel_l2"])
            rows = [t for t in r["taps"] if t.get("local_rel_l2") is not None]  # (unaligned taps have none)
            local = max(local, max(t["local_rel_l2"] for t in rows))
            products = max(products, max(t["local_rel_l2"] for t in rows if t["stage"] in QUANTIZED_STAGES))
            limit = max(limit, max(t["limit"] for t in rows))
        print(f"| {name} | {np.median(ratios):.2g} | {max(ratios):.2g} | {local:.2g} | {products:.2g} | {limit:g} |")


if __name__ == "__main__":
    main()
