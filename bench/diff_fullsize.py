"""Time a complete diff of a full-size graph (issue target: <= 5 s beyond the reference's time).

    python -m q3ref make-checkpoint --preset 0.6b --seed 0 --out weights/random-0.6b
    PYTHON=... scripts/export_tflite.py weights/random-0.6b weights/random-0.6b-int8-seq512.tflite \\
        --seq-len 512 --quant dynamic_int8
    python bench/diff_fullsize.py weights/random-0.6b weights/random-0.6b-int8-seq512.tflite [--tokens 512]

Prints the diff's own breakdown and appends it to bench/RESULTS.md.
"""

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import q3ref  # noqa: E402
from q3ref import model as M  # noqa: E402
from q3ref.bench import peak_rss_gb  # noqa: E402
from q3ref.diff import diff  # noqa: E402
from q3ref.formats import open_export  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights")
    p.add_argument("graph")
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--kernels", default="xnnpack", choices=["xnnpack", "builtin"])
    p.add_argument("--quant", default="auto", choices=["auto", "none"], help="as the CLI's diff (default auto)")
    a = p.parse_args()
    model = q3ref.Model(a.weights)
    t0 = time.perf_counter()
    g = open_export(a.graph)
    load_s = time.perf_counter() - t0
    ids = np.random.default_rng(0).integers(0, model.cfg.vocab_size, a.tokens).tolist()
    ids_arr = np.asarray([ids])
    M.embed(model.weights, model.cfg, ids_arr, np.ones_like(ids_arr, bool))  # upcast weights, load kernels
    t0 = time.perf_counter()
    M.embed(model.weights, model.cfg, ids_arr, np.ones_like(ids_arr, bool))
    ref_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = diff(model, g, ids, "right", a.kernels, quant=a.quant)
    total = time.perf_counter() - t0
    sec = r["seconds"]
    beyond = total - sec["reference (clean + forced)"]
    rss = peak_rss_gb()
    lines = [f"\n### diff of {Path(a.graph).name}, {a.tokens} tokens, {a.kernels}, --quant {a.quant} ({datetime.date.today()})\n",
             f"- graph load (parse flatbuffer): {load_s:.2f} s",
             f"- one q3ref forward alone: {ref_s:.2f} s; the diff runs it twice (clean + teacher-forced): "
             f"{sec['reference (clean + forced)']:.2f} s",
             f"- align {sec['align']:.2f} s, graph rewrite + run {sec['graph (rewrite + run)']:.2f} s, "
             f"compare {sec['compare']:.2f} s",
             f"- complete diff {total:.2f} s, of which {beyond:.2f} s beyond the reference's own time; "
             f"{len(r['taps']) - len(r['unaligned'])}/{len(r['taps'])} taps aligned; first divergence: "
             f"{r['first_divergence'] and r['first_divergence']['name']}; output cosine {r['output']['cos']:.6f}",
             f"- peak RSS {rss:.2f} GB"]
    if r["output"].get("sim_rel_l2") is not None:  # the simulation of the graph's recipe on this runtime
        local = [t for t in r["taps"] if t.get("local_rel_l2") is not None]
        worst = max(local, key=lambda t: t["local_rel_l2"])
        exact = sum(t["local_rel_l2"] == 0 and t["sim_rel_l2"] == 0 for t in local)
        lines.append(f"- simulation: output {r['output']['sim_rel_l2']:.2g} from the graph (fp32 reference "
                     f"{r['output']['rel_l2']:.2g}); {exact}/{len(local)} taps the graph's to the bit; worst local "
                     f"{worst['local_rel_l2']:.2g} ({worst['name']}) (the reference's time above includes the simulation's forwards)")
    print("\n".join(lines))
    with open(ROOT / "bench/RESULTS.md", "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
