"""Run an ONNX graph on one sequence with ONNX Runtime (CPU) and read intermediate tensors.

The wanted tensors become extra graph outputs. Graph optimizations are off while tapping: ORT
skips a fusion (SimplifiedLayerNormalization, DynamicQuantizeMatMul) when an intermediate is a
graph output, so a tapped optimized run is neither the optimized run nor the plain one.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ...errors import Q3RefError
from .graph import Graph


@contextlib.contextmanager
def with_outputs(g: Graph, tensors):
    """The graph's ModelProto with `tensors` appended to its outputs, each typed by shape inference
    where it can (fp16 graphs have fp16 intermediates), else left untyped; restored on exit. In
    place: a copy of a 600 MB int8 graph cost 5 s of the full-size diff's 35."""
    import onnx

    m, tapped = g.model, set(tensors)
    outputs, value_info = list(m.graph.output), list(m.graph.value_info)
    # A tapped tensor's own value_info must agree with the output type we declare; the fp16
    # converter's may not (Graph.types), so it goes and ORT infers the type from the node.
    m.graph.ClearField("value_info")
    m.graph.value_info.extend(v for v in value_info if v.name not in tapped)
    have = {o.name for o in outputs}
    for t in tensors:
        if t in have:
            continue
        if g.types.get(t):
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, g.types[t], None))
        else:  # a contrib op's output (MatMulNBits...): shape inference stops there; ORT types it itself
            m.graph.output.append(onnx.ValueInfoProto(name=t))
    try:
        yield m
    finally:
        m.graph.ClearField("output")
        m.graph.output.extend(outputs)
        m.graph.ClearField("value_info")
        m.graph.value_info.extend(value_info)


def light_copy(g: Graph, model, inline=False):
    """`model` (g's ModelProto, extra outputs and all, parsed without its weights' bytes) whose
    initializers point at their own spans of g's file as external data (layout.py); or, `inline`,
    carry those bytes again."""
    import onnx

    from .layout import read_span

    m, src, spans = onnx.ModelProto(), model.graph, g.raw_data_spans
    for f in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(m, f, getattr(model, f))
    m.opset_import.extend(model.opset_import)
    m.metadata_props.extend(model.metadata_props)
    m.functions.extend(model.functions)
    m.graph.name = src.name
    for f in ("node", "input", "output", "value_info", "sparse_initializer", "quantization_annotation"):
        getattr(m.graph, f).extend(getattr(src, f))
    for t in src.initializer:
        if t.name not in spans:  # in an .onnx_data file already (same directory), or typed values
            m.graph.initializer.append(t)
            continue
        if inline:
            m.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims,
                                    raw_data=read_span(g.path, spans[t.name]))
            continue
        offset, length = spans[t.name]
        e = m.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims,
                                    data_location=onnx.TensorProto.EXTERNAL)
        for key, value in (("location", g.path.name), ("offset", offset), ("length", length)):
            e.external_data.add(key=key, value=str(value))
    return m


def session(g: Graph, model=None, optimize=False):
    """An ORT session of g's own file (model None), or of `model`: g with extra outputs, as a
    light copy beside g's file, since external data paths resolve beside the model and ORT refuses
    paths out of its directory, symbolic links included."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.intra_op_num_threads = os.cpu_count() or 1
    opts.log_severity_level = 3
    if model is None:
        return ort.InferenceSession(str(g.path), opts, providers=["CPUExecutionProvider"])
    path = g.path.parent / f".{g.path.stem}.q3ref-{os.getpid()}.onnx"
    try:
        path.write_bytes(light_copy(g, model).SerializeToString())
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except OSError as e:
        if not any(i.data_location == 1 for i in model.graph.initializer):  # TensorProto.EXTERNAL
            # all in one file: the whole tapped graph can go to ORT as bytes, slower but not beside it
            whole = light_copy(g, model, inline=True).SerializeToString()
            return ort.InferenceSession(whole, opts, providers=["CPUExecutionProvider"])
        raise Q3RefError(f"{g.path}: cannot write a tapped copy beside it ({e.strerror}); copy the model "
                         "and its .onnx_data into a writable directory") from None
    finally:
        path.unlink(missing_ok=True)


def feeds(g: Graph, input_ids, mask):
    S = input_ids.shape[1]
    values = {"input_ids": input_ids, "attention_mask": mask, "position_ids": np.arange(S)[None]}
    unknown = [n for n in g.inputs if n not in values]
    if unknown:
        raise Q3RefError(f"{g.path}: graph inputs {unknown} are not input_ids, attention_mask or position_ids")
    return {n: np.asarray(values[n]).astype(np.int64) for n in g.inputs}


def run(g: Graph, input_ids, mask, tensors=(), optimize=False) -> dict[str, np.ndarray]:
    """Invoke once; {tensor name: array} for the output and `tensors`, as float32. Without
    `tensors` it is g's own file that runs."""
    tensors = [t for t in tensors if t != g.output]
    if tensors:
        with with_outputs(g, tensors) as model:
            sess = session(g, model, optimize)
    else:
        sess = session(g, None, optimize)
    names = [g.output] + tensors
    got = sess.run(names, feeds(g, input_ids, mask))
    return {n: np.asarray(v, np.float32) for n, v in zip(names, got)}
