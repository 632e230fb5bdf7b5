"""Run a .tflite signature whose graph holds custom ops the stock interpreter does not resolve.

litert-torch lowers Qwen3.5's GatedDeltaNet state update to a custom op, `gated_delta_update`,
whose kernel ships only inside the LiteRT-LM runtime: ai-edge-litert's interpreter refuses the
graph ("Encountered unresolved custom op"). So the signature's subgraph is cut at each such op:
the ops between two of them become a graph of their own (same tensors, buffers and decomposition
subgraphs, with the tensors that cross the cut as its inputs and outputs), which the stock
interpreter runs with its own kernels, and the custom op itself is computed by a Python function
(q3ref's reading of the op's documented math). Every other op is the runtime's.

    Segmented(model_bytes, signature, custom={code: fn}).run(inputs, keep=()) -> (outputs, calls, kept)

`calls` lists each custom op's call in graph order: (code, its inputs, its outputs), the arrays
the diff compares stage by stage. `keep`: more tensor indices to read out of the segments
(`kept`: {index: array}).
"""

from __future__ import annotations

import numpy as np

from ...errors import Q3RefError


def custom_codes(model_bytes: bytes) -> list:
    """The custom op codes a graph uses."""
    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils as fu

    m = fu.convert_bytearray_to_object(bytearray(model_bytes))
    return [c.customCode.decode() for c in m.operatorCodes
            if fu.get_builtin_code_from_operator_code(c) == s.BuiltinOperator.CUSTOM and c.customCode]


class Segmented:
    """One signature of a graph, cut at its custom ops."""

    def __init__(self, model_bytes: bytes, signature: str, custom: dict, parsed=None):
        """parsed: another Segmented's object model of the same bytes (parsing a large graph is slow)."""
        from ai_edge_litert import schema_py_generated as s
        from ai_edge_litert.tools import flatbuffer_utils as fu

        self.fu, self.s, self.custom, self.data = fu, s, custom, model_bytes
        self.m = parsed if parsed is not None else fu.convert_bytearray_to_object(bytearray(model_bytes))
        sigs = {d.signatureKey.decode(): d for d in self.m.signatureDefs or []}
        if signature not in sigs:
            raise Q3RefError(f"the graph has no signature {signature!r} (it has {', '.join(sigs)})")
        self.sig = sigs[signature]
        self.signature_subgraphs = {d.subgraphIndex for d in sigs.values()}
        self.sg = self.m.subgraphs[self.sig.subgraphIndex]
        self.ops = list(self.sg.operators)
        codes = self.m.operatorCodes
        self.op_code = [(codes[op.opcodeIndex].customCode or b"").decode()
                        if fu.get_builtin_code_from_operator_code(codes[op.opcodeIndex]) == s.BuiltinOperator.CUSTOM
                        else None for op in self.ops]
        unknown = {c for c in self.op_code if c and c not in custom}
        if unknown:
            raise Q3RefError(f"custom op(s) {', '.join(sorted(unknown))} have no implementation in q3ref")
        # Constants: a buffer with data (even zero bytes: a [0]-shaped constant), or stored past the flatbuffer.
        self.const = {i for i, t in enumerate(self.sg.tensors)
                      if self.m.buffers[t.buffer].data is not None or (self.m.buffers[t.buffer].offset or 0) > 1}
        self.inputs = {t.name.decode(): t.tensorIndex for t in self.sig.inputs}
        self.outputs = {t.name.decode(): t.tensorIndex for t in self.sig.outputs}

    def constant(self, i) -> bytes:
        """Tensor i's constant data, held in the flatbuffer or past it."""
        b = self.m.buffers[self.sg.tensors[i].buffer]
        if b.data is not None:
            return bytes(np.asarray(b.data, np.uint8))
        return bytes(self.data[b.offset:b.offset + b.size])

    def _segment_graph(self, ops, needs, gives) -> bytes:
        s = self.s
        saved = (self.sg.operators, self.sg.inputs, self.sg.outputs, self.m.signatureDefs)
        places = [(b.offset, b.size) for b in self.m.buffers]
        options = [(op, op.largeCustomOptionsOffset, op.largeCustomOptionsSize) for g in self.m.subgraphs
                   for op in g.operators if (op.largeCustomOptionsOffset or 0) > 1]  # custom ops' options past it
        sig = s.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = "segment", self.sig.subgraphIndex
        sig.inputs, sig.outputs = [self._map(i) for i in needs], [self._map(i) for i in gives]
        self.sg.operators, self.sg.inputs, self.sg.outputs, self.m.signatureDefs = ops, needs, gives, [sig]
        try:
            return self._serialized(ops, places)
        finally:
            self.sg.operators, self.sg.inputs, self.sg.outputs, self.m.signatureDefs = saved
            for b, (offset, size) in zip(self.m.buffers, places):
                b.offset, b.size = offset, size
            for op, offset, size in options:
                op.largeCustomOptionsOffset, op.largeCustomOptionsSize = offset, size

    def _serialized(self, ops, places) -> bytes:
        """The model as it stands. A graph whose weights lie past its flatbuffer, at absolute
        offsets (litert-torch writes them so past 2 GB of fp32: a full-size Qwen3.5 0.8B), carries
        along only the weights these ops read, placed after the new flatbuffer; every other such
        buffer is left empty (the interpreter checks every buffer's offset against the file).
        places: each buffer's (offset, size) as the graph's file has them."""
        external = [i for i, (offset, _) in enumerate(places) if (offset or 0) > 1]
        if not external:
            return bytes(self.fu.convert_object_to_bytearray(self.m))
        if any((op.largeCustomOptionsOffset or 0) > 1 for op in ops):
            raise Q3RefError("an op of the graph keeps its options past the flatbuffer: not supported yet")
        for g in self.m.subgraphs:  # the custom ops cut out (and the other signature's) keep none here
            for op in g.operators:
                if (op.largeCustomOptionsOffset or 0) > 1:
                    op.largeCustomOptionsOffset, op.largeCustomOptionsSize = 0, 0
        read = {self.sg.tensors[i].buffer for op in ops for i in op.inputs if i >= 0}
        read |= {t.buffer for k, g in enumerate(self.m.subgraphs)  # the composites' decompositions
                 if k not in self.signature_subgraphs for t in g.tensors}
        kept = [i for i in external if i in read]
        for i in external:  # the final fields' widths, so that the flatbuffer's size is final
            self.m.buffers[i].offset, self.m.buffers[i].size = (2 ** 40, places[i][1]) if i in kept else (0, 0)
        end = len(self.fu.convert_object_to_bytearray(self.m))
        for i in kept:
            end += -end % 64  # 64-aligned, as the converter places them
            self.m.buffers[i].offset = end
            end += places[i][1]
        out = bytearray(self.fu.convert_object_to_bytearray(self.m))
        out += bytes(end - len(out))
        for i in kept:
            offset, size = places[i]
            out[self.m.buffers[i].offset:self.m.buffers[i].offset + size] = self.data[offset:offset + size]
        return bytes(out)

    def _map(self, i):
        t = self.s.TensorMapT()
        t.name, t.tensorIndex = f"t{i}", i
        return t

    def run(self, inputs: dict, keep=()):
        from ai_edge_litert.interpreter import Interpreter

        missing = set(self.inputs) - set(inputs)
        if missing:
            raise Q3RefError(f"missing graph input(s): {', '.join(sorted(missing))}")
        values = {self.inputs[k]: np.asarray(v) for k, v in inputs.items()}  # tensor index -> array
        wanted_late = set(self.outputs.values()) | set(keep)
        cuts = [i for i, c in enumerate(self.op_code) if c] + [len(self.ops)]
        calls, start = [], 0
        for cut in cuts:
            ops = self.ops[start:cut]
            if ops:
                made = {o for op in ops for o in op.outputs if o >= 0}
                read = [i for op in ops for i in op.inputs if i >= 0 and i not in self.const]
                needs = sorted({i for i in read if i not in made})
                later = {i for op in self.ops[cut:] for i in op.inputs} | wanted_late
                gives = sorted({o for o in made if o in later})
                runner = Interpreter(model_content=self._segment_graph(ops, needs, gives)).get_signature_runner("segment")
                out = runner(**{f"t{i}": values[i] for i in needs})
                values.update({int(k[1:]): np.array(v) for k, v in out.items()})
            if cut < len(self.ops):
                op = self.ops[cut]
                args = [values[i] for i in op.inputs if i >= 0]
                results = self.custom[self.op_code[cut]](*args)
                values.update(zip(op.outputs, results))
                calls.append((self.op_code[cut], args, list(results)))
            start = cut + 1
        return {k: values[i] for k, i in self.outputs.items()}, calls, {i: values[i] for i in keep if i in values}

