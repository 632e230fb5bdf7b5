"""ONNX rerankers: a Qwen3ForCausalLM exported as onnx-community's Qwen3-Reranker files are laid out
(with past, logits over the vocabulary at every position) by torch's TorchScript exporter, and
quantized by ONNX Runtime's own quantizers, the LM head's MatMul too (scripts/make_onnx_graphs.sh).
The checkpoint is the GGUF reranker tests' (tied, D=64, 2 layers, "yes"/"no" at ids 995/996); the
pairs are the ids the card's template gives for 16 (query, document) pairs (out_rerank-F16.npz)."""

import numpy as np
import pytest

import q3ref
from conftest import FIXTURES, cli, one_line_exit_2
from q3ref.diff import diff
from q3ref.formats import open_export

ONNX = FIXTURES / "onnx"
CKPT = FIXTURES / "gguf-reranker-checkpoint"
GRAPHS = ["rerank", "rerank_int8", "rerank_uint8", "rerank_q4"]


@pytest.fixture(scope="module")
def model():
    return q3ref.Model(CKPT)


def pair(k):  # [T] the card's ids for pair k (144-218 tokens)
    return np.load(FIXTURES / "gguf/out_rerank-F16.npz")[f"pair{k}/ids"]


def test_a_reranker_graph_is_read_as_one(model):
    g = open_export(ONNX / "rerank_int8.onnx")
    d = g.describe()
    assert g.output_tap == "logits" and g.output == "logits" and g.graph.lm_head().name.startswith("/lm_head/")
    assert (d["hidden_size"], d["vocab_size"], d["layers"]) == (64, 1000, 2) and not g.check_config(model.cfg)
    assert g.align(model.cfg)[0]["norm"].tensor == "/model/norm/Mul_1_output_0"  # the LM head's input
    assert model.answer_ids() == (995, 996)  # from the cut tokenizer q3ref's Tokenizer refuses (no Qwen3 EOS id)


@pytest.mark.parametrize("name", GRAPHS)
@pytest.mark.parametrize("k", [0, 7])
def test_the_cards_score_is_held_to_the_graph(model, name, k):
    """The bridge's steps are the card's: the last token's yes and no logits, their softmax. Every tap
    through logits is aligned, nothing diverges, and where the graph is quantized the simulation lands
    on it: within 1e-5 at logits end to end (int8's head exactly, given the graph's hidden states: its
    weight scale spans all 1000 rows and its activation scale every position, integer_rank_head),
    where the fp32 reference is off by the quantization."""
    g = open_export(ONNX / f"{name}.onnx")
    r = diff(model, g, pair(k), quant="auto")
    taps = {t["name"]: t for t in r["taps"]}
    assert list(taps)[-3:] == ["pooled", "logits", "score"] and not r["unaligned"] and r["first_divergence"] is None
    out = r["output"]
    assert 0.5 < out["p_yes"] < 1 and out["log_odds_deployed"] == pytest.approx(out["log_odds"], abs=1e-4)
    if name == "rerank":
        assert taps["logits"]["rel_l2"] < 1e-5 and abs(out["log_odds"] - out["log_odds_reference"]) < 1e-4
    else:
        assert taps["logits"]["sim_rel_l2"] < 1e-5 and taps["logits"]["rel_l2"] > 1e-3
        if name in ("rerank_int8", "rerank_uint8"):  # given the graph's own hidden states, its head to the bit
            assert taps["logits"]["local_rel_l2"] == 0.0


@pytest.mark.parametrize("name", ["rerank_fp16", "rerank_q4f16"])
def test_fp16_graphs_round_the_logits_as_onnx_runtime_does(model, name):
    """fp16 graphs (onnxconverter-common; a with-past graph converted with fp16 io): the LM head is
    an fp16 MatMul, which ORT runs in fp32 and rounds to fp16 at its output. Given the graph's
    hidden states the simulated logits are ORT's to the bit. End to end too for fp16, where its
    MatMuls' sums (MlasGemmBatch) and float ops are emulated (its norm, which feeds the head, is
    not rounded). q4f16 is not traced to the bit (its MatMulNBits runs on the fp32 activations, but
    the taps read fp16 copies): its two logits may land an fp16 step apart (16 pairs: median 7.3e-4,
    worst 1.3e-3; 8.3e-4 with q3ref's float kernels)."""
    from q3ref.formats.onnx import probe

    g = open_export(ONNX / f"{name}.onnx")
    r = diff(model, g, pair(0), quant="auto")
    taps = {t["name"]: t for t in r["taps"]}
    assert r["first_divergence"] is None and not r["unaligned"]
    assert taps["logits"]["local_rel_l2"] == 0.0 and taps["logits"]["sim_rel_l2"] <= 1.5e-3
    if name == "rerank_fp16" and g.product_probe()["product"] and probe.float_ops()["emulated"]:
        assert taps["logits"]["sim_rel_l2"] == 0 and taps["score"]["sim_rel_l2"] == 0
    if name == "rerank_q4f16":
        assert taps["logits"]["rel_l2"] > 0.1  # 4-bit weights: far from the fp32 reference


def test_q8_compint8_head_lands_given_the_graphs_hidden_states(model):
    """MatMulNBits 8 bits with accuracy_level 4 (CompInt8 here, probed): the head's activations go
    to int8 per block of each row, so given the graph's own hidden states the simulation lands
    (local, measured 2.9e-7 at logits). End to end, 1-ulp differences in the float ops flipped
    int8 activation levels from layers.0.q on (9e-3 at logits on pair 0); with ONNX Runtime's
    float ops emulated (mlas.py, where probed so) it stays at 1.9e-6 (AMD EPYC), the blocks' sum
    order (sim.py) all that is left."""
    from q3ref.formats.onnx import probe

    r = diff(model, open_export(ONNX / "rerank_q8.onnx"), pair(0), quant="auto")
    taps = {t["name"]: t for t in r["taps"]}
    assert r["first_divergence"] is None and r["runtime_kernels"]["variant"].split(" + ")[0] in ("CompInt8", "CompFp32")
    assert max(t["local_rel_l2"] for t in r["taps"]) < 1e-6 < 1e-3 < taps["logits"]["rel_l2"]
    if probe.float_ops()["emulated"]:
        assert taps["logits"]["sim_rel_l2"] < 1e-5, taps["logits"]


def test_int8_lm_head_needs_the_whole_heads_scale(model, monkeypatch):
    """Without integer_rank_head, the head would be quantized from its yes and no rows alone and its
    input from the last row alone: the simulation would miss the graph at logits and blame the export."""
    from q3ref.formats import onnx as face

    simulate = face.Export.simulate

    def without(self, *a, **kw):
        W, K = simulate(self, *a, **kw)
        return W, {k: v for k, v in K.items() if k != "rank_head"}

    monkeypatch.setattr(face.Export, "simulate", without)
    r = diff(model, open_export(ONNX / "rerank_int8.onnx"), pair(0), quant="auto")
    assert r["first_divergence"]["name"] == "logits", r["first_divergence"]


@pytest.mark.parametrize("name", ["rerank", "rerank_q4"])
def test_left_padding_as_the_card_pads_changes_nothing(model, name):
    """The card tokenizes with padding_side='left' and reads logits[:, -1]; the bridge reads the last
    real token, so a left-padded pair scores as the unpadded one (the graphs whose activations stay
    float: int8's one activation scale per tensor is set by pad rows too, which check reports)."""
    g = open_export(ONNX / f"{name}.onnx")
    ids = pair(3)
    alone = diff(model, g, ids, quant="auto")
    padded = diff(model, g, ids, padding="left", length=len(ids) + 9, quant="auto")
    assert padded["first_divergence"] is None
    assert padded["output"]["log_odds"] == pytest.approx(alone["output"]["log_odds"], abs=1e-5)


def test_a_planted_defect_is_localized(model):
    r = diff(model, open_export(ONNX / "defect_q_norm_ones_1_rerank_int8.onnx"), pair(0), quant="auto")
    assert r["first_divergence"]["name"] == "layers.1.q_norm", r["first_divergence"]


def test_inspect_holds_every_quantized_weight_and_the_lm_head_to_the_checkpoint(model):
    for name in ("rerank_int8", "rerank_uint8", "rerank_q4", "rerank_q8"):
        rows = open_export(ONNX / f"{name}.onnx").check_weights(model.weights, model.cfg)
        head = [r for r in rows if r["weight"] == "lm_head.weight"]
        assert len(head) == 1 and all(r["payload_equal"] and r["scales_equal"] for r in rows), rows


def test_cli_diff_prints_the_score_and_refuses_an_embedding_checkpoint():
    ids = ",".join(map(str, pair(0)))
    r = cli("diff", ONNX / "rerank_q4.onnx", "--ids", ids, "--weights", CKPT)
    assert r.returncode == 0 and "P(yes)" in r.stdout and "no divergence" in r.stdout, r.stderr
    query, document = str(np.load(FIXTURES / "gguf/out_rerank-F16.npz")["pairs"][0]).split("\t")
    text = cli("diff", ONNX / "rerank_q4.onnx", query, "--document", document, "--weights", CKPT)
    n = len(pair(0))  # the card's ids for that pair
    assert text.returncode == 0 and f"{n}/{n} tokens" in text.stdout and "P(yes)" in text.stdout, text.stderr
    one_line_exit_2(cli("diff", ONNX / "rerank.onnx", "--ids", ids, "--weights", FIXTURES / "gguf-checkpoint"),
                    "does not fit")


def test_check_names_int8s_shared_activation_scale_for_pairs_too():
    """The card batches pairs with left padding: in the int8 graph every pair's logits then depend on
    the batch (one activation scale per tensor); the q4 graph passes every check."""
    r = cli("check", ONNX / "rerank_int8.onnx", "--weights", CKPT)
    assert r.returncode == 1 and "FAIL  a pair's last-token logits does not depend on its padding or batch" in r.stdout, r.stdout
    assert cli("check", ONNX / "rerank_q4.onnx", "--weights", CKPT).returncode == 0


def test_genai_int4_reranker_with_a_tied_head(model):
    """onnxruntime-genai's builder keeps a reranker's LM head (int4, accuracy_level 4) and, the
    embeddings being tied, reads the embedding table from the head's MatMulNBits weight through a
    Reshape: those are MLAS' blocks, not quantize_gather's (which were 0.32 off at worst). Every
    aligned stage lands given the graph's inputs; end to end CompInt8's level flips drift (~1e-2)."""
    g = open_export(ONNX / "genai_rerank_int4.onnx")
    assert g.output_tap == "logits" and g.graph.gather_shares_lm_head()
    assert any("tied LM head" in line for line in g.summary(g.describe()))
    r = diff(model, g, pair(0), quant="auto")
    taps = {t["name"]: t for t in r["taps"] if t.get("aligned")}
    assert r["first_divergence"] is None and {"embed", "logits", "score"} <= set(taps)
    assert max(t["local_rel_l2"] for t in taps.values()) < 1e-6 < 0.1 < taps["logits"]["rel_l2"]
