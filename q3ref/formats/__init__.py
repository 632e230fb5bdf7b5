"""Export formats q3ref reads, one package each, all behind the same small face.

    open_export(path) -> Export      the format is told from the file's first bytes, not its name

An Export (formats/<name>/__init__.py) has:
    path, format, precision         what the file is; precision names its recipe (fp32, dynamic_int8, ...)
    seq_len                         the fixed sequence length, or None when the graph takes any length
    output_tap                      which tap the graph's output is ("embedding"; "pooled" when
                                    normalizing is the bridge's job; "norm" when pooling is too;
                                    "score" for a reranker's (P(yes), P(no)), model.RANK_TAPS)
    head_ids() -> [int]             where output_tap is "score": the token ids of the LM head rows
                                    its score reads, in its order (a GGUF's labels, yes and no)
    runtimes                        the ways it can be run (first = default)
    describe() -> dict              inputs, outputs, precision, layer count, sizes
    summary(describe()) -> [str]    inspect's lines for a person
    check_config(cfg) -> [str]      where the file disagrees with config.json, in words
    align(cfg) -> ({tap: Aligned}, [notes])      which tensor is which tap
    float_tensors() -> [key]        every float activation (for the numeric fallback)
    run(input_ids, mask, tensors, runtime) -> {key: array}   one sequence; the output under `output`
    tensor_name(key) -> str
    limits(simulated) -> {stage: rel L2}   local error allowed where its precision explains error
                                    (simulated: where the simulation is not the runtime's arithmetic)
    simulation -> str | None        q3ref's simulation of its recipe (quant.SIMULATIONS), if any
    simulate(weights, kernels, runtime, offset) -> (weights, kernel dict)   that simulation, for model.forward
    runtime_note(runtime, simulated) -> dict | None   which kernels the runtime runs on this CPU,
                                    found by running one-op graphs (formats/*/probe.py): {"variant",
                                    "ops", "runtime", "cpu", "emulated"}; None where nothing is probed
    read_by(runtime) -> str         how the taps were read, for the report
    untapped(input_ids, mask, runtime) -> (how, output) | None   the graph run as an app runs it,
                                    when the tapped run is not that run (ONNX: no extra outputs,
                                    default optimizations); None where it is
    check_weights(weights, cfg) -> [row]         quantized weights vs q3ref's quantization; every row
                                    has "weight" and "equal" (bit for bit), and figures of its format's own
    per_tensor_activations() -> bool    one activation scale per tensor (a text's embedding then
                                    depends on its padding and batch: check measures it)
    padding_note() -> str | None    why this file gives wrong numbers when padded on the left, if it does
    bridge_checks(cfg, kind) -> [(name, ok, figure, fix)]   what the file itself says about the bridge
                                    (GGUF metadata: pooling, EOS; a reranker's rank head and prompt,
                                    kind: the checkpoint's, "reranker" or "embedding", if known);
                                    [] where the file says nothing
The diff, the checks and the report use only this face.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import Q3RefError
from . import gguf, litert, onnx

FORMATS = (gguf, litert, onnx)  # gguf first: its magic is exact; ONNX's test is loose


def open_export(path):
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise Q3RefError(f"{path}: cannot read ({e.strerror})") from None
    for fmt in FORMATS:
        if fmt.match(head):
            return fmt.open(path)
    raise Q3RefError(f"{path}: not a format q3ref reads (expected a LiteRT .tflite, an ONNX model or a GGUF; "
                     f"first bytes {head[:8]!r})")
