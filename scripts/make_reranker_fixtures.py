"""Regenerate tests/fixtures/transformers/reranker.npz: the Qwen3-Reranker model card's own
transformers recipe (fp32, eager attention) on two random reranker checkpoints.

    python scripts/make_reranker_fixtures.py      # reference environment: torch==2.13.0, transformers

Checkpoints (made here with q3ref's random checkpoint maker; the test re-makes them and checks
their sha256): the tiny preset as Qwen3ForCausalLM, tensor names under `model.`, the real Qwen3
base tokenizer (no EOS template, as the reranker repos ship); "tied" (seed 11, the LM head is
embed_tokens, like Qwen3-Reranker-0.6B) and "untied" (seed 12, an lm_head.weight of its own, like
4B and 8B). Saved per checkpoint: each pair's input_ids, yes/no logits at the last position and
score, from the card's code below; and every tap of one pair (hf_reference on the inner Qwen3Model).
"""

import gzip
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import hf_reference  # noqa: E402
from q3ref.checkpoint import make_checkpoint, preset_config  # noqa: E402  (random weights only)

OUT = ROOT / "tests/fixtures/transformers/reranker.npz"
BASE = ROOT / "tests/fixtures/qwen3-tokenizer"
CHECKPOINTS = {"tied": dict(seed=11, tie=True), "untied": dict(seed=12, tie=False)}
QUERIES = ["What is the capital of China?", "Explain gravity", "北京在哪里？"]
DOCUMENTS = ["The capital of China is Beijing.",
             "Gravity is a force that attracts two bodies towards each other. It gives weight to physical "
             "objects and is responsible for the movement of planets around the sun.",
             "北京是中华人民共和国的首都。", "是", "x"]
INSTRUCTIONS = [None, "Given a question, find the passage that answers it"]


def make(out: Path, seed, tie):
    make_checkpoint(out, preset_config("tiny", tie_word_embeddings=tie), seed, BASE / "tokenizer.json.gz",
                    preset="tiny", reranker=True)
    (out / "tokenizer.json").write_bytes(gzip.decompress((BASE / "tokenizer.json.gz").read_bytes()))
    (out / "tokenizer_config.json").write_text((BASE / "tokenizer_config.json").read_text())
    return hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()


def card_recipe(path, pairs_by_instruction):
    """The model card's usage, as published (fp32, eager attention added)."""
    score, model, yes_no = load_card(path)
    return score(pairs_by_instruction), model, yes_no


def load_card(path):
    """(score(pairs_by_instruction) -> [dict], model, (yes id, no id)): the card's code, loaded once."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")
    max_length = 8192
    prefix = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
              "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n")
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    prefix_tokens = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(suffix, add_special_tokens=False)

    def format_instruction(instruction, query, doc):
        if instruction is None:
            instruction = "Given a web search query, retrieve relevant passages that answer the query"
        return "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(
            instruction=instruction, query=query, doc=doc)

    def process_inputs(pairs):
        inputs = tokenizer(pairs, padding=False, truncation="longest_first", return_attention_mask=False,
                           max_length=max_length - len(prefix_tokens) - len(suffix_tokens))
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
        return tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)

    @torch.no_grad()
    def compute_logits(inputs):
        batch_scores = model(**inputs).logits[:, -1, :]
        true_vector = batch_scores[:, token_true_id]
        false_vector = batch_scores[:, token_false_id]
        batch_scores = torch.stack([false_vector, true_vector], dim=1)
        batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
        return batch_scores[:, 1].exp(), true_vector, false_vector

    def score(pairs_by_instruction):
        out = []
        for instruction, pairs in pairs_by_instruction:
            texts = [format_instruction(instruction, q, d) for q, d in pairs]
            inputs = process_inputs(texts)
            scores, yes, no = compute_logits(inputs)
            for k, (q, d) in enumerate(pairs):
                mask = inputs["attention_mask"][k].bool()
                out.append({"query": q, "document": d, "instruction": instruction,
                            "input_ids": inputs["input_ids"][k][mask].numpy(), "score": float(scores[k]),
                            "yes": float(yes[k]), "no": float(no[k])})
        return out

    return score, model, (token_true_id, token_false_id)


def main():
    import transformers

    arrays, meta = {}, {**hf_reference.versions(), "recipe": "Qwen3-Reranker model card (transformers usage)",
                        "checkpoints": {}}
    pairs = [(q, d) for q in QUERIES for d in DOCUMENTS]
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in CHECKPOINTS.items():
            path = Path(tmp) / name
            sha = make(path, spec["seed"], spec["tie"])
            results, model, (yes_id, no_id) = card_recipe(path, [(ins, pairs) for ins in INSTRUCTIONS])
            meta["checkpoints"][name] = {"seed": spec["seed"], "tie_word_embeddings": spec["tie"], "sha256": sha,
                                         "yes_id": yes_id, "no_id": no_id,
                                         "pairs": [{k: r[k] for k in ("query", "document", "instruction")} for r in results]}
            for k, r in enumerate(results):
                for key in ("input_ids", "score", "yes", "no"):
                    arrays[f"{name}/{k}/{key}"] = np.asarray(r[key])
            taps = hf_reference.taps(model.model, results[0]["input_ids"][None])
            for tap, v in taps.items():
                arrays[f"{name}/taps/{tap}"] = v[0]
    np.savez_compressed(OUT, **arrays)
    meta["transformers"] = transformers.__version__
    OUT.with_suffix(".json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
