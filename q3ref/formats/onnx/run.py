"""Run an ONNX graph on one sequence with ONNX Runtime (CPU) and read intermediate tensors.

The wanted tensors become extra graph outputs. Graph optimizations are off while tapping: ORT
skips a fusion (SimplifiedLayerNormalization, DynamicQuantizeMatMul) when an intermediate is a
graph output, so a tapped optimized run is neither the optimized run nor the plain one.
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import Q3RefError
from .graph import Graph


def tapped_copy(g: Graph, tensors, inline=False):
    """A new ModelProto: g with `tensors` appended to its outputs, each typed by shape inference
    where it can (fp16 graphs have fp16 intermediates), else left untyped; its initializers point
    at their own spans of g's file as external data (layout.py), or, `inline`, carry those bytes.
    g.model holds no weights' bytes, so the copy is small."""
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
        if g.types.get(t):
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, g.types[t], None))
        else:  # a contrib op's output (MatMulNBits...): shape inference stops there; ORT types it itself
            m.graph.output.append(onnx.ValueInfoProto(name=t))
    for t in src.graph.initializer:
        if t.name not in spans:  # in an .onnx_data file already (same directory), or typed values
            m.graph.initializer.append(t)
        elif inline:
            m.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims,
                                    raw_data=read_span(g.path, spans[t.name]))
        else:
            offset, length = spans[t.name]
            e = m.graph.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims,
                                        data_location=onnx.TensorProto.EXTERNAL)
            for key, value in (("location", g.path.name), ("offset", offset), ("length", length)):
                e.external_data.add(key=key, value=str(value))
    return m


def session(g: Graph, tensors=(), optimize=False):
    """An ORT session of g's own file (no `tensors`), or of g with `tensors` as extra outputs: a
    tapped copy beside g's file, since external data paths resolve beside the model and ORT
    refuses paths out of its directory, symbolic links included."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    opts.intra_op_num_threads = os.cpu_count() or 1
    opts.log_severity_level = 3
    if not tensors:
        return ort.InferenceSession(str(g.path), opts, providers=["CPUExecutionProvider"])
    path = g.path.parent / f".{g.path.stem}.q3ref-{os.getpid()}.onnx"
    try:
        path.write_bytes(tapped_copy(g, tensors).SerializeToString())
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except OSError as e:
        if not any(i.data_location == 1 for i in g.model.graph.initializer):  # TensorProto.EXTERNAL
            # all in one file: the whole tapped graph can go to ORT as bytes, slower but not beside it
            whole = tapped_copy(g, tensors, inline=True).SerializeToString()
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
    names = [g.output] + tensors
    try:
        got = session(g, tensors, optimize).run(names, feeds(g, input_ids, mask))
    except Exception as e:  # ORT's own exception classes (Fail, RuntimeException, ...) share no base but Exception
        if not type(e).__module__.startswith("onnxruntime"):
            raise
        raise Q3RefError(f"{g.path}: ONNX Runtime failed on {input_ids.shape[1]} positions: "
                         f"{str(e).splitlines()[0]}") from None
    return {n: np.asarray(v, np.float32) for n, v in zip(names, got)}
