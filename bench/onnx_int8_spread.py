"""How far apart three int8 computations of one full-size ONNX graph are: ONNX Runtime unoptimized
(the tapped run's settings), ONNX Runtime with its default optimizations (the app's run), and
q3ref's simulation; each also against the fp32 reference. One run, last_hidden_state over all tokens.

    python -m q3ref make-checkpoint --preset 0.6b --seed 0 --out weights/random-0.6b
    python bench/onnx_fullsize.py weights/random-0.6b --variants int8     # exports the graph
    python bench/onnx_int8_spread.py weights/random-0.6b weights/onnx-0.6b/stress_int8.onnx [--tokens 128]
"""

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import q3ref  # noqa: E402
from measure import append_results  # noqa: E402
from q3ref import model as M  # noqa: E402
from q3ref.diff import metrics  # noqa: E402
from q3ref.formats import open_export  # noqa: E402
from q3ref.formats.cpu import cpu_name  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights", type=Path)
    p.add_argument("graph", type=Path)
    p.add_argument("--tokens", type=int, default=128)
    a = p.parse_args()
    model, g = q3ref.load(a.weights, resident=False), open_export(a.graph)
    ids = np.random.default_rng(0).integers(0, 151643, a.tokens)[None]  # [1, T], as onnx_fullsize.py
    mask, positions = np.ones(ids.shape, bool), np.arange(a.tokens)[None]
    runs = {"ONNX Runtime, optimizations off": g.run(ids, mask.astype(np.int64), (), "ort")[g.output][0],
            "ONNX Runtime, default optimizations": g.untapped(ids, mask.astype(np.int64), "ort")[1][0]}
    for label, (weights, K) in (("q3ref simulation", g.simulate(model.weights, model.kernels, "ort")),
                                ("fp32 reference", (model.weights, model.kernels))):
        taps = {}
        M.embed(weights, model.cfg, ids, mask, None, K, taps, None, positions)
        runs[label] = taps["norm"][0]  # [T, D]
    names = list(runs)
    lines = [f"\n## ONNX int8 at full size: three int8 computations of one graph (bench/onnx_int8_spread.py, "
             f"{datetime.date.today()})\n",
             f"{cpu_name()}. {a.graph.name}, random 0.6B, {a.tokens} tokens; rel L2 of last_hidden_state (row against column).\n",
             "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in names:
        lines.append(f"| {r} | " + " | ".join("" if r == c else f"{metrics(runs[r], runs[c])['rel_l2']:.3g}" for c in names) + " |")
    append_results("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
