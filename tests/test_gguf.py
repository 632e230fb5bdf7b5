"""GGUF: files written by llama.cpp's own converter and quantizer, llama.cpp's own nodes recorded
from its run (scripts/export_gguf.py; tests/fixtures/gguf/VERSION says which llama.cpp).
The checkpoint is tests/fixtures/gguf-checkpoint (D=256, 2 layers, vocabulary cut to 1000)."""


import numpy as np
import pytest

import q3ref
from conftest import FIXTURES, TINY, cli, one_line_exit_2
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


def replayed(name, run="0"):
    g = open_export(GGUF / f"{name}.gguf")
    g.replay(GGUF / f"taps_{name}.npz")
    return g, np.load(GGUF / f"taps_{name}.npz")[f"{run}/ids"]


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


@pytest.mark.parametrize("name", ["base-Q4_K_M", "base-Q8_0", "base-Q4_0", "base-BF16", "base-F16"])
def test_streaming_embedding_rows_are_the_tables_rows(name):
    """Streaming, a GGUF's embedding rows are dequantized alone (the ONNX simulation reads a
    table's min and max block by block, and each block used to dequantize the whole table).
    They must be the whole table's rows: repeated, unsorted ids, the first and last rows."""
    from q3ref.formats.gguf.weights import GGUFWeights

    ids = np.array([999, 5, 0, 5, 417])
    whole = GGUFWeights(GGUF / f"{name}.gguf", resident=True)
    rows = GGUFWeights(GGUF / f"{name}.gguf", resident=False).embed_rows(ids)  # [5, D]
    assert rows.dtype == np.float32 and np.array_equal(rows, whole["embed_tokens.weight"][ids])


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


def test_replay_refuses_a_recording_of_another_file(tmp_path):
    """A base file's runs replayed against the defective file (same embedding table) would show
    no defect: the recording names its file by sha256. One without that name is held to the
    file's embedding rows, which tell an F16 file's runs from a Q8_0 file's."""
    g = open_export(GGUF / "defect_q_norm_ones_1-Q4_K_M.gguf")
    with pytest.raises(Q3RefError, match="was recorded from base-Q4_K_M.gguf"):
        g.replay(GGUF / "taps_base-Q4_K_M.npz")
    z = np.load(GGUF / "taps_base-F16.npz")
    unnamed = tmp_path / "taps.npz"
    np.savez(unnamed, **{k: z[k] for k in z.files if not k.startswith("file_")})
    open_export(GGUF / "base-F16.gguf").replay(unnamed)  # its own file: accepted
    with pytest.raises(Q3RefError, match="is not a recording of .*base-Q8_0.gguf: its embedding rows"):
        open_export(GGUF / "base-Q8_0.gguf").replay(unnamed)


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


# ------------------------------------------------------------------ weights: byte for byte
@pytest.mark.parametrize("name", ["base-F16", "base-BF16", "base-Q8_0", "base-Q4_0", "base-Q4_K_M", "base-Q5_K_M", "base-Q6_K"])
def test_every_quantized_tensor_is_byte_identical_to_q3refs_quantization(model, name):
    rows = open_export(GGUF / f"{name}.gguf").check_weights(model.weights, model.cfg)
    assert len(rows) == 15 and all(r["equal"] for r in rows), [r for r in rows if not r["equal"]]
    assert {r["type"] for r in rows} == {"F16": {"F16"}, "BF16": {"BF16"}, "Q8_0": {"Q8_0"}, "Q4_0": {"Q4_0", "Q6_K"},
                                         "Q4_K_M": {"Q4_K", "Q6_K"}, "Q5_K_M": {"Q5_K", "Q6_K"},
                                         "Q6_K": {"Q6_K"}}[name.removeprefix("base-")]


def test_check_weights_names_the_tensors_a_file_swapped(model):
    rows = open_export(GGUF / "defect_gate_up_swap_1-Q4_K_M.gguf").check_weights(model.weights, model.cfg)
    assert sorted(r["weight"] for r in rows if not r["equal"]) == ["layers.1.mlp.gate_proj.weight", "layers.1.mlp.up_proj.weight"]


def test_quantizers_handle_all_zero_and_constant_blocks():
    from q3ref.formats.gguf.quants import QUANTIZERS

    w = np.zeros((2, 256), np.float32)
    w[1] = 0.25
    for t, quantize in QUANTIZERS.items():
        import gguf

        back = gguf.quants.dequantize(quantize(w), gguf.GGMLQuantizationType[t]).reshape(w.shape)
        assert np.isfinite(back).all() and np.abs(back - w).max() <= 0.25 * 2 ** -5, t


# ------------------------------------------------------------------ the simulation against llama.cpp
EXACT = ["base-F16", "base-BF16", "base-Q8_0", "base-Q6_K", "base-Q5_K_M", "base-Q4_K_M", "base-Q4_0"]


@pytest.mark.parametrize("name, run", [(n, r) for n in EXACT for r in ("0", "short1", "short3")])
def test_simulation_is_llama_cpps_arithmetic_on_the_recorded_build(model, name, run):
    """Recorded on an AVX-512 VNNI build (the recording says which): every tap of the simulation
    equals llama.cpp's to the bit, given the same inputs (local 0) and end to end (global 0),
    for 1, 3 and 8+ tokens (each takes other kernels: vec_dot, gemv, tinyBLAS, tiled); so does
    the simulation of the run with llama.cpp's defaults (flash attention on), recorded beside it."""
    g, ids = replayed(name, run)
    r = diff(model, g, ids, quant="auto")
    assert r["runtime_kernels"]["emulated"], r["runtime_kernels"]
    assert r["first_divergence"] is None
    assert max(t["local_rel_l2"] for t in r["taps"]) == 0.0
    assert max(t["sim_rel_l2"] for t in r["taps"]) == 0.0 and r["output"]["sim_rel_l2"] == 0.0
    assert r["output"]["rel_l2"] > 0  # while the fp32 reference is off by the quantization
    assert r["untapped"]["sim_rel_l2"] == 0.0, r["untapped"]  # and llama.cpp's default run (flash attention on)


def test_an_unemulated_build_says_so_and_stays_close(model, monkeypatch):
    """The recorded run said to come from an AVX2 build (no AVX-512): the report says the simulation
    is approximate there (it takes the plain kernels), and it stays closer than the reference."""
    from q3ref.formats import gguf as face

    recorded = face.run_recorded

    def on_avx2(path, ids):
        taps, _, cpu = recorded(path, ids)
        return taps, "CPU : AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | LLAMAFILE = 1 | REPACK = 1 |", cpu

    monkeypatch.setattr(face, "run_recorded", on_avx2)
    g, ids = replayed("base-Q8_0")
    r = diff(model, g, ids, quant="auto")
    assert not r["runtime_kernels"]["emulated"] and any("approximate" in n for n in r["notes"]), r["notes"]
    assert r["output"]["sim_rel_l2"] < 0.5 * r["output"]["rel_l2"]


@pytest.mark.parametrize("name", ["Q8_0", "Q6_K", "Q4_K_M", "F16"])
def test_eighteen_inputs_output_distance_to_the_simulation_is_under_a_tenth(model, name):
    from q3ref import model as M
    from q3ref.diff import metrics
    from q3ref.formats.gguf.sim import simulate

    g = open_export(GGUF / f"base-{name}.gguf")
    z = np.load(GGUF / f"out_base-{name}.npz")
    W, K = simulate(model.weights, model.kernels, g.types(), exact=True)
    ratios = []
    for run in sorted({k.split("/")[0] for k in z.files if "/" in k}):
        ids = z[f"{run}/ids"][None]
        ones = np.ones_like(ids, bool)
        got = M.normalize(z[f"{run}/pooled"][None])[0]
        ref = M.embed(model.weights, model.cfg, ids, ones, None, model.kernels)[0]
        sim = M.embed(W, model.cfg, ids, ones, None, K)[0]
        ratios.append(metrics(got, sim)["rel_l2"] / metrics(got, ref)["rel_l2"])
    assert len(ratios) == 18 and np.median(ratios) <= 0.1 and max(ratios) <= 0.1, ratios  # 8-24 tokens, 64, 100


def runs_of(name):  # {run: (ids [1, T], recorded npz)} of out_base-{name}.npz
    z = np.load(GGUF / f"out_base-{name}.npz")
    return {run: z[f"{run}/ids"][None] for run in sorted({k.split("/")[0] for k in z.files if "/" in k})}, z


@pytest.mark.parametrize("name", ["F16", "Q8_0", "Q6_K", "Q4_K_M"])
def test_flash_attention_simulation_is_llama_cpps_default_run(model, name):
    """llama.cpp's defaults turn flash attention on (the taps are recorded with it off): the
    simulation with ggml's flash attention returns what that run returned, to the bit, for 16
    inputs of 8-24 tokens (one_chunk) and for 64 and 100 tokens (the tiled kernel); without it,
    the simulation is the tapped run's, and the two runs differ."""
    from q3ref import model as M
    from q3ref.formats.gguf.sim import simulate

    g = open_export(GGUF / f"base-{name}.gguf")
    runs, z = runs_of(name)
    flash = simulate(model.weights, model.kernels, g.types(), exact=True, flash=True)
    assert max(ids.shape[1] for ids in runs.values()) >= 64 > min(ids.shape[1] for ids in runs.values())
    for run, ids in runs.items():
        deployed = M.normalize(z[f"{run}/deployed"][None])[0]
        assert np.array_equal(M.embed(*flash[:1], model.cfg, ids, np.ones_like(ids, bool), None, flash[1])[0],
                              deployed), run
        assert not np.array_equal(deployed, M.normalize(z[f"{run}/pooled"][None])[0]), run


def test_plain_flash_attention_twin_keeps_the_tiled_kernels_fp32(model):
    """The plain kernels (an unemulated build): from 64 tokens llama.cpp's flash attention keeps q
    and the probabilities in fp32 (the tiled kernel), and the plain twin that does so is nearer its
    default run than the plain twin of the tapped run. Q8_0, 64 and 100 tokens: 0.57 and 0.59 of
    its distance with OpenBLAS's SkylakeX kernels, 0.49 and 0.46 with its Haswell kernels (AVX2
    CPUs), 0.84 at 100 tokens with its Sandybridge kernels (AVX, no FMA): nearer, by an amount
    that follows BLAS's order. Below 64, one_chunk's fp16 accumulator is ggml_cpu.flash_attn's alone.
    Not F16: there the plain twin's own fp16 roundings follow BLAS's summation order, and they are
    as large as the effect (100 tokens: 0.50 of its distance with SkylakeX kernels, 1.19 with
    Haswell's); the exact simulation above lands on both runs."""
    from q3ref import model as M
    from q3ref.diff import metrics
    from q3ref.formats.gguf.sim import simulate

    g = open_export(GGUF / "base-Q8_0.gguf")
    runs, z = runs_of("Q8_0")
    twins = {flash: simulate(model.weights, model.kernels, g.types(), exact=False, flash=flash) for flash in (True, False)}
    long_runs = [run for run, ids in runs.items() if ids.shape[1] >= 64]
    assert len(long_runs) == 2, long_runs
    for run in long_runs:
        ids, deployed = runs[run], M.normalize(z[f"{run}/deployed"][None])[0]
        far = {flash: metrics(deployed, M.embed(W, model.cfg, ids, np.ones_like(ids, bool), None, K)[0])["rel_l2"]
               for flash, (W, K) in twins.items()}
        assert far[True] < far[False], (run, far)


def test_diff_simulates_the_run_an_app_makes(model):
    """A recording with the default run of its ids: diff reports that run's distance from the tapped
    run and q3ref's simulation of it, which lands on it."""
    g, ids = replayed("base-Q8_0")
    r = diff(model, g, ids, quant="auto")
    assert r["untapped"]["rel_l2"] > 1e-3 and r["untapped"]["sim_rel_l2"] == 0.0, r["untapped"]
    assert any("simulation of the app's run is 0 from it" in n for n in r["notes"]), r["notes"]


def test_an_unemulated_build_gets_the_plain_kernels():
    from q3ref.formats.gguf.sim import build_features, emulated

    avx2 = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | LLAMAFILE = 1 | REPACK = 1 |"
    assert build_features(avx2)["AVX2"] and not build_features(avx2).get("AVX512")
    ops = emulated(avx2, {"Q8_0"})
    assert ops["AVX2"] and not ops["AVX512"] and not all(ops.values())
    no_bf16 = "CPU : AVX2 = 1 | FMA = 1 | F16C = 1 | AVX512 = 1 | AVX512_VNNI = 1 | LLAMAFILE = 1 | REPACK = 1 |"
    assert not emulated(no_bf16, {"BF16"})["BF16 matmul"] and emulated(no_bf16, {"F16"})["F16 matmul"]
    g, ids = replayed("base-Q8_0")
    g.run(*g.place(list(ids), "right", 0), runtime="recorded")
    g.build = avx2
    assert g.runtime_note("recorded", True)["emulated"] is False


def test_quant_flag_simulates_a_gguf_recipe_for_embed(model):
    """--runtime llama.cpp --quant FILE.gguf: q3ref's own embedding of the checkpoint equals what
    llama.cpp returned for that file (recorded), to the bit: as its defaults run it (flash attention
    on), and with flash_attn=False as -fa off runs it; a type name applies to every matrix."""
    z = np.load(GGUF / "out_base-Q4_K_M.npz")
    quant = str(GGUF / "base-Q4_K_M.gguf")
    sim = {True: q3ref.Model(CKPT, quant=quant, runtime="llama.cpp"),
           False: q3ref.Model(CKPT, quant=quant, runtime="llama.cpp", flash_attn=False)}
    from q3ref import model as M

    runs = ("100", "107", "long64")
    for flash, recorded in ((True, "deployed"), (False, "pooled")):  # several texts: each computed alone
        got = sim[flash].encode_ids([z[f"{run}/ids"] for run in runs])
        for run, row in zip(runs, got):
            assert np.array_equal(row, M.normalize(z[f"{run}/{recorded}"][None])[0]), (run, flash)
    r = cli("embed", "--ids", "5,6,997", "--weights", CKPT, "--quant", "Q6_K", "--runtime", "llama.cpp")
    assert r.returncode == 0, r.stderr
    off = cli("embed", "--ids", "5,6,997", "--weights", CKPT, "--quant", "Q6_K", "--runtime", "llama.cpp",
              "--flash-attn", "off")
    assert off.returncode == 0 and off.stdout != r.stdout, off.stderr
    one_line_exit_2(cli("embed", "--ids", "5,997", "--weights", CKPT, "--flash-attn", "off"), "--runtime llama.cpp")
    one_line_exit_2(cli("embed", "--ids", "5,997", "--weights", TINY, "--quant", "Q4_K",
                        "--runtime", "llama.cpp"), "not a multiple of 256")
    one_line_exit_2(cli("embed", "--ids", "5,997", "--weights", CKPT, "--quant", "Q3_K", "--runtime", "llama.cpp"),
                    "takes one of F16")


def test_q5_K_vec_dot_is_llama_cpps_at_full_width():
    """vec_dot_Q5_K-0.6b.npz (bench/gguf_fullsize.py --record-vec-dot Q5_K_M): llama.cpp's k
    projection of a full-size Q5_K_M file on 3 tokens (ggml_vec_dot_q5_K_q8_K: four super-blocks
    a row, where the fixture files have one), its first 16 outputs and those rows' bytes. The
    emulation lands on all 48 values; the plain product (BLAS sums) does not."""
    from q3ref.formats.gguf import ggml_cpu
    from q3ref.formats.gguf.sim import act_q8_K_parts, dequantize

    z = np.load(GGUF / "vec_dot_Q5_K-0.6b.npz")
    K, raw = int(z["width"]), z["raw"]
    x, y = z["x"].reshape(-1, K), z["y"].reshape(-1, raw.shape[0])
    shape = (raw.shape[0], K)
    got = ggml_cpu.matmul_q5_K(*act_q8_K_parts(x), *ggml_cpu.q45_K_parts(raw, shape, 5))
    assert np.array_equal(got, y), np.abs(got - y).max()
    xq, xd = act_q8_K_parts(x)
    plain = (xq * np.repeat(xd, 256, axis=1)) @ dequantize(raw, "Q5_K", shape).T
    assert not np.array_equal(plain.astype(np.float32), y)


def test_numba_f16_and_q8_0_matmuls_are_their_numpy_twins():
    """tinyBLAS' F16 and Q8_0 sums computed per output with the lanes over the rows (the
    simulation's default kernels) equal the NumPy twins' (which hold them to llama.cpp's dumps),
    on odd shapes too: 2 rows, outputs split unevenly over the cores, one block, Q4_0's levels."""
    from q3ref.formats.gguf import ggml_cpu
    from q3ref.formats.gguf.sim import act_q8_0_parts

    rng = np.random.default_rng(6)
    for N, O, K in ((2, 7, 32), (5, 130, 96), (33, 200, 1024)):
        x = (rng.standard_normal((N, K)) * rng.uniform(0.1, 30, (N, 1))).astype(np.float32)
        x16, w16 = x.astype(np.float16).astype(np.float32), rng.standard_normal((O, K)).astype(np.float16).astype(np.float32)
        assert np.array_equal(ggml_cpu.matmul_f16_numba(x16, w16), ggml_cpu.matmul_f16(x16, w16)), (N, O, K)
        xq, dx = act_q8_0_parts(x)
        dw = rng.uniform(1e-4, 1e-2, (O, K // 32)).astype(np.float16).astype(np.float32)
        for wq in (rng.integers(-128, 128, (O, K)).astype(np.int8), rng.integers(-8, 8, (O, K)).astype(np.float32)):
            assert np.array_equal(ggml_cpu.matmul_q8_0_numba(xq, dx, wq, dw), ggml_cpu.matmul_q8_0(xq, dx, wq, dw)), (N, O, K)


def test_numba_quantizer_searches_are_their_numpy_twins():
    """The K-quant searches (make_qkx2_quants for Q4_K and Q5_K, make_qx_quants for Q6_K) and
    Q8_0's roundf, run as ggml-quants.c's loops in Numba, equal their NumPy twins (which the
    committed GGUFs hold byte for byte): on flat, all-zero, all-positive and tiny groups too."""
    from q3ref.formats.gguf import quants
    from q3ref.quant import round_half_away

    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3000, 32)) * rng.uniform(1e-3, 1, (3000, 1))).astype(np.float32)
    x[:4], x[4:8], x[8:16], x[16:20] = 0, 0.01, np.abs(x[8:16]), 1e-16
    weights = (np.sqrt((x * x).sum(1, dtype=np.float32) / np.float32(32))[:, None] + np.abs(x)).astype(np.float32)
    for nmax, rmin, rdelta, nstep in ((15, -1.0, 0.1, 20), (31, -0.5, 0.1, 15)):
        for got, want in zip(quants.make_qkx2_quants_numba(x, weights, nmax, rmin, rdelta, nstep),
                             quants.make_qkx2_quants(x, weights, nmax, rmin, rdelta, nstep)):
            assert np.array_equal(got, want), nmax
    groups = x.reshape(-1, 16)
    for got, want in zip(quants.make_qx_quants_numba(groups, 32), quants.make_qx_quants(groups, 32)):
        assert np.array_equal(got, want)
    got = np.empty_like(x)
    quants.qkx2_weights_into(x, got)
    assert np.array_equal(got, quants.qkx2_weights(x))
    xs = x[:2992].reshape(-1, 8, 32)  # super-blocks; scales of 0 keep the search's L
    d = rng.uniform(1e-4, 1e-2, xs.shape[:2]).astype(np.float32)
    d[::3, 2] = 0
    dm = rng.uniform(0, 1e-2, xs.shape[:2]).astype(np.float32)
    L = rng.integers(0, 16, xs.shape).astype(np.uint8)
    want = quants.requantized(xs, d, dm, 15, L)
    quants.requantize_into(xs, d, dm, 15, L)
    assert np.array_equal(L, want)
    # Q8_0's id = 127 / amax keeps every x * id within int8; past it the store is C's undefined
    # float-to-int8 cast, which each CPU's and library's code answers its own way (the Intel Xeon's
    # avx2 pass: NumPy wrapped -153 to 103, Numba's code gave -128), so the draw stays inside, as ggml's.
    amax = np.abs(x).max(1)
    inv = (np.float32(127) / np.where(amax > 0, amax, 1) * rng.uniform(0.5, 1, x.shape[0])).astype(np.float32)
    halves = np.array([0.5, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, 2.5000002, 0], np.float32)
    x[20, :8], inv[20] = halves, 1
    qs = np.empty(x.shape, np.int8)
    quants.scaled_roundf_into(x, inv, qs)
    assert np.array_equal(qs, round_half_away(x * inv[:, None]).astype(np.int8))
    assert qs[20, :8].tolist() == [1, -1, 2, -3, 0, 0, 3, 0]  # halves away from zero, as C's roundf


@pytest.mark.parametrize("path", sorted(GGUF.glob("*.gguf")), ids=lambda p: p.stem)
def test_reader_reads_what_gguf_py_reads(path):
    """reader.py against gguf-py's GGUFReader (the llama.cpp project's): every field's value and
    type, every tensor's name, type, ne, and data (dtype, shape, bytes)."""
    import gguf

    from q3ref.formats.gguf.reader import Reader

    theirs, ours = gguf.GGUFReader(str(path)), Reader(str(path))
    assert list(theirs.fields) == list(ours.fields)
    for key, field in theirs.fields.items():
        value = field.contents()
        assert value == ours.fields[key] and type(value) is type(ours.fields[key]), key
    assert [(t.name, t.tensor_type, t.shape.tolist()) for t in theirs.tensors] == \
           [(t.name, t.tensor_type, t.shape.tolist()) for t in ours.tensors]
    for a, b in zip(theirs.tensors, ours.tensors):
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape and a.data.tobytes() == b.data.tobytes(), a.name


def test_numba_k_quant_unpacking_is_its_numpy_twin():
    """q45_K_parts in one Numba pass equals the NumPy twin, on quantized weights and on random bytes."""
    from q3ref.formats.gguf import ggml_cpu, quants

    rng = np.random.default_rng(8)
    w = (rng.standard_normal((40, 512)) * 0.02).astype(np.float32)
    for bits, quantize in ((4, quants.quantize_q4_K), (5, quants.quantize_q5_K)):
        raw = quantize(w)
        for data in (raw, rng.integers(0, 256, raw.shape, dtype=np.uint8)):
            for got, want in zip(ggml_cpu.q45_K_parts_numba(data, w.shape, bits), ggml_cpu.q45_K_parts(data, w.shape, bits)):
                assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), bits


def test_numba_q4_K_repack_is_its_numpy_twin():
    """The repacked Q4_K gemm (rows in fours, pairs of sub-blocks) and gemv (the rest, whole
    super-blocks) per output in Numba equal the NumPy twin, at 1 to 9 rows."""
    from q3ref.formats.gguf import ggml_cpu, quants
    from q3ref.formats.gguf.sim import act_q8_K_x4_parts

    rng = np.random.default_rng(9)
    w = (rng.standard_normal((136, 768)) * 0.02).astype(np.float32)
    parts = ggml_cpu.q45_K_parts_numba(quants.quantize_q4_K(w), w.shape, 4)
    for N in (1, 3, 4, 9):
        x = (rng.standard_normal((N, 768)) * rng.uniform(0.1, 30, (N, 1))).astype(np.float32)
        xq, xd = act_q8_K_x4_parts(x)
        assert np.array_equal(ggml_cpu.matmul_q4_K_repack_numba(xq, xd, *parts), ggml_cpu.matmul_q4_K_repack(xq, xd, *parts)), N
