"""Regenerate weights/q3ref-tiny: the bundled random checkpoint that runs offline.

    python scripts/make_bundled_checkpoint.py

Tokenizer: the real Qwen3 base tokenizer (tests/fixtures/qwen3-tokenizer) turned into the
Qwen3-Embedding variant, whose post-processor appends <|endoftext|> through TemplateProcessing,
exactly as the published tokenizer.json does. Weights: preset "tiny" (real vocabulary 151669,
D=16, so the file stays ~5 MB), seed 0, bf16. Its vectors are meaningless by design.
"""

import gzip
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from q3ref.checkpoint import make_checkpoint, preset_config  # noqa: E402

BASE = ROOT / "tests/fixtures/qwen3-tokenizer/tokenizer.json.gz"
OUT = ROOT / "weights/q3ref-tiny"

EMBEDDING_POST_PROCESSOR = {
    "type": "Sequence",
    "processors": [
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        {"type": "TemplateProcessing",
         "single": [{"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
         "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                  {"Sequence": {"id": "B", "type_id": 1}},
                  {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}],
         "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [151643],
                                              "tokens": ["<|endoftext|>"]}}},
    ],
}


def embedding_tokenizer_json() -> bytes:
    tok = json.loads(gzip.decompress(BASE.read_bytes()))
    tok["post_processor"] = EMBEDDING_POST_PROCESSOR
    return json.dumps(tok, ensure_ascii=False).encode()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        tok = Path(tmp) / "tokenizer.json.gz"
        tok.write_bytes(gzip.compress(embedding_tokenizer_json(), 9, mtime=0))
        make_checkpoint(OUT, preset_config("tiny"), seed=0, tokenizer=tok, preset="tiny")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
