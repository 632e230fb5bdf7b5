"""Command line: python -m q3ref {embed, trace, make-checkpoint} ...

Errors are one line on stderr and exit status 2; outputs are written to a temporary name and
renamed, so a failed run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from .errors import Q3RefError
from .formats.gguf.sim import GGUF_TYPES
from .formats.taps import SCORING_OUTPUTS
from .quant import SIMULATIONS


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: one line, exit 2
        raise Q3RefError(f"{self.prog}: {message}")


def parse_ids(spec: str) -> list[int]:
    spec = spec.replace(" ", "")
    try:  # a trailing comma is forgiven; an empty item inside ("1,,2") may be a lost id
        ids = [int(t) for t in spec.removesuffix(",").split(",")] if spec not in ("", ",") else []
    except ValueError:
        raise Q3RefError(f"--ids takes comma-separated integers, got {spec!r}") from None
    if not ids:
        raise Q3RefError("--ids needs at least one token id")
    return ids


def add_model_args(p, kernels_flag="--kernels", quant=True, streaming=False):
    p.add_argument("--weights", metavar="DIR", help="checkpoint directory (config.json, model.safetensors, tokenizer.json)")
    p.add_argument(kernels_flag, dest="kernels", choices=["numba", "numpy"], default="numba",
                   help="q3ref's numba kernels (default) or their plain NumPy twins")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="compute precision (float64: the reference for the reference)")
    if streaming:  # a one-off of 2-3 forwards: paging in a resident fp32 copy costs more than re-upcasting
        p.add_argument("--resident", dest="streaming", action="store_false",
                       help="keep the upcast weights between forwards (default: upcast each layer's weights "
                            "while it runs, which was faster for a diff at 0.6B on this project's machines)")
    else:
        p.add_argument("--streaming", action="store_true",
                       help="upcast each layer's weights only while it runs (4B/8B in a few GB)")
    if quant:
        p.add_argument("--quant", dest="sim_quant", default="none", metavar="RECIPE",
                       help=f"compute as an export of that recipe would (simulation): LiteRT {', '.join(SIMULATIONS)}; "
                            f"GGUF (--runtime llama.cpp) {', '.join(GGUF_TYPES)} for every matrix, or a .gguf "
                            "file whose per-tensor types to take")
        p.add_argument("--runtime", choices=["xnnpack", "builtin", "llama.cpp"], default="xnnpack",
                       help="whose run-time arithmetic to simulate (llama.cpp: its CPU backend, AVX-512 build)")
        p.add_argument("--flash-attn", choices=["on", "off"],
                       help="with --runtime llama.cpp: its flash attention on (llama.cpp's default on a CPU) or "
                            "off (-fa off)")


def add_input_args(p, many):
    p.add_argument("text", nargs="*" if many else "?", help="input text" + ("s" if many else ""))
    p.add_argument("--ids", action="append" if many else "store", metavar="1,2,3",
                   help="token ids verbatim instead of text (no tokenizer needed)"
                   + ("; repeatable" if many else ""))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--query", action="store_true", help="prepend the default web-search query instruction")
    g.add_argument("--instruction", metavar="TASK", help="query with a custom task: 'Instruct: TASK\\nQuery:TEXT'")
    p.add_argument("--strip", action="store_true",
                   help="strip prompt + text of outer whitespace, as sentence-transformers up to 5.x did "
                        "(default: keep it, as sentence-transformers 6 and transformers do)")
    p.add_argument("--max-length", type=int, metavar="N", help="truncate to N tokens, keeping the EOS last")


def build_parser():
    parser = Parser(prog="q3ref", description="Transparent NumPy reference of Qwen3-Embedding.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("embed", help="embed texts or token ids")
    add_input_args(p, many=True)
    add_model_args(p)
    p.add_argument("--dim", type=int, metavar="N", help="MRL dimension (32..hidden): truncate, renormalize")
    p.add_argument("--json", action="store_true", help='print {"model", "dim", "input_ids", "embeddings"}')
    p.add_argument("--out", metavar="FILE.npy", help="also save the (N, dim) float32 array")
    p.add_argument("--batch-size", type=int, default=8)

    p = sub.add_parser("rerank", help="score documents against a query with a Qwen3-Reranker checkpoint (P(yes))")
    p.add_argument("query")
    p.add_argument("documents", nargs="+", metavar="DOC")
    p.add_argument("--instruction", metavar="TASK", help="the task (default: the web-search one)")
    p.add_argument("--weights", metavar="DIR", help="a Qwen3-Reranker checkpoint directory")
    p.add_argument("--max-length", type=int, metavar="N", help="the card's limit (default 8192 tokens per pair)")
    p.add_argument("--json", action="store_true", help='print {"model", "query", "scores", "input_ids"}')
    p.add_argument("--kernels", choices=["numba", "numpy"], default="numba")
    p.add_argument("--quant", dest="sim_quant", default="none", metavar="FILE.gguf|TYPE",
                   help="score as llama.cpp would with this GGUF's per-tensor types (or one ggml type for every "
                        "matrix): the scores llama-server's /rerank returns, without llama.cpp (needs --runtime llama.cpp)")
    p.add_argument("--runtime", choices=["llama.cpp"], help="whose arithmetic --quant simulates")
    p.add_argument("--flash-attn", choices=["on", "off"], help="llama.cpp's flash attention (default on, as its own)")

    p = sub.add_parser("trace", help="write every intermediate tensor (tap) of one input to .npz")
    add_input_args(p, many=False)
    add_model_args(p)
    p.add_argument("--dim", type=int, metavar="N", help="MRL dimension of the final 'embedding' tap")
    p.add_argument("--out", required=True, metavar="trace.npz")
    p.add_argument("--delta-rule", choices=["chunked", "recurrent"],
                   help="Qwen3.5: the GatedDeltaNet state update's form (default: chunked, transformers' prefill)")

    p = sub.add_parser("inspect", help="describe an exported model (.tflite, .onnx, .gguf) and check it against a checkpoint")
    p.add_argument("graph", metavar="MODEL")
    p.add_argument("--weights", metavar="DIR", help="checkpoint to check the graph against")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("diff", help="find the first layer and stage where an exported graph departs from q3ref")
    p.add_argument("graph", metavar="MODEL")
    add_input_args(p, many=False)
    add_model_args(p, kernels_flag="--ref-kernels", quant=False, streaming=True)
    p.add_argument("--quant", choices=["auto", "none"], default="auto",
                   help="auto: expect what q3ref's simulation of the graph's recipe computes; none: the fp32 "
                        "reference, with fixed per-precision limits at quantized stages")
    p.add_argument("--padding", choices=["left", "right"], default="right")
    p.add_argument("--kernels", dest="graph_kernels", choices=["xnnpack", "builtin", "ort", "llama.cpp", "recorded"],
                   default=None,
                   help="LiteRT: XNNPACK (taps as extra outputs, default) or builtin kernels (taps by "
                        "preserve_all_tensors); ONNX: ort (ONNX Runtime on CPU, the default); GGUF: llama.cpp "
                        "(llama-cpp-python), or recorded with --replay")
    p.add_argument("--document", metavar="DOC",
                   help="a reranker's export (a GGUF's rank score, an ONNX CausalLM's logits): the document of "
                        "the pair; the text is the query "
                        "(ids as the Qwen3-Reranker card builds them; --instruction sets its task)")
    p.add_argument("--replay", metavar="RUNS.npz",
                   help="GGUF: diff against a recording of llama.cpp's nodes (scripts/export_gguf.py) instead of "
                        "running llama.cpp; the input must be one of its runs")
    p.add_argument("--length", type=int, metavar="N",
                   help="pad to N positions a graph that takes any length (ONNX); default: no padding")
    p.add_argument("--truncate", action="store_true", help="cut inputs longer than the graph's seq_len")
    p.add_argument("--json", metavar="report.json", help="write the full report as JSON")
    p.add_argument("--plot", metavar="errors.png", help="write the error-growth plot")

    p = sub.add_parser("check-ids", help="name how a bridge's token ids differ from what the model expects")
    p.add_argument("--text", required=True, help="the text (with --document: the reranker pair's query)")
    p.add_argument("--ids", required=True, metavar="1,2,3", help="the ids your bridge produced for the text")
    p.add_argument("--document", metavar="DOC", help="a Qwen3-Reranker pair's document: the ids are checked against "
                                                     "the card's for (text, DOC); --instruction is the reranker's task")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--query", action="store_true")
    g.add_argument("--instruction", metavar="TASK")
    p.add_argument("--weights", metavar="DIR", help="a checkpoint with tokenizer.json (only the tokenizer is read)")
    p.add_argument("--strip", action="store_true",
                   help="strip prompt + text of outer whitespace, as sentence-transformers up to 5.x did "
                        "(default: keep it, as sentence-transformers 6 and transformers do)")

    p = sub.add_parser("check", help="run bridge checks (padding, mask, pooling, lengths, norm) against a graph")
    p.add_argument("graph", metavar="MODEL")
    p.add_argument("--weights", metavar="DIR", help="checkpoint whose config.json the graph should match "
                                                    "(a GGUF's metadata is checked without one)")

    p = sub.add_parser("check-embeddings", help="tell which bridge bug explains the vectors your stack produced")
    p.add_argument("vectors", metavar="vectors.npy", help="(texts, dim) array: .npy or JSON")
    p.add_argument("--texts", required=True, metavar="FILE", help="the texts, one per line (or a JSON list)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--query", action="store_true", help="the texts were embedded as queries (default instruction)")
    g.add_argument("--instruction", metavar="TASK", help="the texts were embedded as queries with this task")
    p.add_argument("--dim", type=int, metavar="N", help="the MRL dimension asked for (default: the vectors' width)")
    p.add_argument("--max-length", type=int, metavar="N", help="the truncation length used")
    p.add_argument("--strip", action="store_true",
                   help="the texts were stripped (prompt + text), as sentence-transformers up to 5.x did "
                        "(default: keep it, as sentence-transformers 6 and transformers do)")
    p.add_argument("--min-cosine", type=float, default=0.99,
                   help="cosine at which a hypothesis fits (default 0.99, loose enough for int8 exports)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_model_args(p, quant=False)

    p = sub.add_parser("quant-report", help="per layer: the error each quantized matmul adds (weights vs activations)")
    add_input_args(p, many=False)
    add_model_args(p, quant=False)
    p.add_argument("--quant", dest="sim_quant", choices=SIMULATIONS, default="int8", help="the recipe to budget")
    p.add_argument("--runtime", choices=["xnnpack", "builtin"], default="xnnpack")
    p.add_argument("--json", metavar="report.json", help="write every matmul's figures as JSON")
    p.add_argument("--plot", metavar="errors.png", help="write the error-by-layer plot")

    p = sub.add_parser("bench", help="time the forward pass against this machine's GEMM rate")
    p.add_argument("--weights", metavar="DIR")
    p.add_argument("--seq", type=int, default=512, help="tokens per sequence (random ids)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=2, help="forwards to run; the last is reported")
    p.add_argument("--kernels", choices=["numba", "numpy"], default="numba")
    p.add_argument("--streaming", action="store_true",
                   help="upcast each layer's weights only while it runs (4B/8B in a few GB)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("make-checkpoint", help="write a deterministic random checkpoint with real shapes")
    p.add_argument("--preset", required=True, help="tiny, 0.6b, 4b, 8b, or qwen3.5-0.8b (its text decoder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--tokenizer", metavar="FILE", help="tokenizer.json(.gz) to copy into the checkpoint")
    return parser


def inputs(args, model, many):
    """(labels, id lists) from positional texts and/or --ids."""
    texts = args.text if many else ([args.text] if args.text is not None else [])
    id_specs = (args.ids or []) if many else ([args.ids] if args.ids else [])
    if not texts and not id_specs:
        raise Q3RefError("give a text or --ids")
    if not many and texts and id_specs:
        raise Q3RefError("give either a text or --ids, not both")
    if id_specs and (args.query or args.instruction is not None):
        raise Q3RefError("--query/--instruction apply to text; --ids are used verbatim")
    if not texts and (args.strip or args.max_length is not None):
        raise Q3RefError("--strip/--max-length apply to text; --ids are used verbatim")
    prompt = "query" if args.query else None
    ids = model.tokenize(texts, prompt, args.instruction, args.max_length, args.strip) if texts else []
    ids += [parse_ids(s) for s in id_specs]
    labels = list(texts) + [f"ids[{len(parse_ids(s))}]" for s in id_specs]
    return labels, ids


def check_output(path) -> Path:
    """An output file's path must be writable as a file: its directory exists, and it is not
    itself a directory. Checked before the run as well as at the save, so that a long run does
    not end in an error it could have given at the start."""
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise Q3RefError(f"output directory {path.parent} does not exist")
    if path.is_dir():
        raise Q3RefError(f"{path} is a directory; give a file name to write to")
    return path


def check_outputs(args):
    """Every output file option of this command (--out, and --json/--plot where they take a
    file); make-checkpoint's --out is a directory, checked where it is made."""
    for opt in ("out", "json", "plot"):
        value = getattr(args, opt, None)
        if isinstance(value, str) and args.command != "make-checkpoint":
            check_output(value)
    if isinstance(getattr(args, "plot", None), str):  # a format matplotlib cannot write: say so before the work
        from matplotlib.backend_bases import FigureCanvasBase

        fmt, known = Path(args.plot).suffix.lstrip(".").lower() or "png", FigureCanvasBase.get_supported_filetypes()
        if fmt not in known:
            raise Q3RefError(f"--plot {args.plot}: matplotlib cannot write .{fmt}; use one of {', '.join(sorted(known))}")


def atomic_save(path, save):
    """save(file object) into path.partial, then rename: no half-written output on failure."""
    path = check_output(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as f:
            save(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_report(args, report, plot):
    """--json and --plot of diff and quant-report, each written whole or not at all."""
    if args.json:
        atomic_save(args.json, lambda f: f.write(json.dumps(report, indent=2).encode()))
    if args.plot:
        atomic_save(args.plot, lambda f: plot(report, f, Path(args.plot).suffix.lstrip(".") or "png"))


def load_model(args):
    from .api import load

    runtime, flash = getattr(args, "runtime", "xnnpack"), getattr(args, "flash_attn", None)
    if flash and runtime != "llama.cpp":
        raise Q3RefError(f"--flash-attn is llama.cpp's switch; it takes --runtime llama.cpp, not {runtime}")
    return load(args.weights, dtype=args.dtype, kernels=args.kernels, resident=not args.streaming,
                quant=getattr(args, "sim_quant", "none"), runtime=getattr(args, "runtime", "xnnpack"),
                flash_attn=flash != "off")


def random_note(model):
    """Said after a successful run, so an error stays a single line."""
    if model.is_random:
        what, real = (("scores", "Qwen3-Reranker weights for real scores") if model.kind == "reranker"
                      else ("vectors", "Qwen3-Embedding weights for real embeddings"))
        print(f"note: {model.path} is a random test checkpoint; its {what} are meaningless (use the real {real})",
              file=sys.stderr)


def cmd_embed(args):
    model = load_model(args)
    labels, ids = inputs(args, model, many=True)
    vecs = model.encode_ids(ids, dim=args.dim, batch_size=args.batch_size)  # [N, dim]
    if args.out:
        atomic_save(args.out, lambda f: np.save(f, vecs))
    if args.json:
        print(json.dumps({"model": str(model.path), "dim": int(vecs.shape[1]),
                          "input_ids": [list(map(int, s)) for s in ids],
                          "embeddings": vecs.tolist()}))
        random_note(model)
        return 0
    for i, (label, v) in enumerate(zip(labels, vecs)):
        head = ", ".join(f"{x:+.4f}" for x in v[:4])
        tail = ", ".join(f"{x:+.4f}" for x in v[-2:])
        print(f"[{i}] {len(ids[i])} tokens, dim {v.size}: [{head}, ..., {tail}]  {label[:60]!r}")
    if len(vecs) > 1:
        sim = model.similarity(vecs, vecs)
        print("cosine similarity:")
        for i, row in enumerate(sim):
            print(f"[{i}] " + " ".join(f"{x:7.4f}" for x in row))
    random_note(model)
    return 0


def cmd_rerank(args):
    from .api import load

    if (args.sim_quant != "none") != (args.runtime == "llama.cpp"):
        raise Q3RefError("rerank simulates a runtime with --quant FILE.gguf|TYPE and --runtime llama.cpp, both or neither")
    if args.flash_attn and args.runtime != "llama.cpp":
        raise Q3RefError("--flash-attn is llama.cpp's switch; it takes --runtime llama.cpp")
    model = load(args.weights, kernels=args.kernels, quant=args.sim_quant, runtime=args.runtime or "xnnpack",
                 flash_attn=args.flash_attn != "off")
    scores = model.rerank(args.query, args.documents, args.instruction, args.max_length)
    if args.json:
        ids = [model.rerank_ids(args.query, d, args.instruction, args.max_length) for d in args.documents]
        print(json.dumps({"model": str(model.path), "query": args.query, "scores": scores.tolist(), "input_ids": ids}))
    else:
        for i, (d, s) in enumerate(zip(args.documents, scores)):
            print(f"[{i}] {s:.6f}  {d[:70]!r}")
    random_note(model)
    return 0


def trace_qwen35(args, path):
    """trace on a Qwen3.5 checkpoint (q3ref/qwen35): token ids only, every tap plus logits."""
    from .qwen35.config import Qwen35Config
    from .qwen35.model import forward
    from .qwen35.weights import Qwen35Weights

    if not args.ids:
        raise Q3RefError("a Qwen3.5 checkpoint is traced from token ids (--ids); its tokenizer is not read yet")
    unused = [flag for flag, given in (("--quant", args.sim_quant != "none"), ("--flash-attn", args.flash_attn),
                                       ("--dim", args.dim is not None), ("--dtype float64", args.dtype != "float32"))
              if given]
    if unused:  # taken silently, they would promise numbers this trace does not compute
        raise Q3RefError(f"{', '.join(unused)}: not used by the trace of a Qwen3.5 checkpoint (fp32 reference, every tap)")
    args.delta_rule = args.delta_rule or "chunked"
    cfg = Qwen35Config.from_json(path / "config.json")
    weights = Qwen35Weights(path, cfg)
    ids = parse_ids(args.ids)
    bad = [i for i in ids if not 0 <= i < cfg.vocab_size]
    if bad:
        raise Q3RefError(f"token id {bad[0]} is outside the vocabulary (0..{cfg.vocab_size - 1})")
    taps = {}
    forward(weights, cfg, ids, taps, form=args.delta_rule, kernels=args.kernels)
    taps["input_ids"] = np.asarray(ids)
    atomic_save(args.out, lambda f: np.savez(f, **taps))
    print(f"wrote {len(taps) - 1} taps of {len(ids)} tokens to {args.out} (Qwen3.5, {args.delta_rule} delta rule"
          + (f"; {weights.skipped} vision tensors not read" if weights.skipped else "") + ")")
    return 0


def cmd_trace(args):
    from .api import find_weights
    from .qwen35.config import is_qwen35

    path = find_weights(args.weights)
    if path.is_dir() and (path / "config.json").is_file() and is_qwen35(path / "config.json"):
        return trace_qwen35(args, path)
    if args.delta_rule:
        raise Q3RefError("--delta-rule is Qwen3.5's (its GatedDeltaNet layers); a Qwen3 checkpoint has none")
    model = load_model(args)
    _, ids = inputs(args, model, many=False)
    taps = model.trace(ids[0], dim=args.dim)
    atomic_save(args.out, lambda f: np.savez(f, **taps))
    n = len(ids[0])
    print(f"wrote {len(taps) - 1} taps of {n} tokens to {args.out}")
    for name in ("embed", f"layers.{model.cfg.num_hidden_layers - 1}.out", "norm", "embedding"):
        x = taps[name]
        print(f"  {name:<24} {str(list(x.shape)):<16} max|x| {np.abs(x).max():.4g}")
    from .model import tap_names
    from .quant import fp16_headroom

    h = fp16_headroom(taps, tap_names(model.cfg))
    print(f"fp16 headroom: tightest at {h['tightest']} (max|x| fits {h['min_headroom']:.3g} times under 65504); "
          + (f"first tap that would overflow fp16: {h['first_overflow']}" if h["first_overflow"] else "no tap would overflow fp16"))
    random_note(model)
    return 0


def cmd_inspect(args):
    from .formats import open_export
    from .qwen35.litert import describe_lm, is_lm_graph

    if is_lm_graph(Path(args.graph)):
        d = describe_lm(Path(args.graph))
        print(json.dumps(d, indent=2) if args.json else "\n".join(d["lines"]))
        return 0
    g = open_export(args.graph)
    d = g.describe()
    if args.weights:
        from .api import load

        model = load(args.weights)
        d["config_check"] = g.check_config(model.cfg)
        if not d["config_check"]:
            d["quantized_weights"] = g.check_weights(model.weights, model.cfg)
    print(json.dumps(d, indent=2, default=str) if args.json else "\n".join(g.summary(d)))
    # with --weights, a gate: 1 when the file is not this checkpoint's, or its weights are not its recipe's
    differs = d.get("config_check") or not all(r["equal"] for r in d.get("quantized_weights") or [])
    return 1 if differs else 0


def qwen35_checkpoint(weights):
    """The checkpoint directory when --weights is a Qwen3.5 one (its own diff and inspect), else None."""
    from .api import find_weights
    from .qwen35.config import is_qwen35

    path = find_weights(weights)
    return path if path.is_dir() and (path / "config.json").is_file() and is_qwen35(path / "config.json") else None


def diff_qwen35(args, ckpt):
    """diff of a Qwen3.5 LiteRT export (q3ref/qwen35/litert.py): its states, step by step."""
    from .qwen35.litert import diff

    if args.text or not args.ids:
        raise Q3RefError("a Qwen3.5 graph is diffed from token ids (--ids); its tokenizer is not read yet")
    # Its prefill pads the way LiteRT-LM does and its kernels are the stock interpreter's plus
    # q3ref's gated_delta_update: these options have nothing to change there, so they are refused.
    unused = [flag for flag, given in (("--padding", args.padding != "right"), ("--length", args.length is not None),
                                       ("--truncate", args.truncate), ("--kernels", args.graph_kernels is not None),
                                       ("--replay", args.replay is not None), ("--plot", args.plot is not None))
              if given]
    if unused:
        raise Q3RefError(f"{', '.join(unused)}: not used by the diff of a Qwen3.5 graph")
    report = diff(Path(args.graph), ckpt, parse_ids(args.ids))
    if args.json:
        atomic_save(args.json, lambda f: f.write(json.dumps(report, indent=2).encode()))
    print(f"{report['source']}: Qwen3.5, {report['precision']}; {report['prompt_tokens']} tokens through "
          f"{report['prefill']} (pad id {report['pad_token']}), the last through decode; compared with "
          f"{report['compared_with']}, allowed {report['tolerance']:g} of max |ref|")
    print(f"runtime: {report['runtime']}")
    probe = report["runtime_kernels"]
    print(f"runtime kernels, probed: {probe['runtime']} on {probe['cpu']}: {probe['variant']} ({', '.join(probe['ops'])}), "
          f"which the simulation {'emulates' if probe['emulated'] else 'does not emulate'}"
          + (f"; {', '.join(probe['differ_unused'])} differ, which this graph does not run" if probe.get("differ_unused") else ""))
    fp32 = any("rel_err_fp32" in r for r in report["taps"])
    print(f"{'step':<8} {'tap':<28} {'err/max':>9}" + (f" {'vs fp32':>9}" if fp32 else ""))
    for r in report["taps"]:
        print(f"{r['step']:<8} {r['name']:<28} {r['rel_err']:>9.2e}" + (f" {r['rel_err_fp32']:>9.2e}" if fp32 else "")
              + ("" if r["ok"] else "  <-"))
    first = report["first_divergence"]
    print("no divergence" if first is None else
          f"first divergence: {first['step']} {first['name']} (layer {first['layer']}, stage {first['stage']}): "
          f"{first['rel_err']:.3g} of max |ref|")
    return 1 if first else 0


@contextlib.contextmanager
def progress_bar(*columns):
    """A rich progress bar when stderr is a terminal; None otherwise, so that a pipe or a log
    gets no control characters and an error stays one line (rich's stop writes a newline)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        yield bar


def cmd_diff(args):
    from rich.console import Console

    from .diff import diff
    from .formats import open_export
    from .report import plot, print_table

    if not Path(args.graph).exists():  # before the weights are looked for: a mistyped path is the first thing to say
        raise Q3RefError(f"{args.graph}: cannot read (No such file or directory)")
    ckpt = qwen35_checkpoint(args.weights)
    if ckpt is not None:
        return diff_qwen35(args, ckpt)
    g = open_export(args.graph)
    if args.replay:
        if not hasattr(g, "replay"):
            raise Q3RefError(f"--replay: only a GGUF diff replays a recording; {args.graph} is {g.format}")
        g.replay(args.replay)
    model = load_model(args)
    if g.output_tap in SCORING_OUTPUTS and args.text is not None:  # a reranker's export: a pair, as the card builds it
        if args.document is None:
            raise Q3RefError(f"{args.graph} scores (query, document) pairs: give the query as the text and "
                             "--document DOC, or --ids")
        ids = [model.rerank_ids(args.text, args.document, args.instruction, args.max_length)]
    elif args.document is not None:
        raise Q3RefError(f"--document: {args.graph} is not a reranker's export; it embeds one text")
    else:
        _, ids = inputs(args, model, many=False)
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    with progress_bar(TextColumn("{task.description:<34}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn()) as bar:
        tasks = {}

        def progress(phase, done, total):
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        report = diff(model, g, ids[0], args.padding, args.graph_kernels, args.truncate, bar and progress,
                      args.quant, args.length)
    save_report(args, report, plot)
    print_table(report, Console(width=max(Console().width, 120)))
    random_note(model)
    return 1 if report["first_divergence"] else 0


def cmd_check_ids(args):
    from .api import find_weights
    from .check import check_ids, check_rerank_ids
    from .tokenizer import Tokenizer, find_tokenizer_file

    path = find_weights(args.weights)
    tok_file = find_tokenizer_file(path)
    if tok_file is None:
        raise Q3RefError(f"{path} has no tokenizer.json; check-ids needs the model's tokenizer")
    tok = Tokenizer(tok_file)
    if args.document is not None:
        if args.query or args.strip:
            raise Q3RefError("--document checks a reranker pair: --query and --strip are the embedder's")
        findings = check_rerank_ids(tok, args.text, args.document, parse_ids(args.ids), args.instruction)
    else:
        findings = check_ids(tok, args.text, parse_ids(args.ids), "query" if args.query else None, args.instruction,
                             strip=args.strip)
    if not findings:
        print("ok: the ids are exactly what the model expects")
        return 0
    for what, fix in findings:
        print(f"FAIL {what}\n     fix: {fix}")
    return 1


def cmd_check(args):
    from .api import find_weights, load
    from .check import check_graph
    from .config import Config
    from .formats import open_export

    g = open_export(args.graph)
    cfg = (Config.from_json(find_weights(args.weights) / "config.json")
           if args.weights or not g.bridge_checks() else None)  # a GGUF's metadata checks need no checkpoint
    # the checkpoint's kind: a reranker converted as a plain LM says nothing of it in its metadata
    kind = load(args.weights, resident=False).kind if args.weights and g.bridge_checks() else None
    results = check_graph(g, cfg, kind=kind)
    for name, ok, figure, fix in results:
        print(f"{'pass' if ok else 'FAIL'}  {name}: {figure}" + ("" if ok else f"\n      fix: {fix}"))
    failed = sum(not ok for _, ok, _, _ in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_check_embeddings(args):
    from .check_embeddings import DIRECTIONS, EXPECTED, candidates, judge, load_vectors, load_texts

    vectors, texts = load_vectors(args.vectors), load_texts(args.texts)
    if len(texts) != len(vectors):
        raise Q3RefError(f"{len(vectors)} vectors but {len(texts)} texts; give one text per vector, in order")
    if not 0 < args.min_cosine < 1:
        raise Q3RefError("--min-cosine must be between 0 and 1")
    model = load_model(args)
    d = vectors.shape[1]
    if args.dim is not None and args.dim != d:
        raise Q3RefError(f"--dim {args.dim} but the vectors have {d} values each")
    if d > model.cfg.hidden_size:
        raise Q3RefError(f"the vectors have {d} values, more than this model's hidden size {model.cfg.hidden_size}")
    cands = candidates(model, texts, "query" if args.query else None, args.instruction, args.max_length, args.strip)
    r = judge(vectors, cands, args.min_cosine)
    if args.json:
        finite = lambda x: None if isinstance(x, float) and not np.isfinite(x) else x  # noqa: E731
        print(json.dumps({k: ([finite(x) for x in v] if isinstance(v, list) else
                              {n: finite(x) for n, x in v.items()} if isinstance(v, dict) else v)
                          for k, v in r.items()}, indent=2))
    else:
        print(f"check-embeddings: {r['n']} vectors of dim {d} against {model.path} "
              f"(expected: {EXPECTED} pooled, unit length)")
        names = list(r["scores"])
        print("mean cosine per hypothesis: " + ", ".join(f"{n} {r['scores'][n]:.4f}" for n in names))
        print(f"{'#':>3}  {'cos(expected)':>13}  {'norm':>7}  {'best fit':<18}  text")
        for i, t in enumerate(texts):
            print(f"{i:>3}  {r['cosine_expected'][i]:13.5f}  {r['norms'][i]:7.4f}  {r['per_text_best'][i]:<18}  {t[:50]!r}")
        if not r["findings"]:
            print(f"ok: the vectors are {DIRECTIONS[EXPECTED][0]} and unit length "
                  f"(cosine >= {min(r['cosine_expected']):.5f} to q3ref)")
        for what, fix in r["findings"]:
            print(f"FAIL {what}\n     fix: {fix}")
    random_note(model)
    return 1 if r["findings"] else 0


def cmd_quant_report(args):
    from rich.console import Console

    from .api import load
    from .quant_report import plot, print_report, quant_report

    model = load(args.weights, dtype=args.dtype, kernels=args.kernels, resident=not args.streaming)
    _, ids = inputs(args, model, many=False)
    r = quant_report(model, ids[0], args.sim_quant, args.runtime)
    save_report(args, r, plot)
    print_report(r, Console(width=max(Console().width, 110)))
    random_note(model)
    return 0


def cmd_make_checkpoint(args):
    from .checkpoint import make_checkpoint, preset_config
    from .qwen35 import checkpoint as qwen35

    if args.preset in qwen35.PRESETS:
        if args.tokenizer:
            raise Q3RefError("a Qwen3.5 checkpoint is made without a tokenizer (q3ref reads Qwen3.5 from token ids)")
        from .qwen35.config import Qwen35Config

        cfg = Qwen35Config.from_dict(qwen35.PRESETS[args.preset])
        out = qwen35.make_checkpoint(args.out, cfg, args.seed, preset=args.preset)
        print(f"wrote random {args.preset} text checkpoint (seed {args.seed}) to {out}")
        return 0
    cfg = preset_config(args.preset)
    if args.tokenizer and not Path(args.tokenizer).is_file():
        raise Q3RefError(f"tokenizer file {args.tokenizer} does not exist")
    if args.tokenizer:  # before anything is written: a file the tokenizers library cannot read is one line
        from .tokenizer import load_hf

        load_hf(Path(args.tokenizer))
    out = make_checkpoint(args.out, cfg, args.seed, args.tokenizer, preset=args.preset)
    print(f"wrote random {args.preset} checkpoint (seed {args.seed}) to {out}")
    return 0


def cmd_bench(args):
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from . import bench
    from .api import load

    if args.seq < 1 or args.batch < 1 or args.runs < 1:
        raise Q3RefError("--seq, --batch and --runs must be positive")
    model = load(args.weights, kernels=args.kernels, resident=not args.streaming)
    with progress_bar(TextColumn("{task.description}"), BarColumn(), TextColumn("layer {task.completed}/{task.total}"),
                      TimeElapsedColumn()) as bar:
        def factory(label, total):
            task = bar.add_task(label, total=total)
            return lambda done: bar.update(task, completed=done)
        r = bench.run(model, args.seq, args.batch, args.runs, bar and factory)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"q3ref bench: {r['weights']}, {r['batch']} x {r['seq']} tokens, {r['mode']} weights, "
          f"{r['kernels']} kernels")
    t = Table()
    t.add_column("figure")
    t.add_column("value", justify="right")
    rows = [("forward (warm)", f"{r['forward_s']:.2f} s"), ("first forward", f"{r['first_run_s']:.2f} s"),
            ("tokens/s", f"{r['tokens_per_s']:.0f}"), ("work", f"{r['gflop']:.0f} GFLOP"),
            ("achieved", f"{r['achieved_gflops']:.1f} GFLOP/s"),
            ("NumPy GEMM, same run", f"{r['gemm_gflops']:.1f} GFLOP/s (before {r['gemm_before_gflops']:.0f}, "
                                     f"after {r['gemm_after_gflops']:.0f})"),
            ("achieved / GEMM", f"{r['ratio_to_gemm']:.0%}"), ("peak RSS", f"{r['peak_rss_gb']:.2f} GB"),
            ("kernel compile/load", f"{r['kernel_load_s']:.2f} s")]
    rows += [(f"  {stage}", f"{sec:.2f} s ({sec / r['forward_s']:.0%})") for stage, sec in r["stages_s"].items()]
    for row in rows:
        t.add_row(*row)
    Console().print(t)
    if r["gemm_spread"] > bench.SPREAD_NOTE:
        print(f"note: the GEMM rate moved by {r['gemm_spread']:.0%} across the timed forward (a shared or "
              "throttled machine); the ratio is uncertain by about as much")
    return 0


COMMANDS = {"embed": cmd_embed, "trace": cmd_trace, "inspect": cmd_inspect, "diff": cmd_diff, "bench": cmd_bench,
            "rerank": cmd_rerank, "check-ids": cmd_check_ids, "check": cmd_check, "check-embeddings": cmd_check_embeddings,
            "quant-report": cmd_quant_report,
            "make-checkpoint": cmd_make_checkpoint}


def parse(argv=None):
    """argparse binds an optional positional as soon as it meets the first positional run, so in
    `diff MODEL --weights W "text"` the text, after an option, was left over as an unrecognized
    argument. Words left over that are not options go to the command's text here."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "text") and not any(e.startswith("-") for e in extra):
        if isinstance(args.text, list):  # embed: any number of texts
            return argparse.Namespace(**{**vars(args), "text": args.text + extra})
        if args.text is None and len(extra) == 1:
            return argparse.Namespace(**{**vars(args), "text": extra[0]})
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv=None):
    try:
        args = parse(argv)
        check_outputs(args)
        return COMMANDS[args.command](args)
    except Q3RefError as e:
        print(f"q3ref: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("q3ref: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
