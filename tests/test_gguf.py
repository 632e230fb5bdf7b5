"""GGUF: files written by llama.cpp's own converter and quantizer, llama.cpp's own nodes recorded
from its run (scripts/export_gguf.py; tests/fixtures/gguf/VERSION says which llama.cpp).
The checkpoint is tests/fixtures/gguf-checkpoint (D=256, 2 layers, vocabulary cut to 1000)."""

import subprocess
import sys

import numpy as np
import pytest

import q3ref
from conftest import FIXTURES
from gguf_files import rewrite_metadata
from q3ref.diff import diff
from q3ref.errors import Q3RefError
from q3ref.formats import open_export

GGUF = FIXTURES / "gguf"
CKPT = FIXTURES / "gguf-checkpoint"
CORRECT = ["base-F16", "base-Q8_0", "base-Q6_K", "base-Q4_K_M"]
DEFECTS = {"defect_q_norm_ones_1-Q4_K_M": "layers.1.q_norm", "defect_gate_up_swap_1-Q4_K_M": "layers.1.gate",
           "meta_rope_base-Q4_K_M": "layers.0.q_rope"}


@pytest.fixture(scope="module")
def model():
    return q3ref.Model(CKPT)


def replayed(name):
    g = open_export(GGUF / f"{name}.gguf")
    g.replay(GGUF / f"taps_{name}.npz")
    return g, np.load(GGUF / f"taps_{name}.npz")["0/ids"]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "q3ref", *map(str, args)], capture_output=True, text=True)


# ------------------------------------------------------------------ reading
def test_reads_metadata_names_and_types():
    d = open_export(GGUF / "base-Q4_K_M.gguf").describe()
    assert (d["format"], d["architecture"], d["file_type"], d["pooling"]) == ("gguf", "qwen3", "Q4_K_M", "last")
    assert (d["add_eos"], d["add_bos"], d["eos_id"], d["pad_id"]) == (True, False, 997, 997)
    assert (d["hidden_size"], d["layers"], d["vocab_size"], d["rope_base"]) == (256, 2, 1000, 1e6)
    assert d["tensor_types"] == {"F32": 9, "Q4_K": 12, "Q6_K": 3}  # the M mix: some tensors at Q6_K
    g = open_export(GGUF / "base-Q8_0.gguf")
    assert g.file.names["layers.1.self_attn.o_proj.weight"] == "blk.1.attn_output.weight"
    assert g.file.names["embed_tokens.weight"] == "token_embd.weight" and g.check_config(q3ref.Model(CKPT).cfg) == []


def test_weights_from_a_gguf_run_the_reference(model):
    """--weights MODEL.gguf: the BF16 file holds the bf16 checkpoint's values exactly, so the
    embedding is the checkpoint's to the bit; Q8_0's dequantized weights move it a little."""
    ids = [5, 17, 300, 997]
    ref = model.encode_ids([ids])
    assert np.array_equal(q3ref.load(GGUF / "base-BF16.gguf").encode_ids([ids]), ref)
    q8 = q3ref.load(GGUF / "base-Q8_0.gguf").encode_ids([ids])
    assert 0 < np.linalg.norm(q8 - ref) < 0.05
    r = cli("embed", "--ids", ",".join(map(str, ids)), "--weights", GGUF / "base-Q8_0.gguf", "--json")
    assert r.returncode == 0, r.stderr
    assert "pass token ids" in cli("embed", "hello", "--weights", GGUF / "base-Q8_0.gguf").stderr


# ------------------------------------------------------------------ diff against llama.cpp's nodes
@pytest.mark.parametrize("name", CORRECT)
def test_correct_files_show_no_divergence(model, name):
    g, ids = replayed(name)
    r = diff(model, g, ids, quant="none")
    assert r["first_divergence"] is None, r["first_divergence"]
    assert r["unaligned"] == [] and all(t["how"] == "structure" for t in r["taps"] if t["name"] not in ("embedding",))
    assert r["output"]["cos"] > 0.99


@pytest.mark.parametrize("name", DEFECTS)
def test_defects_are_localized(model, name):
    g, ids = replayed(name)
    r = diff(model, g, ids, quant="none")
    assert r["first_divergence"]["name"] == DEFECTS[name], r["first_divergence"]


def test_replay_refuses_ids_it_has_no_run_of(model):
    g, ids = replayed("base-Q8_0")
    with pytest.raises(Q3RefError, match="holds no run of these ids"):
        diff(model, g, np.append(ids[:-2], ids[-1]), quant="none")


def test_cli_diff_replays_and_names_the_defect():
    g, ids = replayed("defect_q_norm_ones_1-Q4_K_M")
    r = cli("diff", g.path, "--weights", CKPT, "--replay", g.recording, "--ids", ",".join(map(str, ids)), "--quant", "none")
    assert r.returncode == 1 and "layers.1.q_norm" in r.stdout, r.stdout + r.stderr


# ------------------------------------------------------------------ check: the metadata bugs
METADATA_DEFECTS = {
    "no_add_eos": ({"tokenizer.ggml.add_eos_token": (None, None)}, "the tokenizer appends the EOS"),
    "pooling_mean": ({"qwen3.pooling_type": (1, "UINT32")}, "pooling type is last-token"),
    "eos_im_end": ({"tokenizer.ggml.eos_token_id": (999, "UINT32")}, "the EOS id is <|endoftext|>"),
}


def test_check_passes_a_correct_file_with_and_without_a_checkpoint():
    for args in ([], ["--weights", CKPT]):
        r = cli("check", GGUF / "base-Q4_K_M.gguf", *args)
        assert r.returncode == 0 and "FAIL" not in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("defect", METADATA_DEFECTS)
def test_check_names_each_metadata_defect_with_its_fix(tmp_path, defect):
    import gguf

    change, check_name = METADATA_DEFECTS[defect]
    change = {k: (v, getattr(gguf.GGUFValueType, t) if t else None) for k, (v, t) in change.items()}
    path = rewrite_metadata(GGUF / "base-Q4_K_M.gguf", tmp_path / f"{defect}.gguf", change)
    r = cli("check", path)
    failed = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 1 and len(failed) == 1 and check_name in failed[0], r.stdout + r.stderr
    assert "fix:" in r.stdout


def test_check_names_the_rope_base_given_the_checkpoint():
    r = cli("check", GGUF / "meta_rope_base-Q4_K_M.gguf", "--weights", CKPT)
    failed = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 1 and len(failed) == 1 and "rope base" in failed[0], r.stdout


# ------------------------------------------------------------------ bad input: one line, exit 2
def one_line_exit_2(r, match):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert match in lines[0], lines[0]


def test_bad_files_are_one_line_errors(tmp_path):
    raw = (GGUF / "base-Q4_K_M.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(raw[:len(raw) // 3])
    one_line_exit_2(cli("inspect", tmp_path / "cut.gguf"), "not a readable GGUF")
    (tmp_path / "magic.gguf").write_bytes(b"GGUX" + raw[4:])
    one_line_exit_2(cli("inspect", tmp_path / "magic.gguf"), "not a format q3ref reads")
    import gguf

    llama = rewrite_metadata(GGUF / "base-Q4_K_M.gguf", tmp_path / "llama.gguf",
                             {"general.architecture": ("llama", gguf.GGUFValueType.STRING)})
    one_line_exit_2(cli("inspect", llama), "architecture 'llama'")


def test_an_unhandled_tensor_type_is_named_with_the_supported_list(tmp_path):
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "q41.gguf"), arch="qwen3")
    x = np.random.default_rng(0).standard_normal((4, 256)).astype(np.float32)
    w.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q4_1),
                 raw_dtype=gguf.GGMLQuantizationType.Q4_1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    one_line_exit_2(cli("inspect", tmp_path / "q41.gguf"), "tensor type Q4_1 is not handled by q3ref (it handles F32")
