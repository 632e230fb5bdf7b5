"""Qwen3.5's LiteRT side (q3ref/qwen35/litert.py, formats/litert/segments.py and litertlm.py) on
graphs that litert-torch's own Qwen3.5 path exported from the tiny checkpoint
(tests/fixtures/qwen35/litert, scripts/export_qwen35_litert.py): fp32 in a .litertlm bundle, int8
(dynamic_wi8_afp32) and fp32 with a planted defect (layer 1's k_norm without its +1). The stock
interpreter cannot run their custom op gated_delta_update; q3ref computes that op itself and the
interpreter runs the rest."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES
from q3ref.errors import Q3RefError
from q3ref.formats.litert import litertlm
from q3ref.formats.litert.probe import xnnpack_variant
from q3ref.formats.litert.segments import Segmented
from q3ref.safetensors_io import open_tensors, write
from q3ref.qwen35 import litert

CKPT = FIXTURES / "qwen35/checkpoint"
GRAPHS = FIXTURES / "qwen35/litert"
Z = np.load(FIXTURES / "qwen35/taps.npz")  # transformers' own taps (test_qwen35.py)
IDS = Z["len130/input_ids"]


def q3ref(*args):
    return subprocess.run([sys.executable, "-m", "q3ref", *map(str, args)], capture_output=True, text=True)


def test_litertlm_reader_agrees_with_the_builders_own_reader():
    """Sections, offsets and types as litert-lm-builder's litertlm_peek printed them (the peek file)."""
    peek = (GRAPHS / "model.litertlm.peek.txt").read_text()
    theirs = [(int(b), int(e), t) for b, e, t in
              re.findall(r"Begin Offset:\s+(\d+)\s+End Offset:\s+(\d+)\s+Data Type:\s+(\w+)", peek)]
    f = litertlm.read(GRAPHS / "model.litertlm")
    assert [(s.begin, s.end, s.kind) for s in f.sections] == theirs and len(theirs) == 4
    assert "LiteRT-LM Version: " + ".".join(map(str, f.version)) in peek
    assert all(s.begin % (16 * 1024) == 0 for s in f.sections)  # sections aligned to 16 KiB
    assert f.data(f.tflite_models()[0])[4:8] == b"TFL3"
    tok = json.loads(f.tokenizer_json())  # 8-byte size + zlib(tokenizer.json), inflated and checked
    assert tok["model"]["type"] == "BPE"


def test_truncated_or_foreign_bundles_are_one_line(tmp_path):
    data = (GRAPHS / "model.litertlm").read_bytes()
    (tmp_path / "cut.litertlm").write_bytes(data[:40000])  # the header survives, the model section does not
    with pytest.raises(Q3RefError, match="outside the file"):
        litertlm.read(tmp_path / "cut.litertlm")
    r = q3ref("inspect", tmp_path / "cut.litertlm")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    (tmp_path / "junk.litertlm").write_bytes(b"LITERTLM" + b"\0" * 16 + (10**9).to_bytes(8, "little"))
    r = q3ref("inspect", tmp_path / "junk.litertlm")
    assert r.returncode == 2 and "outside the file" in r.stderr


def test_inspect_says_the_stock_interpreter_cannot_run_the_custom_op():
    from ai_edge_litert.interpreter import Interpreter

    r = q3ref("inspect", GRAPHS / "model.litertlm")
    assert r.returncode == 0 and "HF_Tokenizer_Zlib" in r.stdout and "prefill_64, decode" in r.stdout
    assert "gated_delta_update" in r.stdout and "does not resolve" in r.stdout
    runner = Interpreter(model_path=str(GRAPHS / "int8.tflite")).get_signature_runner("decode")
    with pytest.raises(RuntimeError, match="unresolved custom op: gated_delta_update"):  # what inspect reports
        runner(**{k: np.zeros(v["shape"], v["dtype"]) for k, v in runner.get_input_details().items()})


def test_the_graphs_states_agree_with_transformers():
    """Independently of q3ref's model: the graph (with q3ref's gated_delta_update) after 5 tokens holds
    transformers' own conv and recurrent states (len5 in taps.npz) to 1e-5 of their size."""
    seg = Segmented(litert.graph_bytes(GRAPHS / "model.litertlm")[0], "prefill_64",
                    {"gated_delta_update": litert.gated_delta_update})
    tokens = np.zeros((1, 64), np.int32)
    tokens[0, :5] = Z["len5/input_ids"]
    states = {k: np.zeros(seg.sg.tensors[i].shape, np.float32) for k, i in seg.inputs.items() if k.startswith("kv_")}
    out, calls, _ = seg.run({"tokens": tokens, "input_pos": np.arange(64, dtype=np.int32),
                             "mask": litert.mask(np.arange(64), 256), **states})
    assert len(calls) == 2 and all(c[0] == "gated_delta_update" for c in calls)
    for i in (0, 2):
        for graph, theirs in ((out[f"kv_cache_r_{i}"][0], Z[f"len5/layers.{i}.recurrent_state"]),
                              (out[f"kv_cache_c_{i}"][0], Z[f"len5/layers.{i}.conv_state"][:, 1:])):
            assert np.abs(graph - theirs).max() <= 1e-5 * np.abs(theirs).max()


@pytest.mark.parametrize("n", [2, 5, 41, 65])  # 64 prompt tokens fill prefill_64 exactly
def test_fp32_graph_matches_the_reference_at_every_state(n):
    """Within 1e-5 of the fp32 reference at every state; and where the probe finds this CPU's
    XNNPACK kernels emulated, the simulation (f32-gemm's and f32-dwconv's FMA chains, the float
    ops) is the graph's to the bit."""
    r = litert.diff(GRAPHS / "model.litertlm", CKPT, IDS[:n])
    assert r["first_divergence"] is None and r["precision"] == "fp32"
    assert {t["step"] for t in r["taps"]} == {"prefill", "decode"} and r["taps"][-1]["name"] == "logits"
    if xnnpack_variant()["emulated"]:
        assert all(t["rel_err"] == 0 for t in r["taps"]) and max(t["rel_err_fp32"] for t in r["taps"]) < 1e-5
    else:
        assert max(t["rel_err"] for t in r["taps"]) < 1e-5


@pytest.mark.parametrize("n", [2, 5, 17, 65])  # 1 prompt token; 17, where a rounding flipped before the float ops were XNNPACK's
def test_int8_graph_is_explained_by_the_simulation(n):
    """dynamic_wi8_afp32: XNNPACK's dynamic int8 FULLY_CONNECTED (in_proj_a's with dt_bias as its
    bias), the builtin hybrid depthwise conv (its input quantized as one tensor per call), and,
    where the probe finds this CPU's XNNPACK kernels emulated, every float op as XNNPACK runs it.
    Then every stage is the graph's to the bit and held to fp32's 1e-4; elsewhere to 5e-2. The
    fp32 reference is 1e-3 and more away either way."""
    r = litert.diff(GRAPHS / "int8.tflite", CKPT, IDS[:n])
    assert r["precision"] == "int8" and r["first_divergence"] is None
    assert min(t["rel_err_fp32"] for t in r["taps"] if t["stage"] in ("q", "core", "logits")) > 1e-3
    if xnnpack_variant()["emulated"]:
        assert r["tolerance"] == 1e-4 and all(t["rel_err"] == 0 for t in r["taps"]), r["taps"]
    else:
        assert r["tolerance"] == 5e-2


def test_int8_graph_where_exp_differs_keeps_the_other_ops_exact(monkeypatch):
    """Verdicts are per op: on a build whose EXP differs (NaN where this one gives 0, say), the
    softplus falls back to NumPy's and the report names EXP and holds the graph to 5e-2; every
    other float op stays emulated, so the stages before the first softplus (layer 0's conv, q, k,
    v, beta) are still the graph's to the bit."""
    from q3ref.formats.litert import probe

    real = probe.xnnpack_variant()
    if not real["emulated"]:
        pytest.skip("this CPU's XNNPACK float kernels are not emulated")
    fake = dict(real, ops={**real["ops"], "EXP": False}, variant="unknown", emulated=False)
    monkeypatch.setattr(probe, "xnnpack_variant", lambda: fake)
    r = litert.diff(GRAPHS / "int8.tflite", CKPT, IDS[:20])
    assert r["tolerance"] == litert.TOLERANCE_NOT_EMULATED and "EXP not emulated" in r["compared_with"]
    assert r["runtime_kernels"]["ops"]["LOGISTIC"] and not r["runtime_kernels"]["emulated"]
    err = {t["name"]: t["rel_err"] for t in r["taps"] if t["step"] == "prefill"}
    assert all(err[f"layers.0.{s}"] == 0 for s in ("conv_state", "q", "k", "v", "beta")), err
    assert err["layers.0.g"] > 0  # NumPy's softplus, not the graph's


def test_int8_graph_of_other_weights_is_named_where_they_differ(tmp_path):
    """The checkpoint's layer 2 dt_bias moved by 1e-3 (the graph keeps the old one): under the
    5e-2 an int8 graph got before its float ops were emulated, nothing would be named; now its
    first effect, layer 2's g, is."""
    if not xnnpack_variant()["emulated"]:
        pytest.skip("this CPU's XNNPACK float kernels are not emulated: int8 stages are held to 5e-2")
    other = tmp_path / "ckpt"
    other.mkdir()
    (other / "config.json").write_bytes((CKPT / "config.json").read_bytes())
    tensors = open_tensors(CKPT / "model.safetensors")
    name = "model.layers.2.linear_attn.dt_bias"
    moved = {k: (dt, a.shape, (lambda a=a, k=k: a + np.float32(1e-3) if k == name else np.array(a)))
             for k, (dt, a) in tensors.items()}
    write(other / "model.safetensors", moved)
    r = litert.diff(GRAPHS / "int8.tflite", other, IDS[:20])
    first = r["first_divergence"]
    assert (first["step"], first["name"]) == ("prefill", "layers.2.g") and 1e-4 < first["rel_err"] < 5e-2
    assert all(t["rel_err"] == 0 for t in r["taps"][:r["taps"].index(next(t for t in r["taps"] if not t["ok"]))])


def test_int8_simulation_needs_the_conv_per_call():
    """Quantizing the conv's input over the whole sequence at once (not per graph call) leaves the
    decode step off while the prefill still lands: the per-call scale is part of what the graph computes."""
    def worst(r, step):
        return max(t["rel_err"] for t in r["taps"] if t["step"] == step)

    right = litert.diff(GRAPHS / "int8.tflite", CKPT, IDS[:41])
    orig = litert.int8_simulation
    try:
        litert.int8_simulation = lambda calls, cache, inv_freq: orig([sum(calls)], cache, inv_freq)
        wrong = litert.diff(GRAPHS / "int8.tflite", CKPT, IDS[:41])
    finally:
        litert.int8_simulation = orig
    assert worst(right, "prefill") < 1e-5 and worst(right, "decode") < 1e-5
    assert worst(wrong, "prefill") < 1e-5 and worst(wrong, "decode") > 1e-3


def test_planted_defect_is_named(tmp_path):
    r = q3ref("diff", GRAPHS / "defect_k_norm.tflite", "--weights", CKPT, "--ids", ",".join(map(str, IDS[:20])),
              "--json", tmp_path / "r.json")
    assert r.returncode == 1, r.stderr
    first = json.loads((tmp_path / "r.json").read_text())["first_divergence"]
    assert (first["step"], first["name"], first["layer"], first["stage"]) == ("prefill", "layers.1.k_rope", 1, "k_rope")
    assert "first divergence: prefill layers.1.k_rope" in r.stdout
    r = q3ref("diff", GRAPHS / "model.litertlm", "--weights", CKPT, "--ids", ",".join(map(str, IDS[:20])))
    assert r.returncode == 0 and "no divergence" in r.stdout
    # the probe's verdict on the ops this fp32 graph runs: its float conv and product, no int8 kernel
    line = next(x for x in r.stdout.splitlines() if x.startswith("runtime kernels, probed:"))
    assert "DEPTHWISE_CONV_2D_FLOAT" in line and "FULLY_CONNECTED_FLOAT" in line and "INT8" not in line, line


def test_a_wrong_reading_of_the_custom_op_is_caught():
    """The decode steps carry a state in: an op that dropped it (started from zeros) is found there."""
    orig = litert.gated_delta_update
    try:
        litert.gated_delta_update = lambda q, k, v, b, g, s: orig(q, k, v, b, g, np.zeros_like(s))
        r = litert.diff(GRAPHS / "model.litertlm", CKPT, IDS[:20])
    finally:
        litert.gated_delta_update = orig
    assert r["first_divergence"]["step"] == "decode" and r["first_divergence"]["stage"] == "recurrent_state"


def test_bad_inputs_are_one_line(tmp_path):
    from q3ref.qwen35.checkpoint import make_checkpoint
    from q3ref.qwen35.config import Qwen35Config

    config = json.loads((CKPT / "config.json").read_text()) | {"linear_num_value_heads": 2}
    make_checkpoint(tmp_path / "other", Qwen35Config.from_dict(config), config=config)
    cases = [(GRAPHS / "int8.tflite", tmp_path / "other", "1,2,3", "kv_cache_r_0 is [1, 4, 16, 16]"),
             (GRAPHS / "int8.tflite", CKPT, "0,2,3", "pad token"),
             (GRAPHS / "int8.tflite", CKPT, "1,600", "outside the vocabulary"),
             (GRAPHS / "int8.tflite", CKPT, ",".join(["3"] * 70), "do not fit"),
             (FIXTURES / "graphs/stress_fp32.tflite", CKPT, "1,2,3", "no signature 'decode'"),
             (tmp_path / "missing.tflite", CKPT, "1,2,3", "cannot read")]
    for graph, ckpt, ids, says in cases:
        r = q3ref("diff", graph, "--weights", ckpt, "--ids", ids, "--json", tmp_path / "r.json")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, (says, r.stderr)
        assert not (tmp_path / "r.json").exists()


def test_a_graph_whose_weights_lie_past_its_flatbuffer_is_diffed_the_same(tmp_path):
    """litert-torch writes a graph's weights, and its custom ops' options, past its flatbuffer, at
    absolute offsets, once its fp32 module passes 2 GB: the full-size Qwen3.5 0.8B exports are
    such graphs. Each segment the diff cuts carries the weights its ops read (and only those), and
    none of the cut-out ops' options; the interpreter refused the segments before ("Constant
    buffer ... specified an out of range offset", then "Custom Option Offset ... out of bound")."""
    from test_litert import externalized

    path = tmp_path / "external.tflite"
    path.write_bytes(externalized((GRAPHS / "int8.tflite").read_bytes()))
    inline, moved = (litert.diff(g, CKPT, IDS[:9]) for g in (GRAPHS / "int8.tflite", path))
    assert [t["rel_err"] for t in moved["taps"]] == [t["rel_err"] for t in inline["taps"]]
    assert [t["rel_err_fp32"] for t in moved["taps"]] == [t["rel_err_fp32"] for t in inline["taps"]]


def test_rope_frequencies_are_the_graphs_only_within_two_ulps(tmp_path):
    """The graph's RoPE frequencies come from torch's fp32 pow at export: within 2 ulps of the
    config's they are taken as the same (on the 0.8B, 5 of 32 are 1 ulp apart, and the full-size
    diff is then exact at every stage: bench/RESULTS.md). A config whose rope_theta is 1e6 where
    the graph was exported with 1e7 is named at the frequencies, before any k_rope."""
    r = litert.diff(GRAPHS / "int8.tflite", CKPT, IDS[:9])
    assert r["taps"][0]["name"] == "rotary.inv_freq" and r["taps"][0]["ok"]
    other = tmp_path / "ckpt"
    other.mkdir()
    config = json.loads((CKPT / "config.json").read_text())
    config["rope_parameters"]["rope_theta"] = 1e6
    (other / "config.json").write_text(json.dumps(config))
    (other / "model.safetensors").symlink_to(CKPT / "model.safetensors")
    first = litert.diff(GRAPHS / "int8.tflite", other, IDS[:9])["first_divergence"]
    assert (first["step"], first["name"], first["stage"]) == ("prefill", "rotary.inv_freq", "inv_freq")
