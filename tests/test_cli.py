"""The command line as a user meets it: outputs, and one-line errors with exit status 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, ROOT, STRESS, TINY, assert_close
from scripts_texts import CARD_QUERIES


def run(*args, cwd=ROOT, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "q3ref", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env)


def assert_one_line_error(r, match):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert match in lines[0], lines[0]


def test_embed_json_matches_transformers(tmp_path):
    out = tmp_path / "v.npy"
    r = run("embed", *CARD_QUERIES, "--query", "--weights", TINY, "--json", "--out", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"model", "dim", "input_ids", "embeddings"} and doc["dim"] == 16
    assert "random test checkpoint" in r.stderr  # the bundled weights say they are meaningless
    z = np.load(FIXTURES / "transformers/tiny.npz")
    assert doc["input_ids"] == [z["query0/input_ids"].tolist(), z["query1/input_ids"].tolist()]
    ref = np.stack([z["query0/embedding"], z["query1/embedding"]])
    assert_close("embed --json", np.array(doc["embeddings"]), ref, rel=1e-5)
    assert_close("embed --out", np.load(out), ref, rel=1e-5)


def test_embed_compact_prints_similarity():
    r = run("embed", "a cat", "a dog", "--weights", TINY)
    assert r.returncode == 0, r.stderr
    assert "cosine similarity" in r.stdout and r.stdout.count("\n") == 5


def test_embed_ids_needs_no_tokenizer():
    r = run("embed", "--ids", "1,2,3", "--ids", "4, 5", "--weights", STRESS, "--dim", "32", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["input_ids"] == [[1, 2, 3], [4, 5]] and doc["dim"] == 32


def test_trace_writes_every_tap(tmp_path):
    out = tmp_path / "t.npz"
    z = np.load(FIXTURES / "transformers/stress.npz")
    ids = z["len9/input_ids"]
    r = run("trace", "--ids", ",".join(map(str, ids)), "--weights", STRESS, "--out", out)
    assert r.returncode == 0, r.stderr
    t = np.load(out)
    assert len(t.files) == 1 + 3 * 17 + 4 and (t["input_ids"] == ids).all()
    for tap in ("layers.1.q_rope", "layers.2.act", "norm", "embedding"):
        assert_close(tap, t[tap], z[f"len9/{tap}"], rel=1e-5)


@pytest.mark.parametrize("args, message", [
    (["embed", "", "--weights", TINY], "empty text"),
    (["embed", "hi", "--weights", TINY, "--dim", "8"], "hidden size 16 is below 32"),
    (["embed", "--ids", "1,2,151669", "--weights", TINY], "token id 151669 is outside the vocabulary"),
    (["embed", "--ids", "1,x", "--weights", TINY], "--ids takes comma-separated integers"),
    (["embed", "hi", "--weights", STRESS], "has no tokenizer.json"),
    (["embed", "hi", "--weights", "/nonexistent"], "does not exist"),
    (["embed", "hi", "--weights", FIXTURES], "not a checkpoint directory (no config.json)"),
    (["embed", "hi", "--weights", FIXTURES / "qwen3-tokenizer"], "not a checkpoint directory"),
    (["embed", "--weights", TINY], "give a text or --ids"),
    (["embed", "hi", "--frobnicate"], "unrecognized arguments"),
    (["trace", "hi", "--weights", TINY], "required: --out"),
    (["make-checkpoint", "--preset", "9b", "--out", "/tmp/x"], "unknown preset"),
    (["embed", "--ids", "1,2", "--weights", FIXTURES / "qwen35/checkpoint"], "is a Qwen3.5 checkpoint: q3ref reads it"),
    (["diff", FIXTURES / "qwen35/litert/int8.tflite", "--ids", "1,2", "--weights", FIXTURES / "qwen35/checkpoint",
      "--padding", "left", "--length", "9"], "--padding, --length: not used by the diff of a Qwen3.5 graph"),
    (["diff", FIXTURES / "graphs/stress_fp32.tflite", "--ids", "1,2", "--weights", STRESS, "--length", "5"],
     "--length 5: this graph's seq_len 64 is baked in"),
    (["embed", "hi", "--weights", TINY, "--out", FIXTURES], "is a directory; give a file name"),
    (["trace", "hi", "--weights", TINY, "--out", FIXTURES], "is a directory; give a file name"),
    (["diff", FIXTURES / "onnx/stress_int8.onnx", "--ids", "1,2", "--weights", STRESS, "--json", FIXTURES],
     "is a directory; give a file name"),
    (["make-checkpoint", "--preset", "tiny", "--out", FIXTURES / "transformers/stress.npz"], "is a file, not a directory"),
    (["make-checkpoint", "--preset", "tiny", "--out", FIXTURES / "transformers/stress.npz" / "x"], "cannot make the directory"),
    (["make-checkpoint", "--preset", "tiny", "--seed", "-1", "--out", "/tmp/x"], "--seed must be an integer"),
    (["make-checkpoint", "--preset", "qwen3.5-0.8b", "--seed", "-1", "--out", "/tmp/x"], "--seed must be an integer"),
    (["embed", "--ids", "1,,2", "--weights", TINY], "--ids takes comma-separated integers, got '1,,2'"),
    (["embed", "--ids", "1,2", "--strip", "--weights", TINY], "--strip/--max-length apply to text"),
    (["make-checkpoint", "--preset", "tiny", "--out", "/tmp/q3ref-never-made",
      "--tokenizer", FIXTURES / "stress-checkpoint/config.json"], "cannot load tokenizer"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    assert_one_line_error(run(*args), message)


def test_no_weights_found_says_what_to_do(tmp_path):
    r = run("embed", "hi", cwd=tmp_path, env_extra={"Q3REF_WEIGHTS": "", "HF_HOME": str(tmp_path)})
    assert_one_line_error(r, "no Qwen3-Embedding weights found")
    assert "--weights weights/q3ref-tiny" in r.stderr and "download" in r.stderr


def test_env_var_finds_weights(tmp_path):
    r = run("embed", "--ids", "1,2", cwd=tmp_path, env_extra={"Q3REF_WEIGHTS": str(STRESS)})
    assert r.returncode == 0, r.stderr


def test_failed_run_writes_nothing(tmp_path):
    out = tmp_path / "v.npy"
    r = run("embed", "ok", "--ids", "1,999999", "--weights", TINY, "--out", out)
    assert r.returncode == 2 and not out.exists() and not list(tmp_path.iterdir())
    r = run("trace", "--ids", "1,2", "--weights", TINY, "--dim", "999", "--out", tmp_path / "t.npz")
    assert r.returncode == 2 and not list(tmp_path.iterdir())


def test_make_checkpoint_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        assert run("make-checkpoint", "--preset", "tiny", "--seed", "3", "--out", d).returncode == 0
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    r = run("embed", "--ids", "5,6,7", "--weights", a)
    assert r.returncode == 0, r.stderr


def test_a_config_json_that_is_not_json_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text("{")
    for args in (["embed", "--ids", "1,2"], ["inspect", FIXTURES / "onnx/stress_int8.onnx"]):
        assert_one_line_error(run(*args, "--weights", tmp_path), "is not valid JSON")


def test_a_replayed_array_that_is_not_a_recording_is_one_line(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((3, 4), np.float32))
    np.savez(tmp_path / "none.npz", v=np.zeros(3))
    np.savez(tmp_path / "half.npz", **{"r0/ids": np.array([1, 2])})
    for name, message in (("v.npy", "one array, not an .npz of runs"), ("none.npz", "(no run in it)"),
                          ("half.npz", "run r0 has no ids or no pooled output")):
        r = run("diff", FIXTURES / "gguf/base-Q8_0.gguf", "--ids", "1,2", "--weights", FIXTURES / "gguf-checkpoint",
                "--replay", tmp_path / name)
        assert_one_line_error(r, message)


def test_inspect_with_weights_is_a_gate():
    """inspect --weights exits 1 when the file is not the checkpoint's or a weight is not its
    recipe's quantization (a planted gate/up swap), 0 when every weight is bit-identical."""
    for graph, weights, status in ((FIXTURES / "onnx/stress_int8.onnx", STRESS, 0),
                                   (FIXTURES / "onnx/defect_gate_up_swap_2_int8.onnx", STRESS, 1),
                                   (FIXTURES / "graphs/defect_gate_up_swap_2_int8.tflite", STRESS, 1),
                                   (FIXTURES / "gguf/base-Q4_K_M.gguf", FIXTURES / "gguf-checkpoint", 0),
                                   (FIXTURES / "gguf/defect_gate_up_swap_1-Q4_K_M.gguf", FIXTURES / "gguf-checkpoint", 1),
                                   (FIXTURES / "gguf/rerank-Q8_0.gguf", STRESS, 1)):
        r = run("inspect", graph, "--weights", weights)
        assert r.returncode == status and "Traceback" not in r.stderr, (graph.name, r.returncode, r.stderr)
        assert ("DISAGREES" in r.stdout) == (weights == STRESS and graph.suffix == ".gguf"), r.stdout


def test_text_after_options_is_the_text(tmp_path):
    """`diff MODEL --weights W "text"`: argparse had bound diff's optional text when it met MODEL, and
    the text after the options came back as an unrecognized argument. Now both orders are the same
    diff, and embed takes texts on both sides of its options."""
    graph = FIXTURES / "graphs/tiny_dynamic_int8.tflite"
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    r = run("diff", graph, "--weights", TINY, "--json", a, "What is the capital of China?")
    assert r.returncode == 0, r.stderr
    assert run("diff", graph, "What is the capital of China?", "--weights", TINY, "--json", b).returncode == 0
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert ra["tokens"] == rb["tokens"] > 5 and ra["output"] == rb["output"]
    r = run("embed", "one", "--weights", TINY, "--json", "two")
    assert r.returncode == 0 and len(json.loads(r.stdout)["embeddings"]) == 2, r.stderr
    assert_one_line_error(run("diff", graph, "--weights", TINY, "one", "two"), "unrecognized arguments: one two")


def test_a_missing_graph_is_named_before_the_weights_are_looked_for(tmp_path):
    r = run("diff", tmp_path / "nope.tflite", "--ids", "1,2", cwd=tmp_path)  # no weights to be found from here
    assert_one_line_error(r, "nope.tflite: cannot read (No such file or directory)")


def test_int4_on_a_model_too_narrow_for_its_blocks_is_one_line():
    for cmd in ("embed", "quant-report"):  # the tiny checkpoint is 16 wide: no whole block of 32
        assert_one_line_error(run(cmd, "hi", "--weights", TINY, "--quant", "int4-block32"), "not a multiple of 32")


def test_a_plot_format_matplotlib_cannot_write_is_said_before_the_diff(tmp_path):
    r = run("diff", FIXTURES / "graphs/stress_fp32.tflite", "--ids", "1,2", "--weights", STRESS, "--plot", tmp_path / "e.xyz")
    assert_one_line_error(r, "matplotlib cannot write .xyz")
    assert list(tmp_path.iterdir()) == []
