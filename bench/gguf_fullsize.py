"""Full-size GGUF: the diff's time and peak RSS next to llama.cpp's own embedding time, one run.

    python -m q3ref make-checkpoint --preset 0.6b --seed 0 --out weights/random-0.6b
    PYTHON=/path/to/ref/python   # torch, transformers, gguf, llama-cpp-python
    $PYTHON bench/gguf_fullsize.py weights/random-0.6b --llama-src DIR [--tokens 32] [--types F16,Q8_0,Q4_K_M]
    $PYTHON bench/gguf_fullsize.py weights/random-0.6b --llama-src DIR --record-vec-dot Q5_K_M

Converts the random 0.6B checkpoint with llama.cpp's convert_hf_to_gguf.py (the real Qwen3
tokenizer, last-token pooling) and quantizes it with llama.cpp's quantizer into weights/ (git-ignored).
Then, per type: llama.cpp embeds the same random ids (llama-cpp-python, 2 threads, defaults),
and `q3ref diff --kernels llama.cpp` runs in a child process (llama.cpp's nodes copied out, one
thread, flash attention off; q3ref's reference and simulation) whose wall time and peak RSS are
measured. Prints a table and appends it to bench/RESULTS.md.
"""

import argparse
import datetime
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

from export_gguf import QUANTS, convert, quantize  # noqa: E402
from measure import append_results, q3ref_child  # noqa: E402
from q3ref.formats.cpu import cpu_name  # noqa: E402

TOKENIZER = ROOT / "tests/fixtures/qwen3-tokenizer"


def conversion_dir(ckpt: Path, work: Path) -> Path:
    """The checkpoint as convert_hf_to_gguf.py wants it: the weights linked, the real tokenizer
    (with the Qwen3-Embedding post-processor that appends <|endoftext|>), last-token pooling."""
    from make_bundled_checkpoint import embedding_tokenizer_json

    d = work / "hf"
    d.mkdir(parents=True, exist_ok=True)
    for f in ckpt.glob("*.safetensors*"):
        (d / f.name).unlink(missing_ok=True)
        (d / f.name).symlink_to(f.resolve())
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(architectures=["Qwen3Model"], model_type="qwen3")
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "tokenizer.json").write_bytes(embedding_tokenizer_json())
    shutil.copy(TOKENIZER / "tokenizer_config.json", d / "tokenizer_config.json")
    (d / "modules.json").write_text(json.dumps([{"idx": 1, "name": "1", "path": "1_Pooling",
                                                 "type": "sentence_transformers.models.Pooling"}]))
    (d / "1_Pooling").mkdir(exist_ok=True)
    (d / "1_Pooling/config.json").write_text(json.dumps({"pooling_mode_lasttoken": True}))
    return d


def llama_decode_seconds(path, ids, pooling=3, threads=2, repeats=3):
    """llama.cpp's own time for one decode of `ids` with embeddings on (its default settings,
    `threads` threads; pooling: a llama_pooling_type, -1 for the file's own): the best of `repeats`
    decodes, the KV cache cleared between them; and what llama_get_embeddings_seq returns (the
    pooled row, or a rank file's (P(yes), P(no)))."""
    import llama_cpp
    import numpy as np

    from q3ref.formats.gguf.file import POOLING_RANK
    from q3ref.formats.gguf.llama import quiet

    quiet()
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = max(64, len(ids))
    cp.n_threads = cp.n_threads_batch = threads
    cp.embeddings, cp.pooling_type = True, pooling
    ctx = llama_cpp.llama_init_from_model(model, cp)
    batch = llama_cpp.llama_batch_init(len(ids), 0, 1)
    batch.n_tokens = len(ids)
    for i, tok in enumerate(ids):
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.seq_id[i][0], batch.logits[i] = int(tok), i, 1, 0, 1
    best = float("inf")
    for k in range(repeats + 1):  # the first warms up
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        seconds = timed(lambda: llama_cpp.llama_decode(ctx, batch))
        best = min(best, seconds) if k else best
    n = (llama_cpp.llama_model_n_cls_out(model) if llama_cpp.llama_pooling_type(ctx) == POOLING_RANK
         else llama_cpp.llama_model_n_embd(model))
    out = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_seq(ctx, 0), shape=(n,)).copy()
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return best, out


def make_files(llama_src, hf, work, stem, types):
    """{type: path}: the checkpoint in `hf` converted (F16, BF16, F32) or quantized from F32 by
    llama.cpp's own tools, into work/{stem}-{type}.gguf; files already there are kept."""
    files = {}
    for t in types:
        files[t] = work / f"{stem}-{t}.gguf"
        if files[t].exists():
            continue
        if t in ("F16", "BF16", "F32"):
            convert(llama_src, hf, files[t], t.lower())
        else:
            f32 = work / f"{stem}-F32.gguf"
            if not f32.exists():
                convert(llama_src, hf, f32, "f32")
            quantize(f32, files[t], QUANTS[t])
    return files


def timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def diff_in_child(gguf, ckpt, ids, quant):
    """Wall seconds, peak RSS (GB) and the report of one `q3ref diff` in its own process."""
    out = Path(str(gguf) + f".{quant}.report.json")
    seconds, rss, _ = q3ref_child(["diff", gguf, "--weights", ckpt, "--kernels", "llama.cpp", "--quant", quant,
                                   "--ids", ",".join(map(str, ids)), "--json", out])
    return seconds, rss, json.loads(out.read_text())


def record_vec_dot(path, weight="blk.0.attn_k.weight", rows=16, tokens=3):
    """llama.cpp's one matmul of `weight` on a few tokens (below 8 rows a K-quant weight takes
    ggml's vec_dot) with its input, its first `rows` outputs and those rows' stored bytes, into
    tests/fixtures/gguf/vec_dot_{type}-0.6b.npz: a few KB holding the emulation to llama.cpp at
    full width (four 256-value super-blocks a row, where the fixture files have one)."""
    from q3ref.formats.gguf.file import GGUFFile
    from q3ref.formats.gguf.llama import run_llama, system_info
    from q3ref.formats.gguf.run import as_taps, file_digest

    ids = np.append(np.random.default_rng(1).integers(0, 151643, tokens - 1), 151643)
    taps = as_taps(*run_llama(path, ids))
    t = next(t for t in GGUFFile(path).reader.tensors if t.name == weight)
    raw = np.asarray(t.data).view(np.uint8).reshape(int(t.shape[1]), -1)[:rows]  # [rows, bytes per row]
    out = ROOT / f"tests/fixtures/gguf/vec_dot_{t.tensor_type.name}-0.6b.npz"
    np.savez_compressed(out, x=taps["attn_norm-0:MUL"][0], y=taps[f"MUL_MAT:{weight}"][0][:, :rows], raw=raw,
                        width=np.array(int(t.shape[0])), system_info=np.array(system_info()),
                        cpu=np.array(cpu_name()), file_sha256=np.array(file_digest(path)),
                        file_name=np.array(Path(path).name))
    print("wrote", out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights", type=Path)
    p.add_argument("--llama-src", required=True, type=Path)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--types", default="F16,Q8_0,Q4_K_M")
    p.add_argument("--work", type=Path, default=ROOT / "weights/gguf-0.6b")
    p.add_argument("--record-vec-dot", metavar="TYPE", help="only record_vec_dot() of this file type (Q5_K_M)")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    hf = conversion_dir(a.weights, a.work)
    if a.record_vec_dot:
        return record_vec_dot(make_files(a.llama_src, hf, a.work, "random-0.6b", [a.record_vec_dot])[a.record_vec_dot])
    files = make_files(a.llama_src, hf, a.work, "random-0.6b", a.types.split(","))
    ids = np.append(np.random.default_rng(0).integers(0, 151643, a.tokens - 1), 151643)
    rows = []
    for t, f in files.items():
        llama_s = llama_decode_seconds(f, ids)[0]
        row = {"type": t, "size_gb": f.stat().st_size / 2**30, "llama_s": llama_s}
        for quant in ("auto", "none"):
            s, rss, rep = diff_in_child(f, a.weights, ids, quant)
            row[quant] = (s, rss, rep)
        rows.append(row)
        print(t, {k: (v if not isinstance(v, tuple) else v[:2]) for k, v in row.items()}, flush=True)
    cpu = cpu_name()
    lines = [f"\n## GGUF full size: random 0.6B, {a.tokens} tokens ({datetime.date.today()})\n",
             f"{cpu}, {platform.machine()}; llama-cpp-python's llama.cpp. llama.cpp embed: 2 threads, its defaults, "
             "best of 3. diff: one `q3ref diff --kernels llama.cpp` process (llama.cpp's graph run once more with "
             "every node copied out, 1 thread, flash attention off; q3ref's clean and teacher-forced runs; with "
             "--quant auto also llama.cpp's default run, flash attention on, and q3ref's simulation of it), "
             "wall time and peak RSS of that process.\n",
             "| file | size | llama.cpp embed | diff --quant auto (exact simulation) | peak RSS | diff --quant none | peak RSS | "
             "output rel L2 to sim / to fp32 | app's run (flash attention) rel L2 to the tapped run / to q3ref's simulation of it |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        (sa, ra, rep), (sn, rn, _) = r["auto"], r["none"]
        out, run = rep["output"], rep.get("untapped") or {}
        lines.append(f"| {r['type']} | {r['size_gb']:.2f} GB | {r['llama_s']:.2f} s | {sa:.1f} s | {ra:.2f} GB | "
                     f"{sn:.1f} s | {rn:.2f} GB | {out.get('sim_rel_l2', float('nan')):.2g} / {out['rel_l2']:.2g} | "
                     f"{run.get('rel_l2', float('nan')):.2g} / {run.get('sim_rel_l2', float('nan')):.2g} |")
    append_results("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
