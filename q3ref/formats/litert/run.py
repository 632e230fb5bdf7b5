"""Run a LiteRT graph on one sequence and read intermediate tensors, two ways:

- "xnnpack" (default): the graph is rewritten so the wanted tensors are extra outputs, then run
  with the default resolver (XNNPACK, what a device runs, at full speed).
- "builtin": the builtin kernels with experimental_preserve_all_tensors. Without
  BUILTIN_WITHOUT_DEFAULT_DELEGATES current ai-edge-litert keeps XNNPACK and delegated
  intermediates are undefined; the builtin int8 kernels also quantize activations differently
  (symmetric per row) from XNNPACK (asymmetric per row).
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import Q3RefError
from .graph import NP_DTYPES, Graph


def run(g: Graph, input_ids, mask, tensors=(), kernels="xnnpack") -> dict[int, np.ndarray]:
    """Invoke the graph once; return {tensor index: array} for its outputs and `tensors`."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    threads = os.cpu_count()  # the default is one thread: 16.7 s instead of 9.1 s for 0.6B int8 here
    if kernels == "xnnpack":
        interp = Interpreter(model_content=g.with_outputs(list(tensors)) if tensors else g.bytes(), num_threads=threads)
    elif kernels == "builtin":
        interp = Interpreter(model_content=g.bytes(), experimental_preserve_all_tensors=True, num_threads=threads,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    else:
        raise Q3RefError(f"--kernels must be xnnpack or builtin, got {kernels!r}")
    interp.allocate_tensors()
    ids_t, mask_t = g.input_roles()
    for t, value in ((ids_t, input_ids), (mask_t, mask)):
        dtype = NP_DTYPES.get(g.sg.tensors[t].type)  # read the dtype from the graph, never assume it
        if dtype is None:
            raise Q3RefError(f"graph input {g.names[t]} has dtype {g.type_name(t)}, q3ref feeds integer ids and masks")
        interp.set_tensor(t, np.asarray(value).astype(dtype))
    interp.invoke()
    return {t: interp.get_tensor(t) for t in list(g.sg.outputs) + list(tensors)}  # get_tensor copies
