"""Make tests/fixtures/gguf: GGUFs written by llama.cpp's own converter and quantizer, and the
tensors llama.cpp computes on them, dumped from its own run. Runs in the reference environment
(torch, transformers, sentencepiece, gguf, llama-cpp-python):

    PYTHON=/path/to/ref/python
    $PYTHON scripts/export_gguf.py --llama-src DIR     # DIR: vendor/llama.cpp of llama-cpp-python's sdist

1. The checkpoint (tests/fixtures/gguf-checkpoint): q3ref's random checkpoint maker (bf16, seed 0)
   at D=256, F=256, H*Dh=256, so every projection's input width is a multiple of 256 and the
   K-quants apply. Its tokenizer is the real Qwen3 tokenizer cut to 1000 ids (ids 0..996 and their
   merges, then <|endoftext|> 997, <|im_start|> 998, <|im_end|> 999) with the Qwen3-Embedding
   post-processor that appends <|endoftext|>; modules.json + 1_Pooling say last-token pooling.
2. convert_hf_to_gguf.py writes F32, F16 and BF16. Its pre-tokenizer check hashes the ids of a
   test string, which the cut vocabulary changes: it is told "qwen2", what the full tokenizer hashes to.
3. llama.cpp's quantizer (llama_model_quantize, no imatrix) makes Q8_0, Q4_0, Q4_K_M, Q5_K_M and
   Q6_K from the F32 file.
4. Defects: weights planted in a copy of the checkpoint (q_norm_ones:1, gate_up_swap:1), converted
   and quantized to Q4_K_M the same way; a rope base of 1e4 planted in Q4_K_M's metadata with
   gguf-py's writer (tests/gguf_files.py, which the tests use for the other metadata defects).
5. Dumps (dumps(); --only-dumps: nothing else, from the files already here): llama.cpp
   (llama-cpp-python, one thread, flash attention off) runs each file on seeded random ids;
   q3ref.formats.gguf.llama copies out every node of its graph (the capture code is q3ref's, the
   numbers are llama.cpp's). taps_*.npz: the tap nodes for one input (and 1 and 3 tokens);
   out_*.npz: the pooled output for 16 inputs of 8-24 tokens and two of 64 and 100. Each run also
   has "deployed": the output with llama.cpp's defaults (flash attention auto, its thread count).
6. Rerankers (rerankers(), first; --only-rerank: nothing else): tests/fixtures/gguf-reranker-checkpoint,
   a tied Qwen3ForCausalLM stored as the Qwen3-Reranker repos store it (D=64, 2 layers; the same cut
   tokenizer with "yes" and "no" at 995 and 996, appending nothing; README.md with the
   "# Qwen3-Reranker" heading the converter looks for), converted to F16 and F32 -> Q8_0 (rank head
   cls.output, rank pooling, the rerank template), and once more without README.md
   (unmarked_rerank-Q8_0.gguf: what the converter makes of a reranker it does not recognize).
   Each pair's ids are llama.cpp's tokenization of the file's rerank template, filled in as
   llama-server does; llama.cpp runs them with the file's rank pooling (taps_rerank-*: one pair's
   nodes; out_rerank-*: (P(yes), P(no)) for 16 pairs; each with "deployed", as in 5); rerank-Q4_0.gguf's
   scores only.
"""

import argparse
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from q3ref import safetensors_io  # noqa: E402
from q3ref.checkpoint import make_checkpoint  # noqa: E402
from q3ref.config import Config  # noqa: E402
from tests.gguf_files import rewrite_metadata  # noqa: E402

CKPT = ROOT / "tests/fixtures/gguf-checkpoint"
OUT = ROOT / "tests/fixtures/gguf"
BASE_TOKENIZER = ROOT / "tests/fixtures/qwen3-tokenizer/tokenizer.json.gz"
VOCAB, KEEP = 1000, 997
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CONFIG = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              head_dim=64, intermediate_size=256, vocab_size=VOCAB)
QUANTS = {"Q8_0": 7, "Q4_0": 2, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}  # llama_ftype values
SEEDS_TAPS, SEEDS_OUT = (0,), range(100, 116)
# The reranker: a tied Qwen3ForCausalLM as the Qwen3-Reranker repos store it, small enough to commit
# (no K-quants: F16 and Q8_0 take rows of any multiple of 32).
RERANK_CKPT = ROOT / "tests/fixtures/gguf-reranker-checkpoint"
RERANK_CONFIG = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                     head_dim=32, intermediate_size=128, vocab_size=VOCAB, tie_word_embeddings=True)
ANSWERS, IM_END = ["yes", "no"], "<|im_end|>"
PAIRS = [("What is the capital of China?", "The capital of China is Beijing."),
         ("Explain gravity", "Gravity is a force that attracts two bodies towards each other."),
         ("什么是机器学习？", "机器学习是人工智能的一个分支。"), ("one character", "x"),
         *[(f"query {k}", f"document {k}: " + "word " * (3 * k)) for k in range(12)]]
UNSAVED = ("kq-", "kq_soft_max-", "norm-", "result_output", "norm:")  # big, or not a tap: not committed


def tiny_tokenizer(reranker=False):
    """The real tokenizer cut to 1000 ids. reranker: "yes" and "no" take ids 995 and 996 (their
    merges y+es and n+o come along), and the post-processor stays the base tokenizer's ByteLevel
    one, which appends nothing, as Qwen3-Reranker's does; eos_token is <|im_end|>, as there."""
    tok = json.loads(gzip.decompress(BASE_TOKENIZER.read_bytes()))
    words = ANSWERS if reranker else []
    vocab = {t: i for t, i in tok["model"]["vocab"].items() if i < KEEP - len(words)}
    vocab.update({w: KEEP - len(words) + k for k, w in enumerate(words)})
    merges = [m for m in tok["model"]["merges"]
              if (m if isinstance(m, list) else m.split(" "))[0] in vocab
              and (m if isinstance(m, list) else m.split(" "))[1] in vocab
              and "".join(m if isinstance(m, list) else m.split(" ")) in vocab]
    tok["model"]["vocab"], tok["model"]["merges"] = vocab, merges
    added = {a["content"]: a for a in tok["added_tokens"]}
    tok["added_tokens"] = [dict(added[s], id=KEEP + k) for k, s in enumerate(SPECIALS)]
    if not reranker:
        tok["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}],
            "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [KEEP], "tokens": ["<|endoftext|>"]}}}
    config = {"add_bos_token": False, "add_prefix_space": False, "bos_token": None,
              "eos_token": IM_END if reranker else "<|endoftext|>",
              "pad_token": "<|endoftext|>", "model_max_length": 32768, "tokenizer_class": "Qwen2Tokenizer",
              "added_tokens_decoder": {str(KEEP + k): {k2: v for k2, v in added[s].items() if k2 not in ("id",)}
                                       for k, s in enumerate(SPECIALS)}}
    return tok, config


def make_gguf_checkpoint(out: Path):
    make_checkpoint(out, Config(**CONFIG), seed=0, preset="gguf")
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(architectures=["Qwen3Model"], model_type="qwen3", eos_token_id=KEEP, bos_token_id=KEEP)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tok, tok_config = tiny_tokenizer()
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}], indent=2))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling/config.json").write_text(json.dumps(
        {"word_embedding_dimension": CONFIG["hidden_size"], "pooling_mode_lasttoken": True}, indent=2))


def make_reranker_checkpoint(out: Path):
    """README.md's first heading is what convert_hf_to_gguf.py looks for to write a rank head
    (cls.output: the LM head's yes and no rows), rank pooling and the rerank template."""
    make_checkpoint(out, Config(**RERANK_CONFIG), seed=0, preset="gguf-reranker", reranker=True)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(model_type="qwen3", eos_token_id=KEEP + 2, bos_token_id=KEEP)  # <|im_end|>, as Qwen3-Reranker's
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    tok, tok_config = tiny_tokenizer(reranker=True)
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    (out / "README.md").write_text("# Qwen3-Reranker (random, tiny: q3ref's test checkpoint)\n")


def plant(src: Path, dst: Path, defect: str):
    """A copy of the checkpoint with one weight defect (the name says where it starts)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    name, _, layer = defect.partition(":")
    tensors = {n: (dt, np.array(a)) for n, (dt, a) in safetensors_io.open_tensors(dst / "model.safetensors").items()}
    p = f"layers.{layer}."
    if name == "q_norm_ones":
        dt, a = tensors[p + "self_attn.q_norm.weight"]
        a[:] = safetensors_io.bf16_bits(np.ones(a.shape, np.float32))
    elif name == "gate_up_swap":
        g, u = p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"
        tensors[g], tensors[u] = tensors[u], tensors[g]
    else:
        sys.exit(f"unknown defect {defect}")
    specs = {n: (dt, a.shape, lambda a=a: [a]) for n, (dt, a) in tensors.items()}
    safetensors_io.write(dst / "model.safetensors", specs, metadata={"format": "pt"})


CONVERT = """
import sys
sys.path.insert(0, {src!r})
import convert_hf_to_gguf as c
from conversion.base import TextModel
TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"  # the cut vocabulary hashes differently
sys.argv = ["convert_hf_to_gguf.py", {ckpt!r}, "--outtype", {outtype!r}, "--outfile", {out!r}]
c.main()
"""


def convert(src, ckpt, out, outtype):
    code = CONVERT.format(src=str(src), ckpt=str(ckpt), outtype=outtype, out=str(out))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    print("wrote", out)


def quantize(src, out, ftype):
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 1
    if llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), params) != 0:
        sys.exit(f"llama_model_quantize failed for {out}")
    print("wrote", out)


def ids_for(seed, vocab=KEEP):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 25))
    return np.append(rng.integers(0, vocab, n - 1), KEEP)  # ends in <|endoftext|>, as the bridge appends it


SHORT = {"short1": [KEEP], "short3": [17, 400, KEEP]}  # one row and three: llama.cpp's other kernels
LONG = {"long64": 64, "long100": 100}  # 64 tokens or more: flash attention's tiled kernel


def run_ids(s):
    if s in SHORT:
        return np.array(SHORT[s])
    if s in LONG:
        rng = np.random.default_rng(LONG[s])
        return np.append(rng.integers(0, KEEP, LONG[s] - 1), KEEP)
    return ids_for(s)


def dump(path, seeds, taps):
    """Each run: its ids, llama.cpp's output and nodes with flash attention off (pooled, the taps),
    and its output as llama.cpp's defaults run it (deployed: flash attention auto, on for a CPU)."""
    from q3ref.formats.gguf.llama import run_llama
    from q3ref.formats.gguf.run import run_deployed

    arrays = {}
    for s in seeds:
        ids = run_ids(s)
        nodes, pooled = run_llama(path, ids, capture=taps)
        arrays[f"{s}/ids"] = ids
        arrays[f"{s}/pooled"] = pooled
        arrays[f"{s}/deployed"] = run_deployed(path, ids)
        for key, value in nodes.items():
            if not key.split(":", 1)[1].startswith(UNSAVED):
                arrays[f"{s}/{key}"] = value
    from q3ref.formats.gguf.llama import system_info
    from q3ref.formats.gguf.run import cpu_name, file_digest

    arrays["system_info"], arrays["cpu"] = np.array(system_info()), np.array(cpu_name())  # which kernels ran
    arrays["file_sha256"], arrays["file_name"] = np.array(file_digest(path)), np.array(Path(path).name)  # of what
    kind = "taps" if taps else "out"
    dst = OUT / f"{kind}_{Path(path).stem}.npz"
    np.savez_compressed(dst, **arrays)
    print("wrote", dst)


def rerank_ids(path, pairs):
    """Each pair's ids as llama-server makes them (format_prompt_rerank): the file's "rerank"
    template filled in, tokenized by llama.cpp with special tokens parsed and none added."""
    import llama_cpp

    from q3ref.formats.gguf.llama import quiet

    quiet()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    template = llama_cpp.llama_model_chat_template(model, b"rerank").decode()
    vocab = llama_cpp.llama_model_get_vocab(model)
    out = []
    for q, d in pairs:
        text = template.replace("{query}", q).replace("{document}", d).encode()
        buf = (llama_cpp.llama_token * (len(text) + 8))()
        n = llama_cpp.llama_tokenize(vocab, text, len(text), buf, len(buf), False, True)
        out.append(np.array(buf[:n], np.int64))
    llama_cpp.llama_model_free(model)
    return out


def dump_rerank(path, taps):
    """taps: one pair's nodes (taps_X.npz); else the scores of every pair (out_X.npz). Each run's
    "pooled" is what llama_get_embeddings_seq hands back under rank pooling: (P(yes), P(no))."""
    from q3ref.formats.gguf.llama import run_llama, system_info
    from q3ref.formats.gguf.run import cpu_name, file_digest, run_deployed

    arrays = {}
    for k, ids in enumerate(rerank_ids(path, PAIRS[:1] if taps else PAIRS)):
        nodes, pooled = run_llama(path, ids, capture=taps)
        arrays[f"pair{k}/ids"], arrays[f"pair{k}/pooled"] = ids, pooled
        arrays[f"pair{k}/deployed"] = run_deployed(path, ids)  # llama.cpp's defaults, as dump() records
        for key, value in nodes.items():
            if not key.split(":", 1)[1].startswith(UNSAVED):
                arrays[f"pair{k}/{key}"] = value
    arrays["system_info"], arrays["cpu"] = np.array(system_info()), np.array(cpu_name())
    arrays["file_sha256"], arrays["file_name"] = np.array(file_digest(path)), np.array(Path(path).name)
    arrays["pairs"] = np.array([f"{q}\t{d}" for q, d in (PAIRS[:1] if taps else PAIRS)])
    dst = OUT / f"{'taps' if taps else 'out'}_{Path(path).stem}.npz"
    np.savez_compressed(dst, **arrays)
    print("wrote", dst)


def rerankers(llama_src, work):
    """rerank-{F16,Q8_0}.gguf from the marked checkpoint; unmarked_rerank-Q8_0.gguf from a copy
    without README.md, which the converter takes for a plain LM: no rank head, no rank pooling, no
    template (how published GGUFs of Qwen3-based rerankers come to score every document ~0)."""
    if not (RERANK_CKPT / "model.safetensors").is_file():
        make_reranker_checkpoint(RERANK_CKPT)
    convert(llama_src, RERANK_CKPT, OUT / "rerank-F16.gguf", "f16")
    convert(llama_src, RERANK_CKPT, work / "rerank-F32.gguf", "f32")
    quantize(work / "rerank-F32.gguf", OUT / "rerank-Q8_0.gguf", QUANTS["Q8_0"])
    unmarked = work / "ckpt-unmarked"
    if unmarked.exists():
        shutil.rmtree(unmarked)
    shutil.copytree(RERANK_CKPT, unmarked)
    (unmarked / "README.md").unlink()
    convert(llama_src, unmarked, work / "unmarked-F32.gguf", "f32")
    quantize(work / "unmarked-F32.gguf", OUT / "unmarked_rerank-Q8_0.gguf", QUANTS["Q8_0"])
    for name in ("F16", "Q8_0"):
        dump_rerank(OUT / f"rerank-{name}.gguf", taps=True)
        dump_rerank(OUT / f"rerank-{name}.gguf", taps=False)
    # Q4_0: its projections are repacked (rows in eights), its 2-row rank head is not (vec_dot); scores only
    quantize(work / "rerank-F32.gguf", OUT / "rerank-Q4_0.gguf", QUANTS["Q4_0"])
    dump_rerank(OUT / "rerank-Q4_0.gguf", taps=False)


def stamp():
    """Name the file of each recording made before dump() did (taps_X.npz and out_X.npz are runs
    of X.gguf, as dump() names them); the recorded values are copied unchanged."""
    from q3ref.formats.gguf.run import file_digest

    for npz in sorted(OUT.glob("*_*.npz")):
        gguf_path = OUT / (npz.stem.split("_", 1)[1] + ".gguf")
        with np.load(npz) as z:
            if "file_sha256" in z.files:
                continue
            arrays = {k: z[k] for k in z.files}
        arrays["file_sha256"], arrays["file_name"] = np.array(file_digest(gguf_path)), np.array(gguf_path.name)
        np.savez_compressed(npz, **arrays)
        print("stamped", npz.name, "with", gguf_path.name)


def dumps():
    for name in ("F16", "Q8_0", "Q4_K_M", "Q6_K"):
        dump(OUT / f"base-{name}.gguf", (*SEEDS_TAPS, *SHORT), taps=True)
        dump(OUT / f"base-{name}.gguf", (*SEEDS_OUT, *LONG), taps=False)
    for name in ("BF16", "Q5_K_M", "Q4_0"):  # 1 and 3 tokens too: their one-row and few-row kernels
        dump(OUT / f"base-{name}.gguf", (*SEEDS_TAPS, *SHORT), taps=True)
    for f in sorted(OUT.glob("defect_*.gguf")) + [OUT / "meta_rope_base-Q4_K_M.gguf"]:
        dump(f, SEEDS_TAPS, taps=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--llama-src", type=Path, help="vendor/llama.cpp of llama-cpp-python's sdist")
    p.add_argument("--work", type=Path, default=Path("/tmp/q3ref-gguf"))
    p.add_argument("--stamp", action="store_true", help="only add file_sha256/file_name to the recordings")
    p.add_argument("--only-rerank", action="store_true", help="only the reranker files and their recordings")
    p.add_argument("--only-dumps", action="store_true", help="only the base files' recordings, from the files here")
    a = p.parse_args()
    if a.stamp:
        return stamp()
    if a.only_dumps:
        return dumps()
    if a.llama_src is None:
        p.error("--llama-src is required")
    import gguf
    import llama_cpp  # noqa: F401  (fail now, before converting, if the llama extra is missing)

    OUT.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    rerankers(a.llama_src, a.work)
    if a.only_rerank:
        return
    if not (CKPT / "model.safetensors").is_file():
        make_gguf_checkpoint(CKPT)
    f32 = a.work / "base-F32.gguf"
    convert(a.llama_src, CKPT, f32, "f32")
    for outtype in ("f16", "bf16"):
        convert(a.llama_src, CKPT, OUT / f"base-{outtype.upper()}.gguf", outtype)
    for name, ftype in QUANTS.items():
        quantize(f32, OUT / f"base-{name}.gguf", ftype)
    for defect in ("q_norm_ones:1", "gate_up_swap:1"):
        tag = defect.replace(":", "_")
        planted = a.work / f"ckpt-{tag}"
        plant(CKPT, planted, defect)
        convert(a.llama_src, planted, a.work / f"{tag}-F32.gguf", "f32")
        quantize(a.work / f"{tag}-F32.gguf", OUT / f"defect_{tag}-Q4_K_M.gguf", QUANTS["Q4_K_M"])
    rewrite_metadata(OUT / "base-Q4_K_M.gguf", OUT / "meta_rope_base-Q4_K_M.gguf",
                     {"qwen3.rope.freq_base": (10000.0, gguf.GGUFValueType.FLOAT32)})
    # the other metadata defects (no add_eos, mean pooling, <|im_end|> as EOS) are made by the
    # tests with the same function: llama.cpp's numbers are not needed for them

    dumps()
    from importlib.metadata import version
    commit = subprocess.run(["git", "-C", str(a.llama_src), "log", "-1", "--format=%h %cs"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    (OUT / "VERSION").write_text(f"llama-cpp-python {version('llama-cpp-python')} (llama.cpp {commit}), "
                                 f"gguf {version('gguf')}\n")


if __name__ == "__main__":
    main()
