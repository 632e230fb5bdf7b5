"""diff and inspect on graphs made by litert-torch (tests/fixtures/graphs, scripts/make_graphs.sh).

Correct graphs (fp32, fp16, dynamic_int8, weight_only_int8) must show no divergence on several
inputs, left and right padding, on both ways of reading taps; each graph with a planted defect
must be localized to the defect's layer and stage, including int8 graphs whose output cosine is
inside int8 noise.
"""

import json
import struct
import subprocess
import sys

import numpy as np
import pytest

import q3ref
from q3ref.diff import diff
from q3ref.formats import open_export
from conftest import FIXTURES, STRESS, TINY

GRAPHS = FIXTURES / "graphs"
CORRECT = ["stress_fp32", "stress_fp16", "stress_dynamic_int8", "stress_weight_only_int8"]
DEFECTS = {  # graph -> where the defect starts
    "defect_rope_base": "layers.0.q_rope",
    "defect_q_norm_ones_1": "layers.1.q_norm",
    "defect_gate_up_swap_2": "layers.2.gate",
    "defect_first_token_pool": "pooled",
    "defect_final_norm_scale": "norm",
    "defect_q_norm_ones_1_int8": "layers.1.q_norm",
    "defect_gate_up_swap_2_int8": "layers.2.gate",
}
RNG = np.random.default_rng(11)
INPUTS = {"1 token": [7], "17 tokens": RNG.integers(0, 1000, 17).tolist(), "64 = seq_len": RNG.integers(0, 1000, 64).tolist()}


@pytest.fixture(scope="module")
def model():
    return q3ref.Model(STRESS)


@pytest.mark.parametrize("quant", ["none", "auto"])
@pytest.mark.parametrize("kernels", ["xnnpack", "builtin"])
@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("name", CORRECT)
def test_correct_graphs_do_not_diverge(model, name, padding, kernels, quant):
    g = open_export(GRAPHS / f"{name}.tflite")
    for label, ids in INPUTS.items():
        r = diff(model, g, ids, padding, kernels, quant=quant)
        # where the probe does not find a kernel of this runtime emulated, the report says the simulation is approximate
        probe = r["runtime_kernels"]
        said = ["approximate"] if probe is not None and not probe["emulated"] else []
        assert r["unaligned"] == [] and [w for w in said if any(w in n for n in r["notes"])] == said, (label, r["notes"])
        assert len(r["notes"]) == len(said), (label, r["notes"])
        worst = max((t for t in r["taps"]), key=lambda t: t["local_rel_l2"])
        assert r["first_divergence"] is None, (label, r["first_divergence"], worst["name"])
        floor = 1e-5 if r["precision"] in ("fp32", "fp16") else 0.01
        assert r["output"]["cos"] > 1 - floor, (label, r["output"])


@pytest.mark.parametrize("quant", ["none", "auto"])
@pytest.mark.parametrize("kernels", ["xnnpack", "builtin"])
@pytest.mark.parametrize("name", list(DEFECTS))
def test_defects_are_localized(model, name, kernels, quant):
    g = open_export(GRAPHS / f"{name}.tflite")
    for padding in ("right", "left"):
        r = diff(model, g, INPUTS["17 tokens"], padding, kernels, quant=quant)
        assert r["first_divergence"] is not None, (name, padding)
        assert r["first_divergence"]["name"] == DEFECTS[name], (name, padding, r["first_divergence"])


def test_int8_defect_hides_at_the_output_but_not_in_the_diff(model):
    """The motivating case: an int8 graph with layer 1's q_norm replaced scores an output cosine
    a 0.98-threshold validation would pass, and diff still names the stage."""
    r = diff(model, open_export(GRAPHS / "defect_q_norm_ones_1_int8.tflite"), INPUTS["17 tokens"])
    assert r["output"]["cos"] > 0.98
    assert r["first_divergence"]["name"] == "layers.1.q_norm"


def test_both_reading_paths_give_the_same_fp32_taps(model):
    g = open_export(GRAPHS / "stress_fp32.tflite")
    a = {t["name"]: t for t in diff(model, g, INPUTS["17 tokens"], "right", "xnnpack")["taps"]}
    b = {t["name"]: t for t in diff(model, g, INPUTS["17 tokens"], "right", "builtin")["taps"]}
    for name in a:
        assert abs(a[name]["rel_l2"] - b[name]["rel_l2"]) < 1e-5, name


@pytest.mark.parametrize("name, expected", [("nonames_stress_dynamic_int8", None),
                                            ("nonames_defect_q_norm_ones_1", "layers.1.q_norm")])
def test_numeric_fallback_on_graphs_without_names(model, name, expected):
    """Graphs with every tensor name stripped (scripts/strip_names.py) stand in for other
    converters: the taps are matched by value and the verdict is unchanged."""
    for padding in ("right", "left"):
        r = diff(model, open_export(GRAPHS / f"{name}.tflite"), INPUTS["17 tokens"], padding)
        hows = [t["how"] for t in r["taps"] if t.get("aligned")]
        assert r["unaligned"] == [] and hows.count("numeric") == len(hows) - 1  # all but the output
        assert (r["first_divergence"] or {}).get("name") == expected


def test_inspect_describes_the_graph():
    d = open_export(GRAPHS / "stress_dynamic_int8.tflite").describe()
    assert d["precision"] == "dynamic_int8" and d["seq_len"] == 64 and d["layers"] == 3
    assert d["hidden_size"] == 48 and d["vocab_size"] == 1000
    assert d["fully_connected_weights"] == {"int8": 15} and d["per_channel_quantized_fc"] == 15
    assert d["embedding_table"]["dtype"] == "int8"
    assert [i["dtype"] for i in d["inputs"]] == ["int32", "int32"]
    assert open_export(GRAPHS / "stress_fp16.tflite").describe()["precision"] == "fp16"
    assert open_export(GRAPHS / "stress_weight_only_int8.tflite").describe()["precision"] == "weight_only_int8"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "q3ref", *map(str, args)], capture_output=True, text=True)


def test_diff_cli_json_and_plot(tmp_path):
    rep, png = tmp_path / "r.json", tmp_path / "e.png"
    r = run_cli("diff", GRAPHS / "defect_gate_up_swap_2.tflite", "--ids", "5,6,7,8,9", "--weights", STRESS,
                "--json", rep, "--plot", png, "--padding", "left")
    assert r.returncode == 1, r.stderr  # a divergence was found
    assert "first divergence" in r.stdout and "layers.2.gate" in r.stdout
    d = json.loads(rep.read_text())
    assert {"graph", "precision", "taps", "first_divergence", "output"} <= set(d)
    assert d["first_divergence"]["name"] == "layers.2.gate" and d["first_divergence"]["layer"] == 2
    assert {"name", "layer", "stage", "tensor", "cos", "rel_l2", "max_abs", "diverged"} <= set(d["taps"][1])
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_diff_text_on_bundled_graph():
    r = run_cli("diff", GRAPHS / "tiny_dynamic_int8.tflite", "What is the capital of China?", "--query",
                "--weights", TINY)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no divergence" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["diff", FIXTURES / "qwen3-tokenizer/SOURCE.md", "--ids", "1,2", "--weights", STRESS], "not a format q3ref reads"),
    (["diff", GRAPHS / "tiny_dynamic_int8.tflite", "--ids", "1,2", "--weights", STRESS], "does not fit"),
    (["diff", GRAPHS / "stress_fp32.tflite", "--ids", ",".join(["3"] * 65), "--weights", STRESS], "the graph takes 64"),
    (["inspect", FIXTURES / "transformers/tiny.npz"], "not a format q3ref reads"),
])
def test_bad_graph_inputs(tmp_path, args, message):
    out = tmp_path / "r.json"
    r = run_cli(*args, *(["--json", out] if args[0] == "diff" else []))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not out.exists()


def test_truncate_keeps_eos(model):
    r = diff(model, open_export(GRAPHS / "stress_fp32.tflite"), [3] * 70, truncate=True)
    assert r["tokens"] == 64 and r["first_divergence"] is None


def externalized(graph: bytes) -> bytes:
    """The same graph with its buffers' data and its custom ops' options past the flatbuffer, at
    absolute offsets 64-aligned, as litert-torch writes a graph over 2 GB (a 0.6B in fp32, a 4B
    or 8B in int8, a Qwen3.5 0.8B in fp32)."""
    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils as fu

    m = s.ModelT.InitFromObj(s.Model.GetRootAs(graph, 0))
    blobs = {}  # (buffer index) or (subgraph, operator) -> bytes
    for i, b in enumerate(m.buffers):
        if b.data is not None and len(b.data):
            blobs[i] = bytes(np.asarray(b.data, np.uint8))
            b.data, b.offset, b.size = None, 2 ** 40, len(blobs[i])  # a placeholder of the field's width
    for g, sg in enumerate(m.subgraphs):
        for k, op in enumerate(sg.operators):
            if op.customOptions is not None and len(op.customOptions):
                blobs[g, k] = bytes(np.asarray(op.customOptions, np.uint8))
                op.customOptions, op.largeCustomOptionsOffset, op.largeCustomOptionsSize = None, 2 ** 40, len(blobs[g, k])
    data = bytearray(fu.convert_object_to_bytearray(m))
    model = s.Model.GetRootAs(data, 0)
    for key, blob in blobs.items():
        data += bytes(-len(data) % 64)
        tab = model.Buffers(key)._tab if isinstance(key, int) else model.Subgraphs(key[0]).Operators(key[1])._tab
        struct.pack_into("<Q", data, tab.Pos + tab.Offset(6 if isinstance(key, int) else 22), len(data))
        data += blob
    return bytes(data)


def test_outputs_are_added_to_a_graph_whose_weights_lie_past_its_flatbuffer(tmp_path):
    """XNNPACK reads taps as extra outputs, written into the graph. A graph over 2 GB keeps its
    weights past the flatbuffer, which must stay under 2 GB: appended at the end of the file, the
    new outputs vector made the interpreter refuse a 2.4 GB 0.6B fp32 graph. It now goes at the
    flatbuffer's end, and the weights and their offsets move by a whole 4096 bytes."""
    from ai_edge_litert import schema_py_generated as s
    from q3ref.formats.litert.graph import Graph, external_offsets
    from q3ref.formats.litert.probe import float_fc_graph, run_delegated

    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((5, 300)).astype(np.float32), rng.standard_normal((40, 300)).astype(np.float32)
    inline = float_fc_graph(a.shape, w)
    path = tmp_path / "external.tflite"
    path.write_bytes(externalized(inline))
    before = [v for _, v in external_offsets(s.Model.GetRootAs(path.read_bytes(), 0))]
    rewritten = Graph(path).with_outputs([0])  # the input as an extra output
    after = [v for _, v in external_offsets(s.Model.GetRootAs(rewritten, 0))]
    assert len(before) == 1 and after[0] - before[0] == 4096
    assert len(s.Model.GetRootAs(rewritten, 0).Subgraphs(0).OutputsAsNumpy()) == 2
    got = run_delegated(rewritten, [a])  # (None where the interpreter refuses the graph)
    assert got is not None and np.array_equal(got, run_delegated(inline, [a]))


def test_the_report_names_eigens_block_size_on_the_builtin_kernels():
    """A float graph on the builtin kernels: the probe line names the ops the graph runs and the
    Eigen block size found on this CPU, which the simulation's float GEMM uses."""
    from q3ref.formats.litert.probe import builtin_variant

    max_kc = builtin_variant()["params"]["eigen_max_kc"]
    r = run_cli("diff", GRAPHS / "stress_fp32.tflite", "--ids", "1,2,3,4,5", "--weights", STRESS, "--kernels", "builtin")
    text = " ".join(r.stdout.split())  # (rich wraps lines at 80 columns)
    assert r.returncode == 0, r.stderr
    assert "runtime kernels, probed: ai-edge-litert" in text and "FULLY_CONNECTED_FLOAT" in text
    if max_kc is not None:
        assert f"Eigen's GEMM sums up to {max_kc} inputs a block), which the simulation emulates" in text, text
