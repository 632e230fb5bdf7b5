"""Full-size ONNX: the complete diff's time and peak RSS next to ONNX Runtime's own run, one run.

    python -m q3ref make-checkpoint --preset 0.6b --seed 0 --out weights/random-0.6b
    PYTHON=/path/to/ref/python     # torch==2.13.0, transformers, onnx, onnxruntime, onnxconverter-common
    $PYTHON bench/onnx_fullsize.py weights/random-0.6b [--tokens 128] [--variants fp32,int8,q4]

Exports the random 0.6B checkpoint with scripts/export_onnx.py into weights/onnx-0.6b (git-ignored;
the fp32 graph keeps its weights in an .onnx_data file beside it). Per graph: ONNX Runtime's own
run (graph optimizations on, 2 threads, best of 3), then `q3ref diff` in a child process (taps as
extra outputs with optimizations off; q3ref's clean and teacher-forced runs, the simulation for
int8/q4) with its wall time and peak RSS, and one q3ref forward alone for the issue's budget
(diff <= 1.5 x (graph run + one q3ref forward)). Appends the table to bench/RESULTS.md.
"""

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from measure import append_results, q3ref_child  # noqa: E402
from q3ref.formats.gguf.run import cpu_name  # noqa: E402

FILES = {"fp32": "stress.onnx", "int8": "stress_int8.onnx", "q4": "stress_q4.onnx"}


def ort_seconds(path, ids, repeats=3):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids[None], "attention_mask": np.ones_like(ids)[None], "position_ids": np.arange(len(ids))[None]}
    feeds = {i.name: feeds[i.name].astype(np.int64) for i in sess.get_inputs()}
    sess.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights", type=Path)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--variants", default="fp32,int8,q4")
    p.add_argument("--out", type=Path, default=ROOT / "weights/onnx-0.6b")
    a = p.parse_args()
    variants = a.variants.split(",")
    a.out.mkdir(parents=True, exist_ok=True)
    if not all((a.out / FILES[v]).exists() for v in variants):
        subprocess.run([sys.executable, str(ROOT / "scripts/export_onnx.py"), str(a.weights), str(a.out),
                        "--name", "stress", "--variants", ",".join(variants)], check=True)
    ids = np.random.default_rng(0).integers(0, 151643, a.tokens)
    id_arg = ",".join(map(str, ids))
    fwd_s, _, _ = q3ref_child(["embed", "--ids", id_arg, "--weights", str(a.weights)])  # load + one forward
    rows = []
    for v in variants:
        graph = a.out / FILES[v]
        ort_s = ort_seconds(graph, ids)
        report = graph.with_suffix(".report.json")
        s, rss, _ = q3ref_child(["diff", str(graph), "--weights", str(a.weights), "--ids", id_arg, "--json", str(report)])
        rep = json.loads(report.read_text())
        rows.append((v, ort_s, s, rss, rep))
        print(v, ort_s, s, rss, rep["output"], rep["seconds"], flush=True)
    cpu = cpu_name()
    lines = [f"\n## ONNX full size: random 0.6B, {a.tokens} tokens ({datetime.date.today()})\n",
             f"{cpu}. ONNX Runtime's own run: optimizations on, 2 threads, best of 3. q3ref embed (load + one "
             f"forward, its own process): {fwd_s:.1f} s. diff: its own process, wall time and peak RSS.\n",
             "| graph | ONNX Runtime run | diff | peak RSS | diff / (run + q3ref load and forward) | expected | output rel L2 (to expected) |",
             "|---|---|---|---|---|---|---|"]
    for v, ort_s, s, rss, rep in rows:
        to_exp = rep["output"].get("sim_rel_l2", rep["output"]["rel_l2"])
        lines.append(f"| {v} | {ort_s:.2f} s | {s:.1f} s | {rss:.2f} GB | {s / (ort_s + fwd_s):.2f} | {rep['expected']} | "
                     f"{to_exp:.2g} |")
    append_results("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
