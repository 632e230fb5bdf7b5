"""An ONNX graph as q3ref reads it: nodes in order, who makes and who reads each tensor, its
precision. The weights stay on disk, read when asked: external data (.onnx_data) and the raw
bytes stored in the .onnx itself (layout.py) alike."""

from __future__ import annotations

import collections
import functools
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ...errors import Q3RefError

# quantize_dynamic's MatMulInteger, and what ONNX Runtime's optimizer fuses it into in a graph it
# saved: MatMulIntegerToFloat (with the Cast and the scales' Mul), DynamicQuantizeMatMul (with the
# activation's DynamicQuantizeLinear too). The weight is input 1 in all three.
INTEGER_MATMULS = ("MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul")
UNFUSED_FLOAT_OPS = {"ReduceMean", "Softmax", "Sigmoid", "Cos", "Sin"}  # torch's export, as mlas.py computes them
FUSED_OPS = {"GroupQueryAttention", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization",
             "RotaryEmbedding", "MultiHeadAttention", "FusedMatMul", "QuickGelu"}  # the genai builder's and ORT's fusions
PAST = re.compile(r"past_key_values\.\d+\.(key|value)$")  # a with-past export's KV cache inputs (optimum's names)


class NBits(NamedTuple):
    """How a graph's MatMulNBits nodes are quantized and computed: `bits` (2, 4 or 8) per level,
    `block` weights per scale along the input, `symmetric` (no zero-point input: the zero point is
    2^(bits-1)), `accuracy_level` (4: ONNX Runtime may quantize the activations to int8 per
    block, CompInt8; unset or 0: fp32, the onnx-community q4's)."""
    bits: int
    block: int
    symmetric: bool
    accuracy_level: int

    def __str__(self):
        return (f"MatMulNBits {self.bits}-bit, blocks of {self.block}, "
                f"{'symmetric' if self.symmetric else 'zero points'}, accuracy_level {self.accuracy_level}")


class Graph:
    def __init__(self, path):
        import onnx

        from .layout import without_raw_data

        self.path = Path(path)
        try:
            skeleton, self.raw_data_spans = without_raw_data(self.path)  # {initializer: (offset, length)}
            self.model = onnx.ModelProto()
            self.model.ParseFromString(skeleton)
        except Exception as e:  # a truncated or foreign file: the wire format, protobuf's DecodeError, or anything
            raise Q3RefError(f"{self.path}: not a readable ONNX model ({type(e).__name__})") from None
        g = self.model.graph
        if not g.node:
            raise Q3RefError(f"{self.path}: an ONNX file with no graph nodes")
        self.nodes = list(g.node)
        locations = {e.value for i in g.initializer if i.data_location == onnx.TensorProto.EXTERNAL
                     for e in i.external_data if e.key == "location"}
        missing = sorted(loc for loc in locations if not (self.path.parent / loc).is_file())
        if missing:
            raise Q3RefError(f"{self.path}: its weights are in {missing[0]}, which is not beside it "
                             "(keep the .onnx_data file next to the .onnx)")
        self.inits = {i.name: i for i in g.initializer}
        self.inputs = [i.name for i in g.input if i.name not in self.inits]
        self.output = g.output[0].name
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers = collections.defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                self.consumers[i].append(n)

    def lm_head(self):
        """The LM head's node in a CausalLM export (a reranker's: logits over the vocabulary, its
        module path /lm_head/, kept by the quantizers), or None for a Qwen3Model export."""
        heads = [n for n in self.nodes if n.name.startswith("/lm_head/")]
        return next((n for n in heads if n.op_type in ("MatMul", "MatMulNBits", "MatMulInteger", "MatMulBnb4")), None)

    def lm_head_input(self) -> str | None:
        """The hidden states the LM head reads (the final norm's output), before any quantization of them."""
        n = self.lm_head()
        if n is None:
            return None
        t = n.input[0]
        made = self.producer.get(t)
        return made.input[0] if made is not None and made.op_type == "DynamicQuantizeLinear" else t

    def precision(self) -> str:
        ops = collections.Counter(n.op_type for n in self.nodes)
        weight_types = {self.inits[n.input[1]].data_type for n in self.nodes
                        if n.op_type in INTEGER_MATMULS and n.input[1] in self.inits}
        if ops["MatMulNBits"]:
            kinds = self.nbits()  # more than one (k_quant's 4 and 8 bits, per-layer choices): "qmixed"
            return f"q{next(iter(kinds)).bits if len(kinds) == 1 else 'mixed'}{'f16' if self.fp16() else ''}"
        if ops["MatMulBnb4"]:
            return "bnb4"
        if any(ops[op] for op in INTEGER_MATMULS):
            return "uint8" if weight_types == {2} else "int8"  # TensorProto.UINT8 = 2, INT8 = 3
        return "fp16" if self.fp16() else "fp32"

    def integer_per_channel(self) -> bool:
        """Whether quantize_dynamic quantized the integer MatMuls' weights per channel (per_channel=True:
        a scale per output column) rather than per tensor."""
        from .weights import integer_matmul_weight_params

        for n in self.nodes:
            if n.op_type in INTEGER_MATMULS:
                scale = integer_matmul_weight_params(n)[0]
                return scale in self.inits and int(np.prod(self.inits[scale].dims)) > 1
        return False

    def nbits(self) -> set[NBits]:
        """The distinct NBits of the graph's MatMulNBits nodes (one, but for a mixed recipe)."""
        specs = set()
        for n in self.nodes:
            if n.op_type == "MatMulNBits":
                a = {x.name: x.i for x in n.attribute}
                specs.add(NBits(a.get("bits", 4), a["block_size"], len(n.input) < 4 or not n.input[3],
                                a.get("accuracy_level", 0)))
        return specs

    def gather_blocks(self) -> tuple[int, bool] | None:
        """(block, symmetric) of an embedding table in 4-bit blocks along the hidden dimension (a
        GatherBlockQuantized reading an initializer, as MatMulNBitsQuantizer's quantize_gather and
        the genai builder's int4 write it), or None."""
        for n in self.nodes:
            if n.op_type == "GatherBlockQuantized":
                a = {x.name: x.i for x in n.attribute}
                if a.get("bits", 4) == 4 and a.get("quantize_axis", 1) == 1 and a.get("gather_axis", 0) == 0:
                    return a["block_size"], len(n.input) < 4 or not n.input[3]
        return None

    def gather_shares_lm_head(self) -> bool:
        """Whether the 4-bit embedding table is the LM head's own MatMulNBits weight, read through a
        Reshape (the genai builder's int4 with tied embeddings): then its values are MatMulNBits'
        blocks, not quantize_gather's."""
        head = self.lm_head()
        for n in self.nodes:
            if n.op_type == "GatherBlockQuantized" and head is not None:
                made = self.producer.get(n.input[0])
                return made is not None and made.op_type == "Reshape" and made.input[0] in head.input
        return False

    def seq_len(self) -> int | None:
        """input_ids' sequence length where the export fixed it (a static-shape graph), else None."""
        v = next((i for i in self.model.graph.input if i.name == "input_ids"), None)
        dims = list(v.type.tensor_type.shape.dim) if v is not None else []
        return dims[1].dim_value if len(dims) == 2 and dims[1].dim_value > 0 else None

    def head_dim(self) -> int | None:
        """Dh, from the q_norm weight (one value per head dimension): a cache input may leave it
        symbolic (the genai builder's kv_cache_dim), which an empty cache must still match."""
        w = next((t for name, t in self.inits.items() if "q_norm" in name and len(t.dims) == 1), None)
        return int(w.dims[0]) if w is not None else None

    def rope_inv_freq_fp16(self) -> bool:
        """Whether RoPE's inv_freq is an fp16 constant (an input of /model/rotary_emb/Mul), as
        onnxconverter-common's fp16 leaves it unless the rotary embedding is blocked: a Constant
        node, or in a graph ONNX Runtime saved optimized, an initializer behind its inserted Cast.
        (Its cast of position_ids to fp16 is not a loss: ONNX Runtime drops that Cast pair and
        multiplies the int64 positions in fp32.)"""
        mul = next((n for n in self.nodes if n.name == "/model/rotary_emb/Mul"), None)
        for t in (mul.input if mul else ()):
            while t in self.producer and self.producer[t].op_type == "Cast":
                t = self.producer[t].input[0]
            made = self.producer.get(t)
            if made is not None and made.op_type == "Constant":
                if any(a.name == "value" and a.t.data_type == 10 for a in made.attribute):  # FLOAT16
                    return True
            elif self.initializer_type(t) == 10:
                return True
        return False

    def rope_inv_freq(self):
        """RoPE's inv_freq [Dh/2] as the graph holds it (the fp32 constant of /model/rotary_emb/Mul:
        torch's own powf, which may differ from NumPy's by an ulp; an fp16 graph's fp16 one), or None."""
        from onnx import numpy_helper

        mul = next((n for n in self.nodes if n.name == "/model/rotary_emb/Mul"), None)
        for t in (mul.input if mul else ()):
            made = self.producer.get(t)
            if made is not None and made.op_type == "Constant":
                value = next((numpy_helper.to_array(a.t) for a in made.attribute if a.name == "value"), None)
                if value is not None and value.dtype in (np.float32, np.float16) and value.size > 1:
                    return value.reshape(-1).astype(np.float32)  # an fp16 graph's: its values, exactly
        return None

    def unfused_float_ops(self) -> bool:
        """Whether the graph computes with the plain ops mlas.py emulates (torch's export, run
        unoptimized): RMSNorm as ReduceMean..., attention as MatMul + Softmax, SiLU as Sigmoid,
        RoPE's tables by Cos and Sin; not the genai builder's or ORT's fused ops."""
        ops = {n.op_type for n in self.nodes}
        return UNFUSED_FLOAT_OPS <= ops and not ops & FUSED_OPS and self.rope_inv_freq() is not None

    def fp16(self) -> bool:
        matmuls = [n for n in self.nodes if n.op_type in ("MatMul", "MatMulNBits", "Gather")]
        return any(i in self.inits and self.inits[i].data_type == 10 for n in matmuls for i in n.input)  # FLOAT16

    def quantized_embedding(self) -> str | None:
        """The name of a 2-D int8/uint8 table a Gather reads (quantize_dynamic's embedding), if any."""
        gathers = [n for n in self.nodes if n.op_type == "Gather" and n.input[0] in self.inits
                   and len(self.inits[n.input[0]].dims) == 2]
        return next((n.input[0] for n in gathers if self.inits[n.input[0]].data_type in (2, 3)), None)  # UINT8, INT8

    def embedding_quantized(self) -> bool:
        return self.quantized_embedding() is not None

    def block_size(self) -> int | None:
        """The block size of the graph's 4-bit MatMuls (MatMulNBits, MatMulBnb4), None without them."""
        for n in self.nodes:
            if n.op_type in ("MatMulNBits", "MatMulBnb4"):
                return next(a.i for a in n.attribute if a.name == "block_size")  # required by both ops
        return None

    def initializer_type(self, name) -> int | None:
        return self.inits[name].data_type if name in self.inits else None

    def initializer(self, name) -> np.ndarray:
        """An initializer's values, read from the file (or from external data beside it)."""
        import onnx
        from onnx import numpy_helper

        from .layout import read_span

        t = self.inits[name]
        if name in self.raw_data_spans:
            t = onnx.TensorProto()
            t.CopyFrom(self.inits[name])
            t.raw_data = read_span(self.path, self.raw_data_spans[name])
        return numpy_helper.to_array(t, base_dir=str(self.path.parent))

    @functools.cached_property
    def types(self) -> dict[str, int]:
        """{tensor: TensorProto elem type} by ONNX shape inference (contrib ops may stop it: then {}).
        Inferred from the nodes alone: onnxconverter-common's fp16 conversion leaves value_info that
        says float16 for Casts whose `to` is float, and ONNX Runtime refuses an output so typed."""
        import onnx

        # Inferred on a skeleton: the nodes, with each initializer declared as an input of its type and
        # shape but without its values (copying a 600 MB graph to infer on it took 5.8 s of a diff).
        src, m = self.model, onnx.ModelProto()
        m.ir_version, m.producer_name = src.ir_version, src.producer_name
        m.opset_import.extend(src.opset_import)
        m.graph.node.extend(src.graph.node)
        m.graph.input.extend(src.graph.input)
        m.graph.input.extend(onnx.helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                             for i in src.graph.initializer)
        m.graph.output.extend(src.graph.output)
        try:
            inferred = onnx.shape_inference.infer_shapes(m)
        except Exception:
            return {}
        return {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}

    def float_activations(self) -> list[str]:
        """Every fp32/fp16 activation (for the numeric fallback)."""
        return [o for n in self.nodes for o in n.output if self.types.get(o) in (1, 10)]  # FLOAT, FLOAT16

    def describe(self) -> dict:
        import onnx

        g = self.model.graph
        ops = collections.Counter(n.op_type for n in self.nodes)
        table = next((self.inits[n.input[0]] for n in self.nodes if n.op_type in ("Gather", "GatherBlockQuantized") and n.input[0] in self.inits
                      and len(self.inits[n.input[0]].dims) == 2), None)
        norms = [n for n in self.nodes if n.name.endswith("post_attention_layernorm/Mul_1")
                 or n.op_type == "SimplifiedLayerNormalization"]
        # layers with attention ("self_attn/" the exporter's, "attn/" the genai builder's, which also
        # puts its final norm under /model/layers.{L}/)
        layers = len({n.name.split("/")[2] for n in self.nodes if n.name.startswith("/model/layers.") and "attn/" in n.name})
        hidden = (None if self.lm_head() is not None else [d.dim_value for d in g.output[0].type.tensor_type.shape.dim][-1]
                  ) or (table.dims[1] if table else None)  # a CausalLM's output is vocabulary-wide

        def io(v):
            return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                    "shape": [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim],
                    **({"role": "cache, fed empty"} if PAST.match(v.name) else {})}
        return {"graph": str(self.path), "format": "onnx", "size_mb": round(self.path.stat().st_size / 1e6, 2),
                "external_data": any(i.data_location == onnx.TensorProto.EXTERNAL for i in g.initializer),
                "inputs": [io(v) for v in g.input if v.name not in self.inits], "outputs": [io(v) for v in g.output],
                "seq_len": self.seq_len(), "precision": self.precision(), "matmul_nbits": sorted(str(nb) for nb in self.nbits()),
                "gather_blocks": self.gather_blocks(),
                "opset": max(o.version for o in self.model.opset_import),
                "producer": f"{self.model.producer_name} {self.model.producer_version}".strip(),
                "ops": dict(ops.most_common()), "layers": layers or len(norms),
                "hidden_size": hidden, "vocab_size": table.dims[0] if table is not None else None,
                "embedding_table": None if table is None else {"shape": list(table.dims),
                                                               "dtype": onnx.helper.tensor_dtype_to_np_dtype(table.data_type).name}}

    def check_config(self, cfg) -> list[str]:
        from ..taps import config_problems

        return config_problems(self.describe(), cfg, "decoder layers")
