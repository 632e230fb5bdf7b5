"""ONNX graphs as torch's TorchScript exporter writes transformers' Qwen3Model (the onnx-community
layout, scripts/export_onnx.py), and their ONNX Runtime quantizations (int8/uint8 dynamic,
MatMulNBits q4/q8 with or without zero points and accuracy_level 4, MatMulBnb4, fp16, q4f16).

graph.py reads the protobuf (external data left on disk), align.py finds each tap by the
exporter's module names and wiring (align_genai.py: onnxruntime-genai's builder's), run.py runs
ONNX Runtime with the taps as extra outputs, sim.py computes what ORT computes for each recipe,
probe.py finds which MatMulNBits product this CPU's ORT runs.
The graph returns last_hidden_state: pooling and normalization are the bridge's (output_tap "norm").
A reranker's CausalLM export returns logits over the vocabulary at every position (output_tap
"logits"): the last token's yes and no columns and their softmax are the bridge's.
"""

from __future__ import annotations

from ..taps import GraphExport, place_fixed
from .align import align
from .graph import Graph
from .run import run

# Local relative L2 error a stage that reads quantized weights may add, against the fp32
# reference. Measured on the committed stress graphs: int8/uint8 <= 2.0e-2 (per-tensor
# activation scales), q4 <= 0.12 (4-bit weights; with zero points 0.11, genai int4 0.10), q8 <= 1.1e-2,
# fp16 <= 1.2e-3; planted defects add >= 0.1. (--quant none: the simulation holds every stage to 1e-4.)
LOCAL_LIMIT = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2, "uint8": 5e-2, "q4": 0.3, "q4f16": 0.3, "bnb4": 0.3,
               "q8": 5e-2, "q8f16": 5e-2, "q2": 1.0, "q2f16": 1.0, "qmixed": 1.0, "qmixedf16": 1.0}
FP16_SIM_LIMIT = 2e-3
QUANTIZED_STAGES = {"q", "k", "v", "o_proj", "gate", "up", "down", "logits"}  # MatMul outputs (logits: a reranker's LM head)
SIMULATED = ("int8", "uint8", "q2", "q4", "q8", "bnb4", "q2f16", "q4f16", "q8f16", "fp16")  # not "qmixed": two kinds
FP16_STAGES = {"embed", "input_norm", "q_norm", "k_norm", "q_rope", "k_rope", "attn", "attn_residual",
               "post_norm", "act", "out", "norm", "pooled", "embedding"}  # fp16 graphs run these in fp16 too


def match(head: bytes) -> bool:
    """A ModelProto starts with field 1 (ir_version, varint: 0x08) and names its producer early;
    protobuf has no magic, so ask for both and for onnx's own parse in open()."""
    return len(head) > 2 and head[0] == 0x08 and (b"pytorch" in head or b"onnx" in head or b"\x12" in head[:4])


def open(path):  # noqa: A001  (the face's verb)
    return Export(path)


class Export(GraphExport):
    format = "onnx"
    runtimes = ("ort",)
    output_tap = "norm"
    def __init__(self, path):
        self.graph = Graph(path)
        self.path = self.graph.path
        # None: any length, the bridge pads to its batch's longest; a static-shape export fixes it
        self.seq_len = self.graph.seq_len()
        self.precision = self.graph.precision()
        self.output = self.graph.output
        if self.graph.lm_head() is not None:
            self.output_tap = "logits"  # a reranker's CausalLM: [batch, seq, vocab]
        # what ONNX Runtime computes for each precision: sim.py
        nbits = "; ".join(sorted(str(nb) for nb in self.graph.nbits()))
        self.simulation = (f"ONNX Runtime {self.precision}" + (f" ({nbits})" if nbits else "")
                           if self.precision in SIMULATED or self.precision == "fp32" and self.graph.unfused_float_ops()
                           else None)  # fp32: MLAS' products and float ops (mlas.py), in torch's unfused graphs

    def summary(self, d):
        from ..taps import config_line, io_lines, table_and_ops, weight_lines

        lines = [f"{d['graph']}: {d['size_mb']} MB, precision {d['precision']}, opset {d['opset']}, "
                 f"{d['producer'] or 'no producer'}, {d['layers']} layers, hidden {d['hidden_size']}, vocab {d['vocab_size']}"
                 + (f", seq_len {d['seq_len']} (static shapes: inputs are padded to it)" if d["seq_len"] else "")]
        lines += [f"  {nb}" for nb in d["matmul_nbits"]]
        if d["gather_blocks"]:
            block, symmetric = d["gather_blocks"]
            lines.append(f"  embedding table: GatherBlockQuantized, 4-bit, blocks of {block}, "
                         + ("symmetric" if symmetric else "zero points")
                         + (" (the tied LM head's MatMulNBits weight)" if self.graph.gather_shares_lm_head() else ""))
        if d["precision"].startswith("qmixed"):
            lines.append("  MatMulNBits of more than one kind: diff compares with the fp32 reference, not a simulation")
        lines += io_lines(d) + table_and_ops(d, most=12)
        return lines + config_line(d) + weight_lines(d, "ONNX Runtime's quantizers and onnxconverter-common's fp16, as weights.py computes them")

    def align(self, cfg):
        return align(self.graph, cfg)

    def float_tensors(self):
        return self.graph.float_activations()

    def run(self, input_ids, mask, tensors=(), runtime="ort"):
        return run(self.graph, input_ids, mask, tensors)

    def tensor_name(self, t):
        return t

    def limits(self, simulated=False):
        """Local error allowed per stage. An fp16 or q4f16 graph's simulation rounds where ONNX
        Runtime rounds, but the diff forces some stages with a value ORT had in fp32 as well as in
        fp16, and ORT's MLAS sums in its own order: FP16_SIM_LIMIT at every stage (measured
        <= 4.2e-4 on the stress graphs). Unsimulated: fp16's limit at every stage of those
        graphs, and the precision's limit where quantized weights are read."""
        fp16 = self.graph.fp16()
        if simulated:
            return {stage: FP16_SIM_LIMIT for stage in QUANTIZED_STAGES | FP16_STAGES} if fp16 else {}
        limits = {stage: LOCAL_LIMIT["fp16"] for stage in QUANTIZED_STAGES | FP16_STAGES} if fp16 else {}
        limits.update({stage: LOCAL_LIMIT.get(self.precision, 1.0) for stage in QUANTIZED_STAGES})  # (an unknown bit width: 1)
        if self.graph.embedding_quantized():
            limits["embed"] = LOCAL_LIMIT["int8"]
        if self.graph.gather_blocks():
            limits["embed"] = LOCAL_LIMIT["q4"]
        return limits

    def read_by(self, runtime):
        return "extra graph outputs, ONNX Runtime on CPU with graph optimizations off"

    def untapped(self, input_ids, mask, runtime):
        """The untouched file with ONNX Runtime's default optimizations (ORT_ENABLE_ALL): fusions
        such as SimplifiedLayerNormalization and DynamicQuantizeMatMul change the numerics, and
        ORT skips them where a tap makes an intermediate an output."""
        out = run(self.graph, input_ids, mask, (), optimize=True)[self.output]
        return "ONNX Runtime on CPU, default graph optimizations, no extra outputs", out

    def simulate_untapped(self, simulated):
        """simulate()'s (weights, kernels) -> the simulation of untapped()'s run, ONNX Runtime's
        default optimizations: its RMSNorms as that run computes them (run.app_fusions: fused
        into mlas.simplified_layer_norm, or divided), the rest as the tapped run's. None where
        that run is not emulated: a fusion q3ref does not know, a fused op the probe finds
        differing, rows not of whole 8-lane vectors, an fp16 or fused graph, a reranker, fp32
        (its app's run is emulated too, and measured 0 from it, but not worth its cost here)."""
        from . import mlas
        from .probe import fused_ops
        from .run import app_fusions
        from .sim import ort_rms_norm_divided

        weights, K = simulated
        widths = {weights[n].shape[-1] for n in ("norm.weight", "layers.0.self_attn.q_norm.weight")}  # D, Dh
        if self.float_ops() is None or self.graph.fp16() or not fused_ops()["emulated"] or any(w % 8 for w in widths):
            return None
        if self.graph.lm_head() is not None:
            return None  # a reranker's: the app's run is compared over every row's logits, q3ref's head gives two
        if self.precision == "fp32":
            return None  # its app's run is ~1e-6 from the tapped one (0.6B), and a simulated fp32 forward costs 4 s there
        norms = app_fusions(self.graph)
        if norms is None:
            return None
        kernel = {"fused": mlas.simplified_layer_norm, "divided": ort_rms_norm_divided}
        return weights, dict(K, rms_norm_at={tap: kernel[how] for tap, how in norms.items()})

    def runtime_note(self, runtime, simulated):
        """What the probes (probe.py) found ONNX Runtime computing here: for MatMulNBits graphs,
        which product (CompInt8 or fp32); for graphs of unfused float ops, whether each is
        mlas.py's, bit for bit. Both: one note, its ops and variants side by side."""
        if not simulated:
            return None
        from .probe import float_ops

        product = self.product_probe()
        notes = ([product] if product else []) + ([float_ops()] if self.float_ops() else [])
        if len(notes) < 2:
            return notes[0] if notes else None
        return dict(notes[0], variant=" + ".join(n["variant"] for n in notes), ops={**notes[0]["ops"], **notes[1]["ops"]},
                    emulated=all(n["emulated"] for n in notes))

    def product_probe(self):
        """What probe.py found of the graph's quantized products here (MatMulNBits of one kind:
        nbits_compute; MatMulBnb4: bnb4_compute; fp16 weights: fp16_matmul_compute), or None."""
        from .probe import bnb4_compute, fp16_matmul_compute, nbits_compute

        nbits = self.graph.nbits()
        if len(nbits) == 1:
            return nbits_compute(next(iter(nbits)))
        if self.precision == "fp16":
            return fp16_matmul_compute()
        return bnb4_compute(self.graph.block_size()) if self.precision == "bnb4" else None

    def simulate(self, weights, kernels, runtime, offset=0):
        from .sim import simulate

        rounded = self.fp16_rounded_taps(weights.cfg) if self.graph.fp16() else ()
        nbits = self.graph.nbits()
        nb = next(iter(nbits)) if len(nbits) == 1 else None
        found = self.product_probe() or {}
        compute = found.get("variant") if nb else None  # "unknown": fp32, and the note says so
        return simulate(weights, kernels, self.precision, self.graph.embedding_quantized(), self.graph.block_size(),
                        rounded, nb, compute, self.gather(), self.graph.integer_per_channel(), self.float_ops(), offset,
                        product=found.get("product"))

    def float_ops(self):
        """(probe.float_ops' verdicts, the graph's inv_freq, the ops ONNX Runtime runs as their
        function bodies: run.inlined) where the graph's float ops are the unfused ones mlas.py
        emulates, else None (q3ref's own float kernels)."""
        if not self.graph.unfused_float_ops():
            return None
        from .probe import float_ops
        from .run import inlined

        return float_ops()["ops"], self.graph.rope_inv_freq(), inlined(self.graph) if self.graph.fp16() else frozenset()

    def gather(self):
        """(block, symmetric, shares_lm_head) of a 4-bit embedding table, or None."""
        blocks = self.graph.gather_blocks()
        return None if blocks is None else (*blocks, self.graph.gather_shares_lm_head())

    def fp16_rounded_taps(self, cfg) -> set[str]:
        """The taps whose values ONNX Runtime rounds to fp16 before computing on (run.fp16_rounded):
        a tap's tensor, or the op output it is a layout of; and the graph's output where it is fp16."""
        from .run import LAYOUT_OPS, fp16_rounded

        tensors, (found, _) = fp16_rounded(self.graph), self.align(cfg)
        # The output is fp16 only where the converter did not keep fp32 I/O (keep_io_types); with
        # them the final Cast pair is dropped and the norm's fp32 value is the output (stress_fp16).
        # A reranker's norm feeds its LM head, an fp32 MatMul: not rounded (its logits are).
        fp16_out = self.graph.model.graph.output[0].type.tensor_type.elem_type == 10  # FLOAT16
        norm_out = "norm" in found and found["norm"].tensor == self.graph.output
        taps = {"norm"} if self.graph.fp16() and fp16_out and norm_out else set()
        for tap, aligned in found.items():
            t = aligned.tensor
            while t not in tensors and t in self.graph.producer and self.graph.producer[t].op_type in LAYOUT_OPS:
                t = self.graph.producer[t].input[0]
            if t in tensors:
                taps.add(tap)
        return taps

    def padding_note(self):
        if any(n.op_type == "GroupQueryAttention" for n in self.graph.nodes):
            return ("this graph's GroupQueryAttention reads attention_mask only as sequence lengths (sum(mask) - 1, "
                    "onnxruntime-genai's layout), not as a mask per token: a left-padded text attends to the pads "
                    "before it; pad on the right")
        return None

    def head_ids(self):
        return None  # the logits cover the vocabulary: the checkpoint's tokenizer says which are yes and no

    def per_tensor_activations(self):
        return self.precision in ("int8", "uint8")  # DynamicQuantizeLinear: one scale for the whole input

    def check_weights(self, weights, cfg):
        from .weights import check_graph_weights

        return check_graph_weights(self.graph, weights)

    def place(self, ids, padding, pad_id, truncate=False, length=None):
        from ...api import pad
        from ...errors import Q3RefError

        if self.seq_len is not None:
            if length is not None and length != self.seq_len:
                raise Q3RefError(f"--length {length}: this graph's input_ids are [1, {self.seq_len}] (a static-shape "
                                 "export), and every input is padded to that")
            return place_fixed(ids, self.seq_len, padding, pad_id, truncate)
        if padding not in ("left", "right"):
            raise Q3RefError(f"--padding must be left or right, got {padding!r}")
        if length is not None and length < len(ids):
            raise Q3RefError(f"--length {length} is shorter than the input's {len(ids)} tokens")
        return pad([list(ids)], padding, pad_id, length or len(ids))  # [1, S] each
