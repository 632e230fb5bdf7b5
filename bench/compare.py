"""Side by side, in one run: q3ref, transformers fp32 and a LiteRT graph on the same input.

    python bench/compare.py --weights weights/random-0.6b --seq 512 [--tflite G.tflite]
        [--streaming] [--no-transformers] [--results bench/RESULTS.md]

Each system runs in its own subprocess (so each peak RSS is its own), one after another, with
the machine's NumPy GEMM rate measured in the same run. transformers needs the optional
`reference` extra (torch==2.13.0 CPU); it is skipped with a note when not installed. A row is
appended to the results file with the machine and the date.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def peak_rss_gb():
    # not q3ref.bench's: importing q3ref loads Numba, which would inflate the other workers' RSS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def worker_q3ref(a):
    import q3ref
    from q3ref import bench

    model = q3ref.load(a.weights, resident=not a.streaming)
    r = bench.run(model, a.seq, 1, runs=1 if a.streaming else 2)
    return {"forward_s": r["forward_s"], "first_s": r["first_run_s"], "peak_rss_gb": r["peak_rss_gb"],
            "note": f"{r['mode']} weights, numba kernels, {r['ratio_to_gemm']:.0%} of GEMM rate"}


def worker_transformers(a):
    import torch
    from transformers import Qwen3Model

    model = Qwen3Model.from_pretrained(a.weights, dtype=torch.float32, attn_implementation="sdpa").eval()
    ids = torch.as_tensor(np.random.default_rng(0).integers(0, model.config.vocab_size, (1, a.seq)))
    walls = []
    with torch.no_grad():
        for _ in range(2):
            t0 = time.perf_counter()
            model(input_ids=ids)
            walls.append(time.perf_counter() - t0)
    return {"forward_s": walls[-1], "first_s": walls[0], "peak_rss_gb": peak_rss_gb(),
            "note": f"torch {torch.__version__}, fp32, sdpa, {torch.get_num_threads()} threads"}


def worker_litert(a):
    from ai_edge_litert.interpreter import Interpreter

    # default resolver: XNNPACK, what a device runs; all cores (the default is one thread)
    interp = Interpreter(model_path=a.tflite, num_threads=os.cpu_count())
    interp.allocate_tensors()
    inputs = interp.get_input_details()
    for d in inputs:
        if "mask" in d["name"]:
            interp.set_tensor(d["index"], np.ones(d["shape"], d["dtype"]))
        else:
            vocab = json.loads((Path(a.weights) / "config.json").read_text())["vocab_size"]
            ids = np.random.default_rng(0).integers(0, vocab, d["shape"]).astype(d["dtype"])  # as q3ref's
            interp.set_tensor(d["index"], ids)
    walls = []
    for _ in range(2):
        t0 = time.perf_counter()
        interp.invoke()
        walls.append(time.perf_counter() - t0)
    seq = int(inputs[0]["shape"][-1])
    return {"forward_s": walls[-1], "first_s": walls[0], "peak_rss_gb": peak_rss_gb(),
            "note": f"{Path(a.tflite).name}, XNNPACK, {os.cpu_count()} threads, graph seq_len {seq}"}


WORKERS = {"q3ref": worker_q3ref, "transformers": worker_transformers, "litert": worker_litert}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--tflite")
    p.add_argument("--streaming", action="store_true")
    p.add_argument("--no-transformers", action="store_true")
    p.add_argument("--results", default=str(ROOT / "bench/RESULTS.md"))
    p.add_argument("--worker", choices=list(WORKERS))
    a = p.parse_args()
    if a.worker:
        print(json.dumps(WORKERS[a.worker](a)))
        return

    systems = ["q3ref"] + ([] if a.no_transformers else ["transformers"]) + (["litert"] if a.tflite else [])
    from q3ref.bench import gemm_rate
    from q3ref.config import Config

    rows, gemm = [], gemm_rate(512, Config.from_json(Path(a.weights) / "config.json"), seconds=2.0)
    for name in systems:
        cmd = [sys.executable, __file__, "--worker", name, "--weights", a.weights, "--seq", str(a.seq)]
        cmd += ["--streaming"] if a.streaming else []
        cmd += ["--tflite", a.tflite] if a.tflite else []
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["failed"])[-1]
            rows.append(f"| {name} | - | - | - | not run: {last[:120]} |")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(f"| {name} | {d['forward_s']:.2f} s | {d['first_s']:.2f} s | {d['peak_rss_gb']:.2f} GB | {d['note']} |")
        print(rows[-1], flush=True)
    head = (f"\n### {Path(a.weights).name}, seq {a.seq}{', streaming' if a.streaming else ''} "
            f"({datetime.date.today()}; {machine()}; NumPy GEMM {gemm:.0f} GFLOP/s in this run)\n\n"
            "| system | forward (warm) | first forward | peak RSS | notes |\n|---|---|---|---|---|\n")
    with open(a.results, "a") as f:
        f.write(head + "\n".join(rows) + "\n")
    print(f"appended to {a.results}")


if __name__ == "__main__":
    main()
