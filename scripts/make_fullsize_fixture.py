"""Full-size check: a random checkpoint with the real 0.6B shapes, run by transformers.

    pip install -e '.[reference]'
    python scripts/make_fullsize_fixture.py        # ~2 min, ~6 GB RAM, writes 1.2 GB to weights/

Makes weights/random-0.6b (preset 0.6b, seed 0, bf16; git-ignored, re-made by the test) and
saves, from transformers fp32 eager, the embeddings and each layer's output at the last token
for a few inputs, with the sha256 of the weights file so the test knows it re-made the same
weights. Output: tests/fixtures/transformers/fullsize-0.6b.npz (small).
"""

import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import hf_reference  # noqa: E402
from make_fixtures import CARD  # noqa: E402
from q3ref.checkpoint import make_checkpoint, preset_config  # noqa: E402  (random weights only)

CKPT = ROOT / "weights/random-0.6b"
OUT = ROOT / "tests/fixtures/transformers/fullsize-0.6b.npz"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def main():
    if not (CKPT / "model.safetensors").is_file():
        make_checkpoint(CKPT, preset_config("0.6b"), seed=0, preset="0.6b")
    tok = Tokenizer.from_str(gzip.decompress((ROOT / "weights/q3ref-tiny/tokenizer.json.gz").read_bytes()).decode())
    model = hf_reference.load(CKPT)
    cases = {}
    seqs = {name: tok.encode(CARD[name]).ids for name in ("query0", "doc1")}
    seqs["random300"] = np.random.default_rng(5).integers(0, 151669, 300).tolist()
    for name, ids in seqs.items():
        t = hf_reference.taps(model, np.asarray([ids]), dims=(256,))
        cases[name] = {"input_ids": np.asarray(ids, np.int64), "pooled": t["pooled"][0],
                       "embedding": t["embedding"][0], "embedding_dim256": t["embedding_dim256"][0],
                       # each layer's output at the last token: localizes a failure to a layer
                       "layers_out_last": np.stack([t[f"layers.{i}.out"][0, -1] for i in range(28)])}
    flat = {f"{c}/{k}": v for c, d in cases.items() for k, v in d.items()}
    np.savez_compressed(OUT, **flat)
    meta = {**hf_reference.versions(), "checkpoint": "weights/random-0.6b (preset 0.6b, seed 0)",
            "model.safetensors sha256": sha256(CKPT / "model.safetensors")}
    OUT.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
