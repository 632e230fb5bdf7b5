"""A LiteRT .tflite graph as q3ref reads it: ops in order, who makes and who reads each tensor,
what is quantized, and a copy with chosen intermediates made into extra outputs.

Uses the flatbuffer schema that ai-edge-litert ships; nothing is run here (litert_run.py runs).
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import Q3RefError

# TensorType enum values of the TFLite schema that matter here
TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8", 17: "int4"}
NP_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
INT4, BLOCKWISE = 17, 2  # schema: TensorType.INT4, QuantizationDetails.BlockwiseQuantization


@dataclass
class Op:
    index: int
    kind: str  # builtin name, e.g. FULLY_CONNECTED; STABLEHLO_COMPOSITE ops keep their composite name
    composite: str | None  # e.g. odml.rms_norm, odml.scaled_dot_product_attention
    inputs: list[int]
    outputs: list[int]


class Graph:
    def __init__(self, path):
        from ai_edge_litert.tools import flatbuffer_utils

        self.path = Path(path)
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise Q3RefError(f"{self.path}: cannot read ({e.strerror})") from None
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise Q3RefError(f"{self.path}: not a LiteRT/TFLite graph (no TFL3 identifier)")
        try:
            self.model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
        except Exception as e:  # a corrupt flatbuffer raises anything from struct to IndexError
            raise Q3RefError(f"{self.path}: corrupt .tflite graph ({type(e).__name__})") from None
        self._fu = flatbuffer_utils
        self.sg = self.model.subgraphs[0]
        self.names = [t.name.decode() if isinstance(t.name, bytes) else str(t.name) for t in self.sg.tensors]
        self.ops = []
        for k, op in enumerate(self.sg.operators):
            kind = flatbuffer_utils.opcode_to_name(self.model, op.opcodeIndex) or "CUSTOM"
            composite = None
            if kind == "STABLEHLO_COMPOSITE" and op.builtinOptions2 is not None:
                composite = op.builtinOptions2.name
                composite = composite.decode() if isinstance(composite, bytes) else composite
            self.ops.append(Op(index=k, kind=kind, composite=composite,
                               inputs=[int(i) for i in op.inputs if i >= 0], outputs=[int(o) for o in op.outputs]))
        self.producer = {o: op for op in self.ops for o in op.outputs}
        self.consumers = collections.defaultdict(list)
        for op in self.ops:
            for i in op.inputs:
                self.consumers[i].append(op)

    # ------------------------------------------------------------------ tensors
    def shape(self, i) -> list[int]:
        return [int(d) for d in self.sg.tensors[i].shape]

    def type_name(self, i) -> str:
        return TYPE_NAMES.get(self.sg.tensors[i].type, f"type{self.sg.tensors[i].type}")

    def constant(self, i) -> np.ndarray | None:
        """A constant tensor's values (None for activations); int4 comes back as int8 values."""
        t = self.sg.tensors[i]
        data = self.model.buffers[t.buffer].data if t.buffer < len(self.model.buffers) else None
        if data is None or len(data) == 0 or (t.type not in NP_DTYPES and t.type != INT4):
            return None
        raw = np.frombuffer(bytes(np.asarray(data, np.uint8)), NP_DTYPES.get(t.type, np.uint8))
        if t.type == INT4:  # two values a byte, the low nibble first, two's complement
            nib = np.stack([raw & 0xF, raw >> 4], axis=-1).reshape(-1).astype(np.int8)  # [2 * bytes]
            raw = np.where(nib > 7, nib - 16, nib).astype(np.int8)[:int(np.prod(self.shape(i)))]
        return raw.reshape(self.shape(i))

    def blockwise(self, i) -> tuple[np.ndarray, int] | None:
        """(scales [out, in / block] fp32, block size) of a blockwise-quantized tensor (int4
        recipes: the scales are an fp16 tensor of their own, zero points absent)."""
        q = self.sg.tensors[i].quantization
        if q is None or q.detailsType != BLOCKWISE:
            return None
        return self.constant(q.details.scales).astype(np.float32), int(q.details.blockSize)

    def quantization(self, i) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(scales, zero points, quantized axis) of a quantized tensor."""
        q = self.sg.tensors[i].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        return np.asarray(q.scale, np.float32), np.asarray(q.zeroPoint, np.int64), int(q.quantizedDimension)

    # ------------------------------------------------------------------ description
    def inputs(self) -> list[dict]:
        return [{"index": i, "name": self.names[i], "shape": self.shape(i), "dtype": self.type_name(i)}
                for i in self.sg.inputs]

    def input_roles(self) -> tuple[int, int]:
        """(ids tensor, mask tensor): a name with 'mask' is the mask; otherwise inputs in order."""
        ins = list(self.sg.inputs)
        if len(ins) != 2:
            raise Q3RefError(f"{self.path}: expected 2 inputs (input_ids, attention_mask), found {len(ins)}")
        masks = [i for i in ins if "mask" in self.names[i].lower()]
        mask = masks[0] if len(masks) == 1 else ins[1]
        return next(i for i in ins if i != mask), mask

    @property
    def seq_len(self) -> int:
        return self.shape(self.input_roles()[0])[-1]

    def weight_of(self, op: Op) -> int | None:
        """The constant weight tensor an op reads (through a DEQUANTIZE if there is one)."""
        for i in op.inputs[1:2] if op.kind == "FULLY_CONNECTED" else op.inputs[:1]:
            src = self.producer.get(i)
            return src.inputs[0] if src is not None and src.kind == "DEQUANTIZE" else i
        return None

    def precision(self) -> str:
        """fp32, fp16, dynamic_int8, weight_only_int8 or dynamic_int4_block{32,128}, from the
        FULLY_CONNECTED weights."""
        fcs = [op for op in self.ops if op.kind == "FULLY_CONNECTED"]
        if not fcs:
            raise Q3RefError(f"{self.path}: no FULLY_CONNECTED ops: not a transformer graph q3ref can read")
        types = {self.type_name(self.weight_of(op)) for op in fcs}
        dequantized = any(self.producer.get(op.inputs[1]) is not None
                          and self.producer[op.inputs[1]].kind == "DEQUANTIZE" for op in fcs)
        if "int4" in types:  # ai-edge-quantizer's dynamic_int4_block32 / block128
            blocks = {b[1] for op in fcs if (b := self.blockwise(self.weight_of(op))) is not None}
            return f"dynamic_int4_block{min(blocks)}" if blocks else "int4"
        if "int8" in types:
            return "weight_only_int8" if dequantized else "dynamic_int8"
        return "fp16" if "float16" in types else "fp32"

    def embedding_table(self) -> int | None:
        """The stored embedding table (through a DEQUANTIZE if the graph has one)."""
        lookups = [op for op in self.ops if op.kind in ("EMBEDDING_LOOKUP", "GATHER")]
        if not lookups:
            return None
        t = lookups[0].inputs[1] if lookups[0].kind == "EMBEDDING_LOOKUP" else lookups[0].inputs[0]
        src = self.producer.get(t)
        return src.inputs[0] if src is not None and src.kind == "DEQUANTIZE" else t

    def describe(self) -> dict:
        table = self.embedding_table()
        fc_types = collections.Counter(self.type_name(self.weight_of(op)) for op in self.ops if op.kind == "FULLY_CONNECTED")
        per_channel = [op for op in self.ops if op.kind == "FULLY_CONNECTED"
                       and (q := self.quantization(self.weight_of(op))) is not None and len(q[0]) > 1]
        out = self.sg.outputs[0]
        return {
            "graph": str(self.path), "size_mb": round(self.path.stat().st_size / 1e6, 2),
            "signatures": [sd.signatureKey.decode() if isinstance(sd.signatureKey, bytes) else sd.signatureKey
                           for sd in (self.model.signatureDefs or [])],
            "inputs": self.inputs(), "seq_len": self.seq_len,
            "outputs": [{"name": self.names[o], "shape": self.shape(o), "dtype": self.type_name(o)} for o in self.sg.outputs],
            "precision": self.precision(),
            "ops": dict(collections.Counter(op.composite or op.kind for op in self.ops).most_common()),
            "fully_connected_weights": dict(fc_types),
            "per_channel_quantized_fc": len(per_channel),
            "embedding_table": None if table is None else {"shape": self.shape(table), "dtype": self.type_name(table)},
            "hidden_size": self.shape(out)[-1],
            "vocab_size": None if table is None else self.shape(table)[0],
            "layers": sum(1 for op in self.ops if op.composite == "odml.scaled_dot_product_attention"),
        }

    def check_config(self, cfg) -> list[str]:
        from ..taps import config_problems

        return config_problems(self.describe(), cfg, "attention ops")

    # ------------------------------------------------------------------ rewriting
    def with_outputs(self, tensors: list[int]) -> bytes:
        """The graph's bytes with `tensors` appended to subgraph 0's outputs, so that any runtime
        (XNNPACK included) must materialize them; the original outputs keep their places.

        Patched in place rather than re-serialized (the flatbuffers object API takes minutes on a
        600 MB graph): a new int32 vector goes at the end of the flatbuffer and the SubGraph's
        `outputs` field (vtable slot 8) is pointed at it. Flatbuffer offsets are unsigned and point
        forward, so the end is always reachable, and nothing inside the flatbuffer moves. A graph
        over 2 GB (a 0.6B in fp32, a 4B or 8B in int8) keeps its weights past the flatbuffer, at
        absolute file offsets, and the flatbuffer itself must stay under 2 GB: there the vector
        goes before those weights, which move by a whole EXTERNAL_SHIFT, and every offset to them
        with them (appended after them, the interpreter refused the file).
        """
        from ai_edge_litert import schema_py_generated as schema

        data = bytearray(self.path.read_bytes())
        model = schema.Model.GetRootAs(data, 0)
        table = model.Subgraphs(0)._tab
        slot = table.Offset(8)
        if slot == 0:
            raise Q3RefError(f"{self.path}: subgraph 0 has no outputs field to extend")
        field = table.Pos + slot
        original = [int(o) for o in self.sg.outputs]
        outputs = original + [int(t) for t in tensors if int(t) not in original]
        external = external_offsets(model)  # [(position of a uint64 offset field, its value)]
        end = min((value for _, value in external), default=len(data))  # the flatbuffer's end
        vector = end + (-end % 4)
        block = bytes(vector - end) + struct.pack(f"<I{len(outputs)}i", len(outputs), *outputs)
        if external:
            block += bytes(-len(block) % EXTERNAL_SHIFT)  # keeps each external buffer's alignment
            for pos, value in external:
                struct.pack_into("<Q", data, pos, value + len(block))
        struct.pack_into("<I", data, field, vector - field)
        data[end:end] = block  # in place: no whole-file temporaries (an 8B int8 graph is 8 GB)
        return bytes(data)

    def bytes(self) -> bytes:
        return self.path.read_bytes()


EXTERNAL_SHIFT = 4096  # a multiple of any alignment the converter gives external buffers


def external_offsets(model) -> list[tuple[int, int]]:
    """Where a graph's data past its flatbuffer is referenced: (file position of the uint64 field,
    the absolute offset it holds) for each Buffer.offset and Operator.large_custom_options_offset
    set (> 1: 0 is none, 1 the converter's placeholder for an empty buffer)."""
    found = []
    for i in range(model.BuffersLength()):
        b = model.Buffers(i)
        if b.Offset() > 1:
            found.append((b._tab.Pos + b._tab.Offset(6), b.Offset()))
    for g in range(model.SubgraphsLength()):
        sg = model.Subgraphs(g)
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            if op.LargeCustomOptionsOffset() > 1:
                found.append((op._tab.Pos + op._tab.Offset(22), op.LargeCustomOptionsOffset()))
    return found
