"""GGUF rerankers: files written by llama.cpp's own converter from a Qwen3-Reranker checkpoint
(rank head cls.output, rank pooling, the rerank template) and llama.cpp's rank-pooled runs, recorded
(scripts/export_gguf.py, rerankers()). The checkpoint is tests/fixtures/gguf-reranker-checkpoint:
tied, D=64, 2 layers, the real tokenizer cut to 1000 ids with "yes" and "no" kept (995, 996)."""


import numpy as np
import pytest

import q3ref
from conftest import FIXTURES, cli, one_line_exit_2
from gguf_files import rewrite_metadata
from q3ref import model as M
from q3ref.diff import diff
from q3ref.errors import Q3RefError
from q3ref.formats import open_export

GGUF = FIXTURES / "gguf"
CKPT = FIXTURES / "gguf-reranker-checkpoint"
TYPES = ["F16", "Q8_0"]


@pytest.fixture(scope="module")
def model():
    return q3ref.Model(CKPT)


def replayed(name):
    g = open_export(GGUF / f"rerank-{name}.gguf")
    g.replay(GGUF / f"taps_rerank-{name}.npz")
    return g, np.load(GGUF / f"taps_rerank-{name}.npz")["pair0/ids"]


def test_a_reranker_file_is_read_as_one():
    g = open_export(GGUF / "rerank-Q8_0.gguf")
    assert g.output_tap == "score" and g.head_ids() == [995, 996]
    assert "rank head cls.output (Q8_0)" in "\n".join(g.summary(g.describe()))
    plain = open_export(GGUF / "unmarked_rerank-Q8_0.gguf")  # converted without README.md's heading
    assert plain.output_tap == "pooled" and not plain.file.is_reranker()


@pytest.mark.parametrize("name", TYPES)
def test_rank_head_is_the_lm_heads_yes_and_no_rows_byte_for_byte(model, name):
    g = open_export(GGUF / f"rerank-{name}.gguf")
    rows = g.check_weights(model.weights, model.cfg)
    head = [r for r in rows if r["weight"].startswith("cls.output")]
    assert len(head) == 1 and all(r["equal"] for r in rows), rows
    # the same rows the other way round, (no, yes), are not what the file holds
    from q3ref.formats.gguf.quants import QUANTIZERS

    t = g.types()["head_rows"]
    swapped = QUANTIZERS[t](model.weights.head_rows([996, 995]))
    assert not np.array_equal(swapped, np.asarray(g.file.rank_head().data).view(np.uint8).reshape(swapped.shape))


def test_llama_servers_template_ids_are_the_cards_ids():
    """The recorded ids are llama.cpp's tokenization of the file's rerank template, filled in as
    llama-server's format_prompt_rerank does; q3ref builds the card's (prefix, pair, suffix each
    tokenized alone) from the same tokenizer. They agree, pair by pair, CJK and a one-character
    document included."""
    from tokenizers import Tokenizer

    from q3ref.rerank import pair_ids

    class Cut:  # q3ref's Tokenizer refuses a vocabulary without Qwen3's EOS id; pair_ids needs only .hf
        hf = Tokenizer.from_file(str(CKPT / "tokenizer.json"))

    z = np.load(GGUF / "out_rerank-Q8_0.npz")
    pairs = [str(p).split("\t") for p in z["pairs"]]
    assert len(pairs) == 16
    for k, (query, document) in enumerate(pairs):
        assert pair_ids(Cut, query, document) == z[f"pair{k}/ids"].tolist(), (query, document)


@pytest.mark.parametrize("name", TYPES)
def test_simulation_is_llama_cpps_rank_pooling_on_the_recorded_build(model, name):
    """Every tap through the rank head's logits equals llama.cpp's to the bit, given the same
    inputs and end to end; its softmax (ggml's expf, a float64 sum) lands within 1e-6."""
    g, ids = replayed(name)
    r = diff(model, g, ids, quant="auto")
    assert r["runtime_kernels"]["emulated"] and r["first_divergence"] is None
    taps = {t["name"]: t for t in r["taps"]}
    assert list(taps)[-3:] == ["pooled", "logits", "score"] and not r["unaligned"]
    assert max(t["local_rel_l2"] for n, t in taps.items() if n != "score") == 0.0
    assert max(t["sim_rel_l2"] for n, t in taps.items() if n != "score") == 0.0
    assert taps["score"]["local_rel_l2"] < 1e-6 and r["output"]["sim_rel_l2"] < 1e-6
    assert r["output"]["p_yes"] == float(np.load(g.recording)["pair0/pooled"][0])
    assert 0 < abs(r["output"]["p_yes"] - r["output"]["p_yes_reference"]) < 1e-4  # the quantization, seen in P(yes)
    assert any("the file's labels" in n for n in r["notes"])  # where the yes/no ids came from


@pytest.mark.parametrize("name", [*TYPES, "Q4_0"])  # Q4_0: its 2-row rank head is not repacked (vec_dot)
@pytest.mark.parametrize("recorded, flash", [("pooled", False), ("deployed", True)])
def test_sixteen_pairs_margins_are_the_simulations(model, name, recorded, flash):
    """The random reranker's P(yes) saturates (0.9987..1.0000), so the scores are compared by their
    margin, log P(yes) - log P(no) = logit(yes) - logit(no), which the recorded pair keeps: the
    simulation's is within 1e-6 of llama.cpp's (measured 7e-8 at worst, AMD EPYC), the fp32
    reference's is off by the quantization (F16 ~2e-3, Q8_0 ~0.1). Both runs: flash attention off
    (the tapped run's "pooled") and llama.cpp's defaults ("deployed": flash attention on; the pairs
    have 144-218 tokens, so its tiled kernel), simulated without and with it."""
    from q3ref.formats.gguf.sim import simulate

    g = open_export(GGUF / f"rerank-{name}.gguf")
    z = np.load(GGUF / f"out_rerank-{name}.npz")
    W, K = simulate(model.weights, model.kernels, g.types(), exact=True, flash=flash)
    to_sim, to_ref = [], []
    for k in range(16):
        ids = z[f"pair{k}/ids"][None]
        ones = np.ones_like(ids, bool)
        p_yes, p_no = z[f"pair{k}/{recorded}"].astype(np.float64)
        margin = np.log(p_yes) - np.log(p_no)
        sim = M.rank(W, model.cfg, ids, ones, (995, 996), K)[0]  # [2]: yes, no logits
        ref = M.rank(model.weights, model.cfg, ids, ones, (995, 996), model.kernels)[0]
        to_sim.append(abs(margin - (sim[0] - sim[1])))
        to_ref.append(abs(margin - (ref[0] - ref[1])))
    assert max(to_sim) < 1e-6 and np.median(to_ref) > 100 * max(to_sim), (to_sim, to_ref)


def test_diff_of_a_reranker_simulates_the_app_s_run(model):
    """The recorded pair (168 tokens) as llama.cpp's defaults run it: flash attention moves Q8_0's
    log-odds from 6.628 to 6.493 (the fp32 reference's: 6.625); the simulation of that run lands
    within 1e-5 of it, and the report's note says so."""
    g, ids = replayed("Q8_0")
    r = diff(model, g, ids, quant="auto")
    out = r["output"]
    assert abs(out["log_odds_deployed"] - out["log_odds"]) > 0.1
    assert abs(out["log_odds_deployed_simulated"] - out["log_odds_deployed"]) < 1e-5, out
    assert r["untapped"]["sim_rel_l2"] < 1e-6 and any("simulation of the app's run gives" in n for n in r["notes"])


def test_a_swapped_answer_pair_diverges_at_logits(model):
    """A head built from (no, yes) instead of (yes, no): forced from the graph's own pooled row,
    q3ref's logits are the graph's swapped, and the diff names `logits`."""
    g, ids = replayed("Q8_0")
    real_head = g.file.label_ids
    g.file.label_ids = lambda: [996, 995]  # the ids the diff reads the checkpoint's rows for
    try:
        r = diff(model, g, ids, quant="auto")
    finally:
        g.file.label_ids = real_head
    assert r["first_divergence"]["name"] == "logits", r["first_divergence"]


# ------------------------------------------------------------------ check
def test_check_passes_the_reranker_file_with_and_without_the_checkpoint():
    for args in ([], ["--weights", CKPT]):
        r = cli("check", GGUF / "rerank-Q8_0.gguf", *args)
        assert r.returncode == 0 and "FAIL" not in r.stdout and "rank head" in r.stdout, r.stdout + r.stderr


def test_check_names_a_reranker_converted_as_a_plain_lm_given_the_checkpoint():
    r = cli("check", GGUF / "unmarked_rerank-Q8_0.gguf", "--weights", CKPT)
    failed = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert r.returncode == 1 and len(failed) == 4, r.stdout + r.stderr
    assert all(any(c in f for f in failed) for c in ("rank head", "pooling type is rank", "labels", "rerank template"))
    assert "README.md" in r.stdout  # the converter's own test for a reranker
    alone = cli("check", GGUF / "unmarked_rerank-Q8_0.gguf")  # the file alone says nothing of a reranker
    assert alone.returncode == 1 and "--weights RERANKER_DIR" in alone.stdout, alone.stdout


def test_check_names_a_rerank_template_that_is_not_the_cards(tmp_path):
    import gguf

    from q3ref.formats.gguf.checks import rerank_template

    for label, template in (("no_think", rerank_template().replace("<think>\n\n</think>\n\n", "")),
                            ("no_template", None)):
        path = rewrite_metadata(GGUF / "rerank-Q8_0.gguf", tmp_path / f"{label}.gguf",
                                {"tokenizer.chat_template.rerank": (template, gguf.GGUFValueType.STRING)})
        r = cli("check", path)
        failed = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
        assert r.returncode == 1 and len(failed) == 1 and "rerank template" in failed[0], r.stdout


# ------------------------------------------------------------------ bad input: one line, exit 2
def test_diff_input_errors_are_one_line(model, tmp_path):
    from q3ref.checkpoint import make_checkpoint

    g, ids = replayed("Q8_0")
    base = [g.path, "--replay", g.recording, "--kernels", "recorded"]
    one_line_exit_2(cli("diff", g.path, "a query", "--weights", CKPT), "--document DOC")
    one_line_exit_2(cli("diff", GGUF / "base-Q8_0.gguf", "q", "--document", "d", "--weights", FIXTURES / "gguf-checkpoint"),
                    "not a reranker's export")
    embedder = make_checkpoint(tmp_path / "embedder", model.cfg, seed=0)  # the same shapes, an embedder's layout
    with pytest.raises(Q3RefError, match="is not one"):
        diff(q3ref.Model(embedder), g, ids)
    r = cli("diff", *base, "--ids", ",".join(map(str, ids)), "--weights", CKPT)
    assert r.returncode == 0 and "P(yes)" in r.stdout and "score" in r.stdout, r.stdout + r.stderr
    assert "its scores are meaningless" in r.stderr


def test_q4_K_rank_head_vec_dot_is_llama_cpps_at_full_width():
    """A Q4_K_M reranker's rank head is Q4_K with 2 rows: never repacked, so one pooled row takes
    ggml_vec_dot_q4_K_q8_K. Recorded from a full-size random Qwen3-Reranker-0.6B (D=1024) by
    bench/gguf_rerank_fullsize.py: llama.cpp's input row, its output and the head's bytes. The
    emulation lands on llama.cpp's two logits to the bit; the plain product (BLAS sums) does not."""
    from q3ref.formats.gguf import ggml_cpu
    from q3ref.formats.gguf.sim import act_q8_K_parts, dequantize

    z = np.load(GGUF / "rank_head_Q4_K-0.6b.npz")
    x, raw = z["x"], z["raw"]
    shape = (2, x.shape[1])
    got = ggml_cpu.matmul_q4_K(*act_q8_K_parts(x), *ggml_cpu.q45_K_parts(raw, shape, 4))
    assert np.array_equal(got, z["logits"]), (got, z["logits"])
    plain = (act_q8_K_parts(x)[0] * np.repeat(act_q8_K_parts(x)[1], 256, axis=1)) @ dequantize(raw, "Q4_K", shape).T
    assert not np.array_equal(plain.astype(np.float32), z["logits"])


@pytest.mark.parametrize("flash, recorded", [(True, "deployed"), (False, "pooled")])
def test_rerank_with_the_files_recipe_gives_llama_cpps_scores(model, flash, recorded):
    """rerank --quant FILE.gguf --runtime llama.cpp: from the pair's text (the cut tokenizer read for
    its vocabulary), the score llama.cpp returned for that file, with its default flash attention
    or -fa off. P(yes) saturates, so compared as log-odds: within 1e-5 of llama.cpp's (P(yes) within
    3e-8 on these four pairs, AMD EPYC), where the reference's are off by the quantization."""
    z = np.load(GGUF / "out_rerank-Q8_0.npz")
    sim = q3ref.Model(CKPT, quant=str(GGUF / "rerank-Q8_0.gguf"), runtime="llama.cpp", flash_attn=flash)

    def odds(p):
        return np.log(p) - np.log1p(-p)

    for k in range(4):
        query, document = str(z["pairs"][k]).split("\t")
        assert sim.rerank_ids(query, document) == z[f"pair{k}/ids"].tolist()
        p_yes, p_no = z[f"pair{k}/{recorded}"].astype(np.float64)
        want = np.log(p_yes) - np.log(p_no)
        got, ref = odds(sim.rerank(query, [document])[0]), odds(model.rerank(query, [document])[0])
        assert abs(got - want) < 1e-5 and abs(ref - want) > 1e-3, (k, got, ref, want)


def test_rerank_cli_takes_a_gguf_recipe():
    z = np.load(GGUF / "out_rerank-Q8_0.npz")
    query, document = str(z["pairs"][0]).split("\t")
    r = cli("rerank", query, document, "--weights", CKPT, "--quant", GGUF / "rerank-Q8_0.gguf", "--runtime", "llama.cpp")
    assert r.returncode == 0 and f"{float(z['pair0/deployed'][0]):.6f}" in r.stdout, (r.stdout, r.stderr)
    one_line_exit_2(cli("rerank", query, document, "--weights", CKPT, "--quant", GGUF / "rerank-Q8_0.gguf"),
                    "both or neither")
    # the file's types must be this checkpoint's conversion's, rank head included
    one_line_exit_2(cli("rerank", query, document, "--weights", CKPT, "--quant", GGUF / "unmarked_rerank-Q8_0.gguf",
                        "--runtime", "llama.cpp"), "has no rank head (cls.output.weight): it is not a reranker's")
    one_line_exit_2(cli("rerank", query, document, "--weights", CKPT, "--quant", GGUF / "base-Q8_0.gguf",
                        "--runtime", "llama.cpp"), "is [1000, 256] in the file and [1000, 64] in this checkpoint")
    one_line_exit_2(cli("embed", "--ids", "1,2", "--weights", FIXTURES / "gguf-checkpoint", "--quant",
                        GGUF / "rerank-Q8_0.gguf", "--runtime", "llama.cpp"), "the file is another model's conversion")
    one_line_exit_2(cli("embed", "--ids", "1,2", "--weights", FIXTURES / "stress-checkpoint", "--quant",
                        GGUF / "rerank-Q8_0.gguf", "--runtime", "llama.cpp"), "no tensor for layers.2.input_layernorm")
    one_line_exit_2(cli("rerank", query, document, "--weights", CKPT, "--max-length", "0"),
                    "a max length of 0 tokens leaves no room for the document")
