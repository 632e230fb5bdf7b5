"""Full-size Qwen3.5 LiteRT: a random Qwen3.5-0.8B text decoder exported by litert-torch's own
Qwen3.5 path (int8, dynamic_wi8_afp32, the release's recipe), then diffed by q3ref stage by stage.

    LITERT=/path/to/litert/python   # torch==2.13.0 (CPU), litert-torch 0.10, tensorflow, transformers
    python bench/qwen35_litert_fullsize.py [--tokens 17 40 64] [--recipe dynamic_wi8_afp32]

Makes weights/random-qwen3.5-0.8b (`q3ref make-checkpoint --preset qwen3.5-0.8b`) and its export,
weights/random-qwen3.5-0.8b-<recipe>.tflite (prefill 64, cache 256, as the committed tiny graphs;
git-ignored), on first use. Prints, for each prompt length, how many stages are the simulation's
to the bit, the worst stage's distance to it and to the fp32 reference, and the diff's time; and
appends them to bench/RESULTS.md. Run it with q3ref's own python (its venv).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from measure import append_results  # noqa: E402

CKPT = ROOT / "weights/random-qwen3.5-0.8b"
EXPORT = """
import shutil, sys
from pathlib import Path
from litert_torch.generative.export_hf import export as lt
ckpt, out, recipe, dest = sys.argv[1:5]
lt.export(model=ckpt, output_dir=out, keep_temporary_files=True, cache_length=256, prefill_lengths=[64],
          externalize_embedder=False, quantization_recipe=recipe, bundle_litert_lm=False)
made = sorted(Path(out).rglob("*_quantized.tflite" if recipe else "model.tflite"))
shutil.copyfile(made[0], dest)
"""


def graph_for(recipe: str) -> Path:
    dest = ROOT / f"weights/random-qwen3.5-0.8b-{recipe or 'fp32'}.tflite"
    if dest.exists():
        return dest
    if not CKPT.exists():
        subprocess.run([sys.executable, "-m", "q3ref", "make-checkpoint", "--preset", "qwen3.5-0.8b", "--out", str(CKPT)],
                       check=True)
    litert = os.environ.get("LITERT")
    if not litert:
        sys.exit("set LITERT to a python with litert-torch (see the docstring) to export the graph")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt"  # the exporter reads a generation_config.json beside the weights
        shutil.copytree(CKPT, ckpt)
        shutil.copyfile(ROOT / "tests/fixtures/qwen35/checkpoint/generation_config.json", ckpt / "generation_config.json")
        t0 = time.perf_counter()
        subprocess.run([litert, "-c", EXPORT, str(ckpt), str(Path(tmp) / "out"), recipe, str(dest)], check=True)
        print(f"exported {dest.name} ({dest.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")
    return dest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, nargs="+", default=[17, 40, 64])
    ap.add_argument("--recipe", default="dynamic_wi8_afp32", help="litert-torch's quantization recipe ('' for fp32)")
    args = ap.parse_args()
    from q3ref.qwen35.litert import diff

    graph = graph_for(args.recipe)
    rng = np.random.default_rng(0)
    rows = []
    for n in args.tokens:
        ids = rng.integers(1, 248320, n + 1)
        t0 = time.perf_counter()
        r = diff(graph, CKPT, ids)
        seconds = time.perf_counter() - t0
        freq = [t for t in r["taps"] if t["stage"] == "inv_freq"]  # the graph's RoPE frequencies vs the config's
        stages = [t for t in r["taps"] if t["stage"] != "inv_freq"]
        rows.append({"tokens": n + 1, "stages": len(stages), "exact": sum(t["rel_err"] == 0 for t in stages),
                     "worst_vs_sim": max(t["rel_err"] for t in stages),
                     "worst_vs_fp32": max(t.get("rel_err_fp32", t["rel_err"]) for t in stages),
                     "inv_freq_vs_config": freq[0]["rel_err"] if freq else None,
                     "first_divergence": r["first_divergence"], "diff_s": round(seconds, 1),
                     "compared_with": r["compared_with"]})
        print(json.dumps(rows[-1]))
    cpu = platform.processor() or "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"\n## Qwen3.5 LiteRT export, full size: bench/qwen35_litert_fullsize.py ({datetime.date.today()})", "",
             f"Graph: {graph.name} (litert-torch, recipe {args.recipe or 'fp32'}, prefill 64, cache 256), "
             f"random Qwen3.5-0.8B text decoder; CPU: {cpu}.", "",
             "| tokens | stages the simulation's to the bit | worst vs simulation | worst vs fp32 reference | "
             "RoPE frequencies vs config | diff time |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['tokens']} | {r['exact']}/{r['stages']} | {r['worst_vs_sim']:.2g} | {r['worst_vs_fp32']:.2g} | "
              f"{r['inv_freq_vs_config']:.2g} | {r['diff_s']} s |" for r in rows]
    append_results("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
