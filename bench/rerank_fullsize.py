"""Full-size rerank: a random Qwen3-Reranker-0.6B (tied head, names under `model.`), 1 query x 16
documents of ~100 tokens, q3ref next to the model card's transformers recipe in the same run.

    PYTHON=/path/to/ref/python     # torch==2.13.0 (CPU), transformers
    $PYTHON bench/rerank_fullsize.py [--docs 16] [--words 75]

Makes weights/random-reranker-0.6b (git-ignored) on first use. Both sides score the same pairs
(fp32; transformers with eager attention, as the card's code, one batch; q3ref batch 8); the
best of 2 runs each; prints the table and the largest score difference and appends them to
bench/RESULTS.md.
"""

import argparse
import datetime
import gzip
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import q3ref  # noqa: E402
from make_reranker_fixtures import BASE, load_card  # noqa: E402
from q3ref.checkpoint import make_checkpoint, preset_config  # noqa: E402
from q3ref.formats.cpu import cpu_name  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from measure import append_results  # noqa: E402

CKPT = ROOT / "weights/random-reranker-0.6b"


def make_reranker(ckpt=CKPT):
    """weights/random-reranker-0.6b on first use: a random Qwen3-Reranker-0.6B with the real tokenizer."""
    if not (ckpt / "model.safetensors").is_file():
        make_checkpoint(ckpt, preset_config("0.6b"), 0, BASE / "tokenizer.json.gz", preset="0.6b", reranker=True)
        (ckpt / "tokenizer.json").write_bytes(gzip.decompress((BASE / "tokenizer.json.gz").read_bytes()))
        (ckpt / "tokenizer_config.json").write_text((BASE / "tokenizer_config.json").read_text())
    return ckpt


def documents(n, words, seed=0):
    rng = np.random.default_rng(seed)
    vocab = ("gravity force mass planet orbit sun capital city river mountain Beijing China history "
             "language model token vector search query passage answer energy light water").split()
    return [" ".join(rng.choice(vocab, words)) + "." for _ in range(n)]


def best_of(f, runs=2):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, default=16)
    p.add_argument("--words", type=int, default=75)
    a = p.parse_args()
    make_reranker()
    query = "What is the capital of China?"
    docs = documents(a.docs, a.words)
    model = q3ref.Model(CKPT)
    tokens = [len(model.rerank_ids(query, d)) for d in docs]
    model.rerank(query, docs[:1])  # upcast the weights, load the kernels
    q3_s, q3 = best_of(lambda: model.rerank(query, docs))
    score, _, _ = load_card(CKPT)
    hf = lambda: np.array([r["score"] for r in score([(None, [(query, d) for d in docs])])])  # noqa: E731
    hf()  # warm
    hf_s, hf_scores = best_of(hf)
    diff = float(np.abs(q3 - hf_scores).max())
    cpu = cpu_name()
    text = (f"\n## rerank, random 0.6B reranker, 1 query x {a.docs} documents ({datetime.date.today()})\n\n"
            f"{cpu}; {min(tokens)}-{max(tokens)} tokens per pair with the template. Best of 2 runs each.\n\n"
            "| | seconds |\n|---|---|\n"
            f"| q3ref `rerank` (batch 8) | {q3_s:.2f} |\n"
            f"| transformers, the card's recipe (fp32, eager attention, one left-padded batch) | {hf_s:.2f} |\n\n"
            f"Largest score difference between the two: {diff:.2g}.\n")
    append_results(text)


if __name__ == "__main__":
    main()
