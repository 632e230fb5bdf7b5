"""LiteRT .tflite graphs made by litert-torch (FACTS.md: the published Qwen3-Embedding exports).

graph.py reads the flatbuffer, align.py finds each tap's tensor, run.py runs the interpreter
(XNNPACK with taps as extra outputs, or the builtin kernels), probe.py tells whether the builtin
kernels compute as q3ref emulates them, weights.py checks quantized weights bit for bit, rope.py
reads the RoPE tables the graph carries.
"""

from __future__ import annotations

from ..taps import GraphExport, place_fixed
from .align import align
from .graph import Graph
from .run import run

# Local relative L2 error a stage that reads quantized weights may add, per precision.
# Measured on the bundled graphs: dynamic_int8 <= 1.3e-2, weight_only_int8 <= 6.7e-3; fp16
# storage of bf16 weights is exact (every bf16 value in fp16's range is an fp16 value).
# Defects planted by scripts/export_tflite.py add >= 0.09 at their stage.
LOCAL_LIMIT = {"fp32": 1e-4, "fp16": 1e-2, "weight_only_int8": 5e-2, "dynamic_int8": 5e-2,
               "dynamic_int4_block32": 0.3, "dynamic_int4_block128": 0.3, "int4": 0.3}
QUANTIZED_STAGES = {"q", "k", "v", "o_proj", "gate", "up", "down"}  # FULLY_CONNECTED outputs
PRECISION_TO_SIM = {"fp32": "fp32", "dynamic_int8": "int8", "weight_only_int8": "int8-weight-only", "fp16": "fp16",
                    "dynamic_int4_block32": "int4-block32", "dynamic_int4_block128": "int4-block128"}


def match(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == b"TFL3"  # the flatbuffer file identifier


def open(path):  # noqa: A001  (the face's verb)
    return Export(path)


class Export(GraphExport):
    format = "litert"
    runtimes = ("xnnpack", "builtin")
    output_tap = "embedding"  # pooled and L2-normalized inside the graph

    def __init__(self, path):
        self.graph = Graph(path)
        self.path = self.graph.path
        self.precision = self.graph.precision()
        self.seq_len = self.graph.seq_len
        self.output = self.graph.sg.outputs[0]
        self.simulation = PRECISION_TO_SIM.get(self.precision)

    def summary(self, d):
        from ..taps import graph_summary

        return graph_summary(d)

    def align(self, cfg):
        return align(self.graph, cfg)

    def float_tensors(self):
        g = self.graph
        return [t for op in g.ops for t in op.outputs if g.type_name(t) == "float32"]

    def run(self, input_ids, mask, tensors=(), runtime="xnnpack"):
        return run(self.graph, input_ids, mask, tensors, runtime)

    def tensor_name(self, t):
        return self.graph.names[t]

    def limits(self, simulated=False):
        """Local error allowed per stage: the precision's limit where quantized weights are read;
        none (the fp32 floor) where the simulation computes what the runtime does."""
        if simulated:
            return {}
        g = self.graph
        limits = {stage: LOCAL_LIMIT[self.precision] for stage in QUANTIZED_STAGES}
        table = g.embedding_table()
        if table is not None and g.type_name(table) != "float32":
            limits["embed"] = LOCAL_LIMIT["dynamic_int8" if g.type_name(table) == "int8" else self.precision]
        return limits

    def read_by(self, runtime):
        return "extra outputs (rewritten graph)" if runtime == "xnnpack" else "preserve_all_tensors"

    def runtime_note(self, runtime, simulated):
        """Whether the simulation's float ops are bit-exact on this runtime here (probe.py), or None."""
        if not simulated:
            return None
        from . import xnnpack
        from .probe import builtin_variant, narrowed, xnnpack_variant

        # held to the ops this graph runs: RMSNorm, SwiGLU, attention, the final L2 norm, and its products' kernel
        int4 = self.simulation.startswith("int4")
        if runtime == "xnnpack":
            linear = "dynamic_int8_linear" if self.simulation == "int8" else "int4_linear" if int4 else "f32_gemm_linear"
            return narrowed(xnnpack_variant(), xnnpack.probe_ops("rms_norm", "silu_mul", "normalize", "attention", linear))
        float_fc = self.simulation in ("fp32", "fp16", "int8-weight-only")  # its float FULLY_CONNECTED: Eigen's GEMM
        linear = "FULLY_CONNECTED_FLOAT" if float_fc else "FULLY_CONNECTED_INT4" if int4 else "FULLY_CONNECTED"
        return narrowed(builtin_variant(), ("MEAN", "SOFTMAX", "BATCH_MATMUL", "LOGISTIC", "SDPA", linear))

    def simulate(self, weights, kernels, runtime, offset=0):
        from ...kernels import rope_numpy
        from ...quant import simulation
        from .rope import graph_tables, tables_from

        w, K = simulation(weights, kernels, self.simulation, runtime, offset, self.seq_len)
        tables = graph_tables(self.graph, weights.cfg) if weights.dtype == "float32" else None
        if tables is not None:  # the graph's own cos and sin, rotated by MUL, MUL, SUB as the graph does
            K.update(rope_tables=tables_from(*tables), rope=rope_numpy)
        return w, K

    def check_weights(self, weights, cfg):
        from .weights import check_graph_weights

        return check_graph_weights(self.graph, weights, cfg)

    def place(self, ids, padding, pad_id, truncate=False, length=None):
        if length is not None and length != self.seq_len:
            from ...errors import Q3RefError

            raise Q3RefError(f"--length {length}: this graph's seq_len {self.seq_len} is baked in, and every "
                             "input is padded to it")
        return place_fixed(ids, self.seq_len, padding, pad_id, truncate)
