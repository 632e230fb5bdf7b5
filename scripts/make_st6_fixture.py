"""Regenerate tests/fixtures/transformers/st6.npz: sentence-transformers 6's own `encode` on texts
with leading and trailing whitespace, CJK, emoji and prompts (reference environment:
torch==2.13.0, transformers, sentence-transformers==6.2.0).

    python scripts/make_st6_fixture.py

The model is the bundled weights/q3ref-tiny (the real tokenizer with the Qwen3-Embedding EOS
template) laid out as a sentence-transformers directory: modules.json with Transformer,
last-token Pooling and Normalize, and the published prompts. Two conventions are saved:
- "st6": `encode(texts, prompt_name=...)` as sentence-transformers 6 runs it (no stripping);
- "stripped": what sentence-transformers up to 5.x computed, which stripped prompt + text
  together: the same `encode` given the prompted, stripped strings and no prompt.
"""

import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/transformers/st6.npz"
TINY = ROOT / "weights/q3ref-tiny"
QUERY = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
TEXTS = [
    ("  two spaces at each end  ", "query"),
    ("  two spaces at each end  ", None),
    ("\ttab before, newline after\n", None),
    (" leading space only", "query"),
    ("trailing spaces only   ", None),
    ("北京是中国的首都。", None),
    ("  首都は北京です  ", "query"),
    ("rocket 🚀 and fog face 😶‍🌫️ ", None),
    ("Explain gravity", "query"),
    ("The capital of China is Beijing.", None),
]


def st_dir(tmp: Path) -> Path:
    d = tmp / "q3ref-tiny-st"
    d.mkdir()
    shutil.copy(TINY / "config.json", d / "config.json")
    shutil.copy(TINY / "model.safetensors", d / "model.safetensors")
    (d / "tokenizer.json").write_bytes(gzip.decompress((TINY / "tokenizer.json.gz").read_bytes()))
    shutil.copy(ROOT / "tests/fixtures/qwen3-tokenizer/tokenizer_config.json", d / "tokenizer_config.json")
    (d / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling/config.json").write_text(json.dumps({"word_embedding_dimension": 16, "pooling_mode_lasttoken": True}))
    (d / "2_Normalize").mkdir()
    (d / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": QUERY, "document": ""}, "default_prompt_name": None, "similarity_fn_name": "cosine"}))
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32768, "do_lower_case": False}))
    return d


def main():
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as tmp:
        model = SentenceTransformer(str(st_dir(Path(tmp))), device="cpu", model_kwargs={"dtype": "float32"})
        st6 = np.stack([model.encode([t], prompt_name=p, convert_to_numpy=True)[0] for t, p in TEXTS])
        stripped = np.stack([model.encode([((QUERY if p else "") + t).strip()], convert_to_numpy=True)[0] for t, p in TEXTS])
    np.savez_compressed(OUT, st6=st6.astype(np.float32), stripped=stripped.astype(np.float32))
    meta = {"sentence_transformers": sentence_transformers.__version__, "checkpoint": "weights/q3ref-tiny",
            "texts": [{"text": t, "prompt_name": p} for t, p in TEXTS],
            "stripped": "encode of (prompt + text).strip() with no prompt: sentence-transformers <= 5.x"}
    OUT.with_suffix(".json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
