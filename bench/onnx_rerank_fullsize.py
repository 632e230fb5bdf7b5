"""Full-size reranker ONNX: a random Qwen3-Reranker-0.6B exported as onnx-community's reranker files
are laid out (a CausalLM with past, logits out) and quantized, diffed on one pair.

    PYTHON=/path/to/ref/python   # torch==2.13.0, transformers, onnx, onnxruntime, onnxconverter-common
    $PYTHON bench/onnx_rerank_fullsize.py [--variants fp32,int8,q4] [--words 75]

Makes weights/random-reranker-0.6b (bench/rerank_fullsize.py) on first use and exports it with
scripts/export_onnx.py --causal-lm into weights/onnx-reranker-0.6b (git-ignored). The pair's ids are
the card's (q3ref's rerank_ids, the real tokenizer). Per graph, `q3ref diff GRAPH --ids ...` in its
own process, its wall time and peak RSS. Prints a table and appends it to bench/RESULTS.md.
"""

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import q3ref  # noqa: E402
from gguf_rerank_fullsize import QUERY  # noqa: E402
from measure import append_results, q3ref_child  # noqa: E402
from q3ref.formats.cpu import cpu_name  # noqa: E402
from rerank_fullsize import documents, make_reranker  # noqa: E402

FILES = {"fp32": "rerank.onnx", "int8": "rerank_int8.onnx", "q4": "rerank_q4.onnx", "q4f16": "rerank_q4f16.onnx"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--variants", default="fp32,int8,q4")
    p.add_argument("--words", type=int, default=75)
    p.add_argument("--out", type=Path, default=ROOT / "weights/onnx-reranker-0.6b")
    a = p.parse_args()
    variants = a.variants.split(",")
    ckpt = make_reranker()
    a.out.mkdir(parents=True, exist_ok=True)
    if not all((a.out / FILES[v]).exists() for v in variants):
        subprocess.run([sys.executable, str(ROOT / "scripts/export_onnx.py"), str(ckpt), str(a.out), "--name", "rerank",
                        "--causal-lm", "--variants", ",".join(variants)], check=True)
    ids = q3ref.Model(ckpt).rerank_ids(QUERY, documents(1, a.words)[0])
    rows = []
    for v in variants:
        graph = a.out / FILES[v]
        report = graph.with_suffix(".report.json")
        s, rss, _ = q3ref_child(["diff", str(graph), "--weights", str(ckpt), "--ids", ",".join(map(str, ids)),
                                 "--json", str(report)])
        rep = json.loads(report.read_text())
        data = graph.with_name(graph.name + "_data")  # an fp32 graph's weights, beside it
        rows.append((v, (graph.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 2**30, s, rss, rep))
        print(v, s, rss, rep["first_divergence"], rep["output"], flush=True)
    lines = [f"\n## ONNX reranker full size: random Qwen3-Reranker-0.6B, one pair ({datetime.date.today()})\n",
             f"{cpu_name()}. torch's exporter (a CausalLM with past, logits out) and ONNX Runtime's quantizers; the "
             f"pair {QUERY!r} and a {a.words}-word document, {len(ids)} tokens, the card's ids. diff: one `q3ref "
             "diff` process (the tapped graph, the untouched graph as an app runs it, q3ref's clean, simulated and "
             "teacher-forced runs), wall time and peak RSS.\n",
             "| graph | size | diff | peak RSS | first divergence | worst local | logits rel L2 to sim / to fp32 | "
             "log-odds graph / fp32 reference |",
             "|---|---|---|---|---|---|---|---|"]
    for v, size, s, rss, rep in rows:
        taps = {t["name"]: t for t in rep["taps"] if t.get("aligned")}
        worst = max(t["local_rel_l2"] for t in taps.values())
        fd, out, lg = rep["first_divergence"], rep["output"], taps["logits"]
        lines.append(f"| {v} | {size:.2f} GB | {s:.1f} s | {rss:.2f} GB | {fd['name'] if fd else 'none'} | {worst:.2g} | "
                     f"{lg.get('sim_rel_l2', float('nan')):.2g} / {lg['rel_l2']:.2g} | {out['log_odds']:.5g} / "
                     f"{out['log_odds_reference']:.5g} |")
    append_results("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
