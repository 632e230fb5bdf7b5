"""Regenerate tests/fixtures/transformers/*.npz: every tap, from transformers, for two checkpoints.

    pip install -e '.[reference]'        # torch==2.13.0 (CPU) and transformers
    python scripts/make_fixtures.py

1. tiny: the bundled weights/q3ref-tiny (real tokenizer, D=16, bf16), on the model-card
   strings tokenized by the real tokenizer through its own TemplateProcessing (the expected ids
   for q3ref's tokenizer tests are saved here too).
2. stress: tests/fixtures/stress-checkpoint, made here: GQA 3:1 (H=6, Hkv=2), q width
   H*Dh=96 != D=48, non-unit random norm weights, bf16 storage, rope_theta 1e4, config.json in
   the transformers-5 dialect (rope_parameters, dtype); sequences of 1, 9 and 200 tokens, and a
   mixed left/right-padded batch run by transformers as one batch.
"""

import gzip
import json
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import hf_reference  # noqa: E402
from q3ref.checkpoint import make_checkpoint  # noqa: E402  (random weights only; values come from transformers)
from q3ref.config import Config  # noqa: E402

OUT = ROOT / "tests/fixtures/transformers"
STRESS = ROOT / "tests/fixtures/stress-checkpoint"
QUERY = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
CARD = {
    "query0": QUERY + "What is the capital of China?",
    "query1": QUERY + "Explain gravity",
    "doc0": "The capital of China is Beijing.",
    "doc1": "Gravity is a force that attracts two bodies towards each other. It gives weight to "
            "physical objects and is responsible for the movement of planets around the sun.",
}


def save(path, cases, meta):
    flat = {f"{case}/{k}": v for case, d in cases.items() for k, v in d.items()}
    np.savez_compressed(path, **flat)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {len(flat)} arrays)")


def run_single(model, ids):
    t = hf_reference.taps(model, np.asarray([ids]))
    return {**{k: v[0] for k, v in t.items()}, "input_ids": np.asarray(ids, np.int64)}


def tiny():
    ckpt = ROOT / "weights/q3ref-tiny"
    tok = Tokenizer.from_str(gzip.decompress((ckpt / "tokenizer.json.gz").read_bytes()).decode())
    model = hf_reference.load(ckpt)
    cases = {name: run_single(model, tok.encode(text).ids) for name, text in CARD.items()}
    meta = {**hf_reference.versions(), "checkpoint": "weights/q3ref-tiny", "texts": CARD,
            "ids_from": "tokenizers.Tokenizer(weights/q3ref-tiny/tokenizer.json.gz).encode(text) (template appends EOS)"}
    save(OUT / "tiny.npz", cases, meta)


def stress():
    cfg = Config(hidden_size=48, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
                 head_dim=16, intermediate_size=80, vocab_size=1000, rope_theta=10_000.0)
    make_checkpoint(STRESS, cfg, seed=7, preset=None)
    # Rewrite config.json in the transformers-5 dialect, which q3ref must read too.
    c = json.loads((STRESS / "config.json").read_text())
    c["rope_parameters"] = {"rope_theta": c.pop("rope_theta"), "rope_type": "default"}
    c["dtype"] = c.pop("torch_dtype")
    c["bos_token_id"] = c["eos_token_id"] = None  # 151643 is outside this toy vocabulary
    (STRESS / "config.json").write_text(json.dumps(c, indent=2) + "\n")

    model = hf_reference.load(STRESS)
    rng = np.random.default_rng(123)
    cases = {f"len{n}": run_single(model, rng.integers(0, cfg.vocab_size, n).tolist()) for n in (1, 9, 200)}
    # One padded batch through transformers: right-padded, left-padded and full rows.
    T = 24
    ids = rng.integers(0, cfg.vocab_size, (3, T))
    mask = np.ones((3, T), np.int64)
    mask[0, 17:] = 0  # right padding
    mask[1, :10] = 0  # left padding
    t = hf_reference.taps(model, ids, mask, dims=(32,))
    cases["batch"] = {"input_ids": ids, "attention_mask": mask, "pooled": t["pooled"],
                      "embedding": t["embedding"], "embedding_dim32": t["embedding_dim32"]}
    meta = {**hf_reference.versions(), "checkpoint": "tests/fixtures/stress-checkpoint",
            "config": {"seed": 7, **c}}
    save(OUT / "stress.npz", cases, meta)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    tiny()
    stress()
