"""Write notebooks/*.ipynb from the cell sources below (outputs stripped; tests execute them).

    python scripts/make_notebooks.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
SETUP = '''import os, pathlib
import numpy as np
import matplotlib.pyplot as plt
import q3ref

# Run from notebooks/ or the repository root; the real weights are used when q3ref finds them.
ROOT = pathlib.Path.cwd() if (pathlib.Path.cwd() / "weights").is_dir() else pathlib.Path.cwd().parent
try:
    model = q3ref.load()
    print("using the real weights:", model.path)
except q3ref.Q3RefError:
    model = q3ref.load(ROOT / "weights/q3ref-tiny")
    print("no real weights found: using the bundled random checkpoint", model.path, "(its vectors are meaningless)")
cfg = model.cfg
cfg'''

NB1 = [
    new_markdown_cell("# Qwen3-Embedding, step by step\n\nTokenization, one decoder layer through q3ref's taps, "
                      "RoPE, attention, last-token pooling, MRL and similarity. Every number below comes from "
                      "`q3ref`'s public API."),
    new_code_cell(SETUP),
    new_markdown_cell("## Tokens: the EOS the template appends, and the query instruction\n\n"
                      "Every input ends with exactly one `<|endoftext|>` (151643). Queries get "
                      "`Instruct: {task}\\nQuery:` with **no space** after `Query:`; documents get nothing."),
    new_code_cell('''q_ids = model.tokenize("What is the capital of China?", prompt_name="query")[0]
d_ids = model.tokenize("The capital of China is Beijing.")[0]
print(len(q_ids), "query ids, last:", q_ids[-3:])
print(repr(model.tokenizer.decode(q_ids)))
print(len(d_ids), "document ids:", d_ids)'''),
    new_markdown_cell("What goes wrong in bridges, named by `check-ids` (here through its Python function):"),
    new_code_cell('''from q3ref.check import check_ids
text = "What is the capital of China?"
wrong = {
    "<|im_end|> as EOS": q_ids[:-1] + [151645],
    "double EOS": q_ids + [151643],
    "space after Query:": model.tokenizer.hf.encode(
        "Instruct: Given a web search query, retrieve relevant passages that answer the query\\nQuery: " + text,
        add_special_tokens=False).ids + [151643],
}
for name, ids in wrong.items():
    for what, fix in check_ids(model.tokenizer, text, ids, "query"):
        print(f"{name:>20}: {what}\\n{'':>22}fix: {fix}")'''),
    new_markdown_cell("## One decoder layer, tap by tap\n\n`trace` returns every intermediate under the names "
                      "`model.py` uses. Shapes: T tokens, D hidden, H/Hkv query/KV heads, Dh head dim, F MLP width."),
    new_code_cell('''taps = model.trace(q_ids)
for name, x in taps.items():
    if name.startswith("layers.0.") or "." not in name:
        print(f"{name:<26} {str(list(x.shape)):<14} max|x| {np.abs(x).max():8.4f}")'''),
    new_markdown_cell("## RoPE as a picture\n\nSplit-half RoPE: dimension j rotates with dimension j + Dh/2 by "
                      "angle position / theta^(2j/Dh). Low dimensions spin fast, high ones slowly."),
    new_code_cell('''from q3ref.kernels import rope_tables
cos, sin = rope_tables(np.arange(256), cfg.head_dim, cfg.rope_theta)
plt.figure(figsize=(8, 3.2))
plt.imshow(cos.T, aspect="auto", cmap="RdBu", interpolation="nearest")
plt.xlabel("position"); plt.ylabel("head dim"); plt.title(f"cos of RoPE angles, theta = {cfg.rope_theta:g}")
plt.colorbar(); plt.show()'''),
    new_markdown_cell("## An attention map\n\nRecomputed from the traced `q_rope` and `k_rope` of layer 0, head 0 "
                      "(GQA: query head h reads KV head h // (H/Hkv)); causal, so the upper triangle is empty."),
    new_code_cell('''q = taps["layers.0.q_rope"][:, 0]              # [T, Dh]
k = taps["layers.0.k_rope"][:, 0]              # [T, Dh], KV head 0 serves query head 0
s = q @ k.T / np.sqrt(cfg.head_dim)
s[np.triu_indices_from(s, 1)] = -np.inf
p = np.exp(s - s.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
plt.figure(figsize=(4.5, 4)); plt.imshow(p, cmap="viridis"); plt.title("layer 0, head 0")
plt.xlabel("key"); plt.ylabel("query"); plt.colorbar(); plt.show()'''),
    new_markdown_cell("## Last-token pooling and MRL\n\nThe embedding is the final-norm state of the **last real "
                      "token** (the EOS), L2-normalized. MRL keeps the first `dim` values and normalizes again."),
    new_code_cell('''print("pooled == norm[-1]:", np.array_equal(taps["pooled"], taps["norm"][-1]))
print("embedding norm:", np.linalg.norm(taps["embedding"]))
stress = q3ref.load(ROOT / "tests/fixtures/stress-checkpoint")   # D = 48, so MRL dim 32 exists
full = stress.encode_ids([[5, 6, 7, 8]])[0]
mrl = stress.encode_ids([[5, 6, 7, 8]], dim=32)[0]
print("MRL-32 norm:", np.linalg.norm(mrl), "| truncation alone would have norm", np.linalg.norm(full[:32]))'''),
    new_markdown_cell("## A similarity matrix\n\nThe model-card strings (meaningful only with the real weights)."),
    new_code_cell('''queries = ["What is the capital of China?", "Explain gravity"]
docs = ["The capital of China is Beijing.",
        "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects "
        "and is responsible for the movement of planets around the sun."]
sim = model.similarity(model.encode(queries, prompt_name="query"), model.encode(docs))
plt.figure(figsize=(4, 3)); plt.imshow(sim, vmin=0, vmax=1, cmap="magma")
for (i, j), v in np.ndenumerate(sim): plt.text(j, i, f"{v:.3f}", ha="center", color="white")
plt.xticks([0, 1], ["doc: Beijing", "doc: gravity"]); plt.yticks([0, 1], ["q: China", "q: gravity"]); plt.show()'''),
]

NB2 = [
    new_markdown_cell("# Diffing a LiteRT export\n\nInspect a graph, run `diff`, read its table and plot, localize a "
                      "defective graph, and compare left and right padding."),
    new_code_cell('''import pathlib
import numpy as np
import matplotlib.pyplot as plt
import q3ref

# The bundled graphs were exported from the bundled checkpoints, so this notebook uses those.
# With the real weights, point `model` at them and `g` at your own export.
ROOT = pathlib.Path.cwd() if (pathlib.Path.cwd() / "weights").is_dir() else pathlib.Path.cwd().parent
model = q3ref.load(ROOT / "weights/q3ref-tiny")
GRAPHS = ROOT / "tests/fixtures/graphs"

import io
from IPython.display import Image, display


def show(fig):  # q3ref's report.plot returns a matplotlib Figure made without pyplot
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    display(Image(buf.getvalue()))
stress = q3ref.load(ROOT / "tests/fixtures/stress-checkpoint")
from q3ref.formats import open_export
from q3ref.diff import diff
from q3ref.report import print_table, plot
from rich.console import Console
console = Console(width=120)'''),
    new_markdown_cell("## Inspect\n\nWhat the graph says about itself: precision, fixed seq_len, ops, quantized weights."),
    new_code_cell('''g = open_export(GRAPHS / "tiny_dynamic_int8.tflite")
d = g.describe()
{k: d[k] for k in ("precision", "seq_len", "layers", "hidden_size", "vocab_size", "fully_connected_weights", "embedding_table")}'''),
    new_code_cell('''print("config check:", g.check_config(model.cfg) or "agrees")'''),
    new_markdown_cell("## Diff a correct int8 graph\n\nGlobal error grows layer by layer; local error (each stage on the "
                      "graph's own inputs, against q3ref's simulation of int8) stays at the fp32 floor."),
    new_code_cell('''ids = model.tokenize("What is the capital of China?", prompt_name="query")[0]
report = diff(model, g, ids, quant="auto")
print_table(report, console)'''),
    new_code_cell('''show(plot(report))'''),
    new_markdown_cell("## A defective graph\n\nLayer 1's q_norm weight was replaced by ones before int8 export. The "
                      "output cosine would pass a 0.98 check; the diff names the stage."),
    new_code_cell('''bad = diff(stress, open_export(GRAPHS / "defect_q_norm_ones_1_int8.tflite"), list(range(11, 28)), quant="auto")
print_table(bad, console)'''),
    new_code_cell('''show(plot(bad))   # what `diff --plot errors.png` writes'''),
    new_markdown_cell("## Left vs right padding\n\nThe graph has a fixed seq_len; the same text padded on either side "
                      "must give the same embedding (the graph pools the last *real* token)."),
    new_code_cell('''for side in ("right", "left"):
    r = diff(stress, open_export(GRAPHS / "stress_fp32.tflite"), list(range(11, 28)), padding=side)
    print(f"{side:>5} padding: output cosine {r['output']['cos']:.7f}, first divergence {r['first_divergence']}")'''),
    new_markdown_cell("## The same checkpoint as ONNX\n\nThe diff does not ask which format it holds: the ONNX graphs "
                      "of the same stress checkpoint (torch's exporter, ONNX Runtime's quantizers) go through the same "
                      "`diff`. An ONNX graph returns hidden states, so pooling is the bridge's: the diff pools the last "
                      "real token and compares `pooled` and `embedding` too."),
    new_code_cell('''ONNX = ROOT / "tests/fixtures/onnx"
ids17 = list(range(11, 28))
for name in ("stress_fp32.tflite", "stress_dynamic_int8.tflite"):
    r = diff(stress, open_export(GRAPHS / name), ids17, quant="auto")
    print(f"LiteRT {name:<28} first divergence {r['first_divergence']}, output cosine {r['output']['cos']:.6f}")
for name in ("stress.onnx", "stress_int8.onnx", "stress_q4.onnx", "stress_fp16.onnx"):
    r = diff(stress, open_export(ONNX / name), ids17, quant="auto")
    print(f"ONNX   {name:<28} first divergence {r['first_divergence']}, output cosine {r['output']['cos']:.6f}")'''),
    new_markdown_cell("A defect planted before the ONNX export (layer 1's q_norm weight replaced by ones) is named in the "
                      "int8 graph too, against q3ref's simulation of ONNX Runtime's int8 (one activation scale per tensor)."),
    new_code_cell('''bad_onnx = diff(stress, open_export(ONNX / "defect_q_norm_ones_1_int8.onnx"), ids17, quant="auto")
print_table(bad_onnx, console)
show(plot(bad_onnx))'''),
]

NB3 = [
    new_markdown_cell("# Anatomy of int8 quantization\n\nPer-channel scales and outliers, fp16 headroom, error growth "
                      "of the simulations, and simulation against a real graph."),
    new_code_cell(SETUP + '''
from q3ref import model as M
from q3ref.quant import int8_per_channel, simulation, fp16_headroom
stress = q3ref.load(ROOT / "tests/fixtures/stress-checkpoint")'''),
    new_markdown_cell("## Per-channel int8 scales\n\n`scale = max|w| / 127` per output row; a row with one large "
                      "value gets a coarse grid for all its other values."),
    new_code_cell('''w = stress.weights["layers.0.mlp.down_proj.weight"]
q, scale, err = int8_per_channel(w)
ratio = np.abs(w).max(1) / np.abs(w).mean(1)
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
ax[0].plot(scale, "."); ax[0].set_title("layers.0.down_proj: scale per output channel")
ax[1].hist(ratio, 30); ax[1].set_title("max|w| / mean|w| per channel (outliers to the right)")
plt.show()
print("max abs rounding error", err, "| worst channel", int(np.argmax(ratio)))'''),
    new_markdown_cell("## fp16 headroom per layer\n\nmax |x| of each layer's output against fp16's 65504."),
    new_code_cell('''taps = stress.trace(list(range(1, 40)))
names = M.tap_names(stress.cfg)
h = fp16_headroom(taps, names)
outs = [r for r in h["taps"] if r["name"].endswith(".out")]
plt.figure(figsize=(6, 3)); plt.semilogy([r["max_abs"] for r in outs], "o-"); plt.axhline(65504, color="r", ls="--")
plt.xlabel("layer"); plt.ylabel("max |x|"); plt.title("residual stream vs the fp16 limit"); plt.show()
print("first tap that would overflow fp16:", h["first_overflow"])'''),
    new_markdown_cell("## Error growth: int8 vs weight-only int8 vs fp16\n\nEach simulation against the fp32 reference, layer by layer."),
    new_code_cell('''ids, ones = np.array([list(range(1, 40))]), np.ones((1, 39), bool)
ref = {}
M.embed(stress.weights, stress.cfg, ids, ones, taps=ref)
plt.figure(figsize=(6, 3.2))
for quant in ("int8", "int8-weight-only", "fp16"):
    w, K = simulation(stress.weights, "numba", quant, "xnnpack")
    t = {}
    M.embed(w, stress.cfg, ids, ones, kernels=K, taps=t)
    errs = [np.linalg.norm(t[f"layers.{i}.out"] - ref[f"layers.{i}.out"]) / np.linalg.norm(ref[f"layers.{i}.out"])
            for i in range(stress.cfg.num_hidden_layers)]
    plt.semilogy(np.maximum(errs, 1e-9), "o-", label=quant)
plt.xlabel("layer"); plt.ylabel("rel L2 vs fp32"); plt.legend(); plt.show()'''),
    new_markdown_cell("## int4 blocks against int8\n\nint4 needs widths that are multiples of the block, so this "
                      "uses the 128-wide test checkpoint. Block 32 keeps a scale per 32 inputs, block 128 one per 128."),
    new_code_cell('''wide = q3ref.load(ROOT / "tests/fixtures/int4-checkpoint")
ids4, ones4 = np.array([list(range(5, 45))]), np.ones((1, 40), bool)
ref4 = {}
M.embed(wide.weights, wide.cfg, ids4, ones4, taps=ref4)
plt.figure(figsize=(6, 3.2))
for quant in ("int8", "int4-block32", "int4-block128"):
    w, K = simulation(wide.weights, "numba", quant, "xnnpack")
    t = {}
    M.embed(w, wide.cfg, ids4, ones4, kernels=K, taps=t)
    names4 = ["embed"] + [f"layers.{i}.{s}" for i in range(wide.cfg.num_hidden_layers) for s in ("attn_residual", "out")]
    errs = [np.linalg.norm(t[n] - ref4[n]) / np.linalg.norm(ref4[n]) for n in names4]
    plt.semilogy(errs, "o-", label=quant)
plt.xticks(range(len(names4)), names4, rotation=30, fontsize=7)
plt.ylabel("rel L2 vs fp32"); plt.legend(); plt.tight_layout(); plt.show()'''),
    new_markdown_cell("## The error budget (quant-report)\n\nEach quantized matmul on the reference's own input: "
                      "the error its weight rounding adds, and what run-time activation rounding adds on top."),
    new_code_cell('''from q3ref.quant_report import quant_report
r = quant_report(stress, list(range(1, 40)), "int8")
m = r["matmuls"]
x = np.arange(len(m))
plt.figure(figsize=(9, 3))
plt.bar(x - 0.2, [e["weight_error"] for e in m], 0.4, label="weight rounding")
plt.bar(x + 0.2, [e["activation_error"] for e in m], 0.4, label="activation rounding")
plt.xticks(x, [f"{e['layer']}.{e['stage']}" for e in m], rotation=90, fontsize=7)
plt.ylabel("rel L2 added"); plt.legend(); plt.tight_layout(); plt.show()
worst = max(m, key=lambda e: e["activation_error"])
print(f"largest activation rounding: layers.{worst['layer']}.{worst['stage']}, input crest factor {worst['input_crest']:.1f}")'''),
    new_markdown_cell("## Simulation against the real graph\n\nThe int8 graph's deviation from fp32, and how much of "
                      "it q3ref's simulation explains, tap by tap (XNNPACK runtime)."),
    new_code_cell('''from q3ref.diff import diff
from q3ref.formats import open_export
r = diff(stress, open_export(ROOT / "tests/fixtures/graphs/stress_dynamic_int8.tflite"), list(range(1, 40)), quant="auto")
rows = [t for t in r["taps"] if t["rel_l2"] > 1e-4]
plt.figure(figsize=(9, 3))
plt.semilogy([t["rel_l2"] for t in rows], label="graph vs fp32 reference")
plt.semilogy([max(t["sim_rel_l2"], 1e-9) for t in rows], label="graph vs simulation")
plt.xlabel("tap (forward order)"); plt.legend(); plt.show()
print("share explained, worst tap:", min(t["explained"] for t in rows))'''),
]

NB4 = [
    new_markdown_cell("# Why llama.cpp's numbers differ: a GGUF, diffed\n\nThe committed GGUFs were written by "
                      "llama.cpp's own converter and quantizer from a small random checkpoint, and llama.cpp's runs of "
                      "them were recorded (`scripts/export_gguf.py`), so this notebook needs no llama.cpp: every diff "
                      "replays a recording. With llama-cpp-python installed, drop `replay` and llama.cpp runs live."),
    new_code_cell('''import io, pathlib
import numpy as np
import matplotlib.pyplot as plt
import q3ref
from IPython.display import Image, display
from rich.console import Console
from q3ref import model as M
from q3ref.diff import diff
from q3ref.formats import open_export
from q3ref.report import print_table, plot

ROOT = pathlib.Path.cwd() if (pathlib.Path.cwd() / "weights").is_dir() else pathlib.Path.cwd().parent
GGUF = ROOT / "tests/fixtures/gguf"
model = q3ref.load(ROOT / "tests/fixtures/gguf-checkpoint")  # D=256, 2 layers, a cut vocabulary
console = Console(width=120)


def show(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    display(Image(buf.getvalue()))


def replayed(name, run="0"):  # the file, with llama.cpp's recorded nodes as its graph side
    g = open_export(GGUF / f"{name}.gguf")
    g.replay(GGUF / f"taps_{name}.npz")
    return g, np.load(GGUF / f"taps_{name}.npz")[f"{run}/ids"]'''),
    new_markdown_cell("## What the file says about itself\n\n`check` reads the metadata bugs GGUF users meet "
                      "(pooling, EOS, add_eos); `inspect --weights` holds every quantized tensor byte for byte to "
                      "q3ref's own quantization of the checkpoint (llama-quantize's recipes)."),
    new_code_cell('''g = open_export(GGUF / "base-Q4_K_M.gguf")
for line in g.summary({**g.describe(), "quantized_weights": g.check_weights(model.weights, model.cfg)}):
    print(line)
for name, ok, figure, fix in g.bridge_checks(model.cfg):
    print("pass" if ok else "FAIL", name, "|", figure)'''),
    new_markdown_cell("## The diff: llama.cpp's nodes against the fp32 reference and the simulation\n\n"
                      "The expected computation is q3ref's simulation of llama.cpp's CPU backend for this file "
                      "(`formats/gguf/sim.py`, ggml-cpu's kernels in `ggml_cpu.py`): it lands on llama.cpp to the bit, "
                      "while the fp32 reference is off by the 4-bit weights."),
    new_code_cell('''g, ids = replayed("base-Q4_K_M")
r = diff(model, g, ids, quant="auto")
print_table(r, console)'''),
    new_code_cell('''rows = [t for t in r["taps"] if t.get("aligned")]
plt.figure(figsize=(9, 3))
plt.semilogy([t["rel_l2"] for t in rows], "o-", label="llama.cpp vs fp32 reference")
plt.semilogy([max(t["sim_rel_l2"], 1e-9) for t in rows], "s-", label="llama.cpp vs q3ref's simulation (1e-9: equal)")
plt.xticks(range(len(rows)), [t["name"] for t in rows], rotation=90, fontsize=6)
plt.legend(); plt.tight_layout(); plt.show()'''),
    new_markdown_cell("## A defect the output cosine hides\n\nLayer 1's q_norm weight replaced by ones before "
                      "conversion: the output cosine is what a 4-bit file shows anyway; the diff names the stage."),
    new_code_cell('''g, ids = replayed("defect_q_norm_ones_1-Q4_K_M")
bad = diff(model, g, ids, quant="auto")
print("output cosine", round(bad["output"]["cos"], 4), "| first divergence", bad["first_divergence"])
show(plot(bad))'''),
    new_markdown_cell("## llama.cpp's default run is not the tapped run\n\nTo copy every attention product out, the "
                      "tapped run turns flash attention off. llama.cpp's default (auto) turns it on for a CPU, and that "
                      "changes the numbers by about as much as Q8_0 does. Each recorded run also holds its output "
                      "with llama.cpp's defaults; q3ref simulates both runs (`ggml_cpu.flash_attn`)."),
    new_code_cell('''g = open_export(GGUF / "base-Q8_0.gguf")
z = np.load(GGUF / "out_base-Q8_0.npz")
from q3ref.formats.gguf.sim import simulate
tapped = simulate(model.weights, model.kernels, g.types())
default = simulate(model.weights, model.kernels, g.types(), flash=True)
rows = []
for run in sorted({k.split("/")[0] for k in z.files if "/" in k}, key=lambda r: len(z[f"{r}/ids"])):
    ids = z[f"{run}/ids"][None]
    ones = np.ones_like(ids, bool)
    off, on = (M.normalize(z[f"{run}/{k}"][None])[0] for k in ("pooled", "deployed"))
    ref = M.embed(model.weights, model.cfg, ids, ones, None, model.kernels)[0]
    sim_on = M.embed(*default[:1], model.cfg, ids, ones, None, default[1])[0]
    d = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
    rows.append((ids.shape[1], d(on, off), d(off, ref), d(on, sim_on)))
n, gap, quant, sim = map(np.array, zip(*rows))
plt.figure(figsize=(7, 3))
plt.semilogy(gap, "o", label="default run vs tapped run (flash attention on vs off)")
plt.semilogy(quant, "s", label="tapped run vs fp32 reference (the Q8_0 file)")
plt.semilogy(np.maximum(sim, 1e-9), "^", label="default run vs q3ref's simulation of it (1e-9: equal)")
plt.xticks(range(len(n)), n); plt.xlabel("tokens (64 and more: the tiled kernel)"); plt.legend(fontsize=7)
plt.tight_layout(); plt.show()'''),
    new_markdown_cell("## A reranker, scored as llama.cpp scores it\n\nA Qwen3-Reranker converted by llama.cpp has a rank "
                      "head (the LM head's yes and no rows) and rank pooling. `rerank --quant FILE.gguf --runtime llama.cpp` "
                      "scores a pair as llama-server's /rerank would, from text, without llama.cpp. P(yes) saturates for "
                      "this random reranker, so the scores are compared as log-odds."),
    new_code_cell('''RCKPT = ROOT / "tests/fixtures/gguf-reranker-checkpoint"
ref = q3ref.load(RCKPT)
sim = q3ref.Model(RCKPT, quant=str(GGUF / "rerank-Q8_0.gguf"), runtime="llama.cpp")
z = np.load(GGUF / "out_rerank-Q8_0.npz")
odds = lambda p: np.log(p) - np.log1p(-p)
got, mine, fp32 = [], [], []
for k in range(8):
    query, document = str(z["pairs"][k]).split("\\t")
    p_yes, p_no = z[f"pair{k}/deployed"].astype(float)
    got.append(np.log(p_yes) - np.log(p_no))
    mine.append(odds(sim.rerank(query, [document])[0]))
    fp32.append(odds(ref.rerank(query, [document])[0]))
got, mine, fp32 = map(np.array, (got, mine, fp32))
plt.figure(figsize=(6, 3))
plt.semilogy(np.abs(fp32 - got), "s", label="fp32 reference")
plt.semilogy(np.abs(mine - got), "x", label="q3ref, simulating the file")
plt.xlabel("pair"); plt.ylabel("|log-odds - llama.cpp's|"); plt.legend(); plt.tight_layout(); plt.show()
print("llama.cpp's log-odds:", got.round(3))'''),
]


def main():
    for name, cells in (("01_qwen3_embedding_walkthrough", NB1), ("02_diffing_a_litert_export", NB2),
                        ("03_quantization_anatomy", NB3), ("04_diffing_a_gguf", NB4)):
        for i, cell in enumerate(cells):
            cell.id = f"{name[:2]}-{i:02d}"  # nbformat draws random ids: fixed ones keep a rewrite byte-identical
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
        nbformat.write(nb, ROOT / f"notebooks/{name}.ipynb")
        print(f"wrote notebooks/{name}.ipynb")


if __name__ == "__main__":
    main()
