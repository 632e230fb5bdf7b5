"""Run an ONNX graph on one sequence with ONNX Runtime (CPU) and read intermediate tensors.

The wanted tensors become extra graph outputs. Graph optimizations are off while tapping: ORT
skips a fusion (SimplifiedLayerNormalization, DynamicQuantizeMatMul) when an intermediate is a
graph output, so a tapped optimized run is neither the optimized run nor the plain one.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np

from ...errors import Q3RefError
from .graph import PAST, Graph


FP32_READ = "/q3ref_fp32"  # suffix of an fp16 graph's tap read through a Cast to fp32
# Initializers this small are copied into the tapped graph, not pointed at: ONNX Runtime's shape
# inference cannot read a shape or an axes input from external data, and a graph ORT optimized
# and saved holds its folded Constants (Unsqueeze axes...) as initializers. onnx's own
# save_as_external_data keeps tensors under 1 KB inline for the same reason.
INLINE_BYTES = 1024
# Every session's intra-op threads: as many as cores. MLAS splits some products over them
# (mlas.gemm_batch_weight), so the simulation reads the count here too.
THREADS = os.cpu_count() or 1


def tapped_copy(g: Graph, tensors, inline=False, fp32_read=False):
    """A new ModelProto: g with `tensors` appended to its outputs, each typed by shape inference
    where it can, else left untyped; its initializers point at their own spans of g's file as
    external data (layout.py), or, `inline` or under INLINE_BYTES, carry those bytes. g.model holds no weights' bytes,
    so the copy is small. fp32_read (fp16 graphs): each tensor is read as Cast(to=float) of it,
    named t + FP32_READ. ONNX Runtime computes most of an fp16 graph in fp32 (fp16_rounded) and
    drops a cast pair around such a value, so the read is the value its next op computes with,
    where an fp16 output would be that value rounded. (Where it also made an fp16 copy for an op
    with an fp16 kernel, the read is that copy.) The graph's own output is unchanged."""
    import onnx

    from .layout import read_span

    src, m, spans, tapped = g.model, onnx.ModelProto(), g.raw_data_spans, set(tensors)
    for f in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(m, f, getattr(src, f))
    m.opset_import.extend(src.opset_import)
    m.metadata_props.extend(src.metadata_props)
    m.functions.extend(src.functions)
    m.graph.name = src.graph.name
    for f in ("node", "input", "output", "sparse_initializer", "quantization_annotation"):
        getattr(m.graph, f).extend(getattr(src.graph, f))
    # A tapped tensor's own value_info must agree with the output type we declare; the fp16
    # converter's may not (Graph.types), so it goes and ORT infers the type from the node.
    m.graph.value_info.extend(v for v in src.graph.value_info if v.name not in tapped)
    have = {o.name for o in src.graph.output}
    for t in tensors:
        if t in have:
            continue
        if fp32_read:  # ORT fuses this Cast with its own cast to fp16, where it made one: the fp32 value
            m.graph.node.append(onnx.helper.make_node("Cast", [t], [t + FP32_READ], to=onnx.TensorProto.FLOAT))
            m.graph.output.append(onnx.helper.make_tensor_value_info(t + FP32_READ, onnx.TensorProto.FLOAT, None))
        elif g.types.get(t):
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, g.types[t], None))
        else:  # a contrib op's output (MatMulNBits...): shape inference stops there; ORT types it itself
            m.graph.output.append(onnx.ValueInfoProto(name=t))
    for t in src.graph.initializer:
        if t.name not in spans:  # in an .onnx_data file already (same directory), or typed values
            m.graph.initializer.append(t)
        elif inline or spans[t.name][1] <= INLINE_BYTES:
            m.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims,
                                    raw_data=read_span(g.path, spans[t.name]))
        else:
            offset, length = spans[t.name]
            e = m.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims,
                                        data_location=onnx.TensorProto.EXTERNAL)
            for key, value in (("location", g.path.name), ("offset", offset), ("length", length)):
                e.external_data.add(key=key, value=str(value))
    return m


def session_options(optimize=False):
    """ONNX Runtime's options for every session q3ref makes: the app's default optimizations
    (ORT_ENABLE_ALL) or none (the tapped run, the probes), as many threads as cores."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.intra_op_num_threads = THREADS
    opts.log_severity_level = 3
    return opts


@functools.lru_cache(maxsize=4)  # fp16_rounded and inlined read the same one
def optimized_model(g: Graph, optimize=False):
    """The ModelProto ONNX Runtime's session makes of g without its weights (weightless), with its
    inserted casts, and with its fusions where `optimize` (the app's run)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="q3ref-ort-") as tmp:
        opts = session_options(optimize)
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(weightless(g), opts, providers=["CPUExecutionProvider"])
        return onnx.load(opts.optimized_model_filepath)


def session(g: Graph, tensors=(), optimize=False):
    """An ORT session of g's own file (no `tensors`), or of g with `tensors` as extra outputs: a
    tapped copy beside g's file, since external data paths resolve beside the model and ORT
    refuses paths out of its directory, symbolic links included."""
    import onnxruntime as ort

    opts = session_options(optimize)
    if not tensors:
        return ort.InferenceSession(str(g.path), opts, providers=["CPUExecutionProvider"])
    path = g.path.parent / f".{g.path.stem}.q3ref-{os.getpid()}.onnx"
    try:
        path.write_bytes(tapped_copy(g, tensors, fp32_read=g.fp16()).SerializeToString())
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except OSError as e:
        if not any(i.data_location == 1 for i in g.model.graph.initializer):  # TensorProto.EXTERNAL
            # all in one file: the whole tapped graph can go to ORT as bytes, slower but not beside it
            whole = tapped_copy(g, tensors, inline=True, fp32_read=g.fp16()).SerializeToString()
            return ort.InferenceSession(whole, opts, providers=["CPUExecutionProvider"])
        raise Q3RefError(f"{g.path}: cannot write a tapped copy beside it ({e.strerror}); copy the model "
                         "and its .onnx_data into a writable directory") from None
    finally:
        path.unlink(missing_ok=True)


def feeds(g: Graph, input_ids, mask):
    """input_ids, attention_mask, position_ids in the type each input declares (int64 as the
    onnx-community files do; int32 where an export was traced with int32 ids, which ONNX Runtime
    refuses int64 for), and a with-past export's cache inputs empty, [batch, Hkv, 0, Dh] in their
    declared type: an embedding is one pass over the text with nothing before it, as
    transformers.js feeds such a file."""
    import onnx

    B, S = input_ids.shape
    # position_ids [B, S]: a [1, S] broadcast over a batch ran on the stress graphs, but ORT's buffer
    # reuse in a graph with one KV head took its batch of 1 for the batch's ("Shape mismatch")
    values = {"input_ids": input_ids, "attention_mask": mask, "position_ids": np.tile(np.arange(S), (B, 1))}
    unknown = [n for n in g.inputs if n not in values and not PAST.match(n)]
    if unknown:
        raise Q3RefError(f"{g.path}: graph inputs {unknown} are not input_ids, attention_mask, position_ids "
                         "or past_key_values.N.key/value")
    declared = {v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type) for v in g.model.graph.input}
    out = {n: np.asarray(values[n]).astype(declared[n]) for n in g.inputs if n in values}
    for v in g.model.graph.input:
        if PAST.match(v.name):
            dims = [d.dim_value for d in v.type.tensor_type.shape.dim]  # 0 where symbolic
            shape = [B, dims[1], 0, dims[3] or g.head_dim() or 0]  # [batch, Hkv, no past, Dh]
            dtype = np.float16 if v.type.tensor_type.elem_type == 10 else np.float32  # FLOAT16
            out[v.name] = np.zeros(shape, dtype)
    return out


def run(g: Graph, input_ids, mask, tensors=(), optimize=False) -> dict[str, np.ndarray]:
    """Invoke once; {tensor name: array} for the output and `tensors`, as float32. Without
    `tensors` it is g's own file that runs."""
    tensors = [t for t in tensors if t != g.output]
    names = [g.output] + tensors
    suffix = FP32_READ if g.fp16() else ""  # (fp16() scans the nodes: once, not per tap)
    read = [g.output] + [t + suffix for t in tensors]
    try:
        got = session(g, tensors, optimize).run(read, feeds(g, input_ids, mask))
    except Exception as e:  # ORT's own exception classes (Fail, RuntimeException, ...) share no base but Exception
        if not type(e).__module__.startswith("onnxruntime"):
            raise
        raise Q3RefError(f"{g.path}: ONNX Runtime failed on {input_ids.shape[1]} positions: "
                         f"{str(e).splitlines()[0]}") from None
    return {n: np.asarray(v, np.float32) for n, v in zip(names, got)}


# Ops that only move or pick values: ONNX Runtime runs them in fp16 without changing a value, so
# a value that reaches a MatMul through them keeps the rounding it had.
LAYOUT_OPS = {"Reshape", "Transpose", "Unsqueeze", "Squeeze", "Expand", "Slice", "Concat", "Gather", "Identity"}
CAST_PREFIX = "InsertedPrecisionFreeCast_"  # ONNX Runtime's name for the fp32 twin of an fp16 tensor


def weightless(g: Graph) -> bytes:
    """g's model with each weight (an initializer over INLINE_BYTES) declared as a graph input of
    its type and shape instead: where ONNX Runtime inserts its casts depends on the ops and types
    only (the same casts on the stress graphs and a 0.6B fp16 graph), and a 0.6B's session then
    takes 0.7 s, not 6.8 s of writing its 1.2 GB of weights out beside the optimized model."""
    import onnx

    from .layout import read_span

    m = onnx.ModelProto()
    m.CopyFrom(g.model)
    del m.graph.initializer[:]
    for t in g.model.graph.initializer:
        span = g.raw_data_spans.get(t.name)
        if t.data_location == onnx.TensorProto.EXTERNAL or (span and span[1] > INLINE_BYTES):
            m.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        elif span:
            m.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims, raw_data=read_span(g.path, span))
        else:
            m.graph.initializer.append(t)
    return m.SerializeToString()


def inlined(g: Graph) -> frozenset[str]:
    """The ops ONNX Runtime's CPU provider has no kernel for at the graph's types and runs as their
    ONNX function bodies, read from the session's optimized model (their nodes' outputs are named
    _inlfunc_<op>_...): an fp16 graph's Softmax, as ReduceMax, Sub, Exp, ReduceSum and Div in fp32."""
    names = (o for n in optimized_model(g).graph.node for o in n.output)
    return frozenset(o.split(INLINED)[1].split("_")[0] for o in names if INLINED in o)


INLINED = "_inlfunc_"


def fp16_rounded(g: Graph) -> set[str]:
    """The tensors of an fp16 graph whose values ONNX Runtime's CPU provider rounds to fp16 before
    an op computes with them. Its InsertCastTransformer runs the ops that have no fp16 kernel in
    fp32 and drops the casts between such neighbours, so an fp16 graph runs in fp32 stretches;
    where it rounds is read from the session's own optimized model (optimizations off, as the
    diff runs it), made from the graph without its weights (weightless):
    - a Cast to fp16 that it inserted, whose output an op other than Shape reads;
    - the output of an op it runs in fp16 itself (MatMulNBits in a q4f16 graph): one whose first
      input is not an fp32 twin nor made by a Cast to fp32."""
    import onnx

    m = optimized_model(g)
    nodes = list(m.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    consumers = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def cast_to(n, dtype):
        return n.op_type == "Cast" and any(a.name == "to" and a.i == dtype for a in n.attribute)

    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    # a Cast to fp16 that ORT inserted after an fp32 stretch, read by an op that computes
    rounded = {n.output[0] for n in nodes if cast_to(n, fp16) and n.input[0].startswith(CAST_PREFIX)
               and any(c.op_type != "Shape" for c in consumers.get(n.output[0], []))}
    # an op left reading an fp16 activation directly (no cast to fp32 before it) computes in fp16
    rounded |= {n.output[0] for n in nodes if n.op_type not in LAYOUT_OPS | {"Cast", "Shape"} and n.input
                and g.types.get(n.input[0]) == fp16 and n.input[0] not in g.inits
                and not (n.input[0] in producer and cast_to(producer[n.input[0]], fp32))}
    return rounded


# The fusions ONNX Runtime's default optimizations make in torch's unfused graphs, each emulated
# (mlas.py, probe.fused_ops) or computing as the ops it replaces (MatMulIntegerToFloat and
# DynamicQuantizeMatMul: the same integer sums times the same scales).
KNOWN_FUSIONS = {"SimplifiedLayerNormalization", "QuickGelu", "FusedMatMul", "MatMulIntegerToFloat",
                 "DynamicQuantizeMatMul"}
NORM_TAPS = {"input_layernorm": "input_norm", "self_attn/q_norm": "q_norm", "self_attn/k_norm": "k_norm",
             "post_attention_layernorm": "post_norm"}  # torch's module path -> the tap


def app_fusions(g: Graph) -> dict[str, str] | None:
    """How the graph's RMSNorms run as an app runs it (ONNX Runtime's default optimizations):
    {tap: "fused"} for those fused into SimplifiedLayerNormalization, {tap: "divided"} for those
    left unfused whose Div(1, sqrt) .. Mul(x, .) DivMulFusion made Div(x, sqrt) (0.6B int8:
    layers.0.input_norm; the other 112 fused), the rest absent. Read from the session's optimized
    model of the weightless graph (the same fusions as with its weights). None where it fuses
    something KNOWN_FUSIONS does not hold, a QuickGelu that is not SiLU (alpha 1), or a norm q3ref
    cannot place."""
    m = optimized_model(g, optimize=True)
    fused = {n.op_type for n in m.graph.node} - {n.op_type for n in g.nodes} - LAYOUT_OPS - {"Split"}  # (Slice pairs: a Split)
    if not fused <= KNOWN_FUSIONS or any(
            n.op_type == "QuickGelu" and any(a.name == "alpha" and a.f != 1.0 for a in n.attribute) for n in m.graph.node):
        return None
    constants = {t.name for t in m.graph.initializer} | {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    modules = "|".join(re.escape(k) for k in NORM_TAPS)
    norms = {}
    for n in m.graph.node:
        place = re.match(rf"/model/(?:layers\.(\d+)/({modules})|norm)/(Mul_1/SimplifiedLayerNormFusion/|Div$)", n.name)
        if n.op_type == "SimplifiedLayerNormalization" and place is None:
            return None  # a fused norm q3ref cannot place
        if place and (n.op_type == "SimplifiedLayerNormalization" or n.op_type == "Div" and n.input[0] not in constants):
            tap = f"layers.{place.group(1)}.{NORM_TAPS[place.group(2)]}" if place.group(1) is not None else "norm"
            norms[tap] = "fused" if n.op_type == "SimplifiedLayerNormalization" else "divided"
    return norms
