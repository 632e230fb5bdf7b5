"""Full-size reranker GGUF: a random Qwen3-Reranker-0.6B converted by llama.cpp as a reranker (rank
head, rank pooling, the rerank template), diffed on one pair with llama.cpp running it live.

    PYTHON=/path/to/ref/python   # torch, transformers, gguf, sentencepiece, llama-cpp-python
    $PYTHON bench/gguf_rerank_fullsize.py --llama-src DIR [--types F16,Q8_0,Q4_K_M] [--words 75]

Makes weights/random-reranker-0.6b (bench/rerank_fullsize.py) on first use and converts it with the
real Qwen3 tokenizer (which appends nothing, as the reranker's) and README.md's "# Qwen3-Reranker"
heading, the converter's test for a reranker, into weights/gguf-reranker-0.6b (git-ignored). Per type:
the pair's ids as llama-server makes them (the file's rerank template, tokenized by llama.cpp) against
the card's (q3ref.rerank_ids); llama.cpp's own rank-pooled decode (2 threads, its defaults, best of 3);
and `q3ref diff FILE QUERY --document DOC --kernels llama.cpp` in a child process, timed, with its
peak RSS. Prints a table and appends it to bench/RESULTS.md.

For a file whose rank head is Q4_K (Q4_K_M's: 2 rows, so never repacked) it also writes
tests/fixtures/gguf/rank_head_Q4_K-0.6b.npz: llama.cpp's own input row and output of that matmul
(ggml_vec_dot_q4_K_q8_K) and the head's stored bytes, a few KB that hold q3ref's emulation of the
kernel to llama.cpp's numbers at full width.
"""

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

import q3ref  # noqa: E402
from export_gguf import rerank_ids  # noqa: E402
from gguf_fullsize import llama_decode_seconds, make_files  # noqa: E402
from measure import append_results, q3ref_child  # noqa: E402
from q3ref.formats.cpu import cpu_name  # noqa: E402
from q3ref.formats.gguf.file import GGUFFile  # noqa: E402
from rerank_fullsize import documents, make_reranker  # noqa: E402

QUERY = "What is the capital of China?"


def conversion_dir(ckpt: Path, work: Path) -> Path:
    d = work / "hf"
    d.mkdir(parents=True, exist_ok=True)
    for f in ckpt.iterdir():
        if f.name != "tokenizer.json.gz":
            (d / f.name).unlink(missing_ok=True)
            (d / f.name).symlink_to(f.resolve())
    (d / "README.md").write_text("# Qwen3-Reranker (random weights: q3ref's benchmark)\n")
    return d


def record_head(path, ids):
    """llama.cpp's rank head matmul on one pair, with what it read, into a small fixture."""
    import numpy as np

    from q3ref.formats.gguf.llama import run_llama, system_info
    from q3ref.formats.gguf.run import RANK_INPUT, as_taps, file_digest

    taps = as_taps(*run_llama(path, ids))
    f = GGUFFile(path)
    out = ROOT / f"tests/fixtures/gguf/rank_head_{f.rank_head().tensor_type.name}-0.6b.npz"
    np.savez_compressed(out, x=taps[RANK_INPUT].reshape(1, -1), logits=taps["MUL_MAT:cls.output.weight"].reshape(1, -1),
                        raw=np.asarray(f.rank_head().data), system_info=np.array(system_info()),
                        cpu=np.array(cpu_name()), file_sha256=np.array(file_digest(path)),
                        file_name=np.array(Path(path).name))
    print("wrote", out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llama-src", required=True, type=Path)
    p.add_argument("--types", default="F16,Q8_0,Q4_K_M")
    p.add_argument("--words", type=int, default=75)
    p.add_argument("--work", type=Path, default=ROOT / "weights/gguf-reranker-0.6b")
    a = p.parse_args()
    ckpt = make_reranker()
    a.work.mkdir(parents=True, exist_ok=True)
    hf = conversion_dir(ckpt, a.work)
    files = make_files(a.llama_src, hf, a.work, "random-reranker-0.6b", a.types.split(","))
    doc = documents(1, a.words)[0]
    card = q3ref.Model(ckpt).rerank_ids(QUERY, doc)
    rows = []
    for t, f in files.items():
        server = rerank_ids(f, [(QUERY, doc)])[0].tolist()
        if GGUFFile(f).rank_head().tensor_type.name == "Q4_K":
            record_head(f, server)
        llama_s, scores = llama_decode_seconds(f, server, pooling=-1)  # the file's own: rank
        out = Path(str(f) + ".report.json")
        seconds, rss, _ = q3ref_child(["diff", f, QUERY, "--document", doc, "--weights", ckpt, "--kernels", "llama.cpp",
                                       "--json", out])
        rep = json.loads(out.read_text())
        rows.append((t, f.stat().st_size / 2**30, server == card, len(card), llama_s, scores, seconds, rss, rep))
        print(t, server == card, llama_s, scores, seconds, rss, rep["first_divergence"], rep["output"], flush=True)
    lines = [f"\n## GGUF reranker full size: random Qwen3-Reranker-0.6B, one pair ({datetime.date.today()})\n",
             f"{cpu_name()}, {platform.machine()}; llama-cpp-python's llama.cpp; the real Qwen3 tokenizer. "
             f"The pair: {QUERY!r} and a {a.words}-word document. llama.cpp rank: one decode with the file's rank "
             "pooling, 2 threads, its defaults, best of 3. diff: one `q3ref diff --kernels llama.cpp` process "
             "(llama.cpp's graph once more with every node copied out, 1 thread, flash attention off; q3ref's "
             "clean, simulated and teacher-forced runs; llama.cpp's default run, flash attention on, and q3ref's "
             "simulation of it), wall time and peak RSS.\n",
             "| file | size | ids: llama-server's = the card's | tokens | llama.cpp rank | diff | peak RSS | "
             "first divergence | worst local (sim) | P(yes) llama.cpp / sim rel L2 of score / fp32 reference | "
             "log-odds: tapped run / app's run (flash attention) / q3ref's simulation of it / fp32 reference |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for t, size, same, n, llama_s, scores, s, rss, rep in rows:
        worst = max(r["local_rel_l2"] for r in rep["taps"] if r.get("aligned"))
        fd = rep["first_divergence"]
        out = rep["output"]
        lines.append(f"| {t} | {size:.2f} GB | {same} | {n} | {llama_s:.2f} s | {s:.1f} s | {rss:.2f} GB | "
                     f"{fd['name'] if fd else 'none'} | {worst:.2g} | {scores[0]:.6g} / {out.get('sim_rel_l2', float('nan')):.2g} "
                     f"/ {out['p_yes_reference']:.6g} | {out['log_odds']:.6g} / {out.get('log_odds_deployed', nan):.6g} / "
                     f"{out.get('log_odds_deployed_simulated', nan):.6g} / {out['log_odds_reference']:.6g} |")
    append_results("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
