"""Which ONNX tensor is which q3ref tap, for graphs torch's TorchScript exporter made from
transformers' Qwen3Model (optimum and the onnx-community files name them the same way). The
exporter names each node by its module path, and ONNX Runtime's quantizers keep the output names:

    embed          /model/embed_tokens/Gather_output_0
    input_norm     /model/layers.{i}/input_layernorm/Mul_1_output_0      (weight * normalized x)
    q, k, v        /model/layers.{i}/self_attn/{q,k,v}_proj/MatMul_output_0   [1, S, H*Dh]: "flat"
    q_norm, k_norm /model/layers.{i}/self_attn/{q,k}_norm/Mul_1_output_0 [1, S, H, Dh]
    q_rope         first input of the score MatMul (/self_attn/MatMul)    [1, H, S, Dh]: "heads_first"
    k_rope         its second input, back through repeat_kv's Transpose/Reshape/Expand/Unsqueeze
                   (and a with-past export's Concat with the cache input)
    attn           the PV MatMul (/self_attn/MatMul_1) forward through Transpose/Reshape: o_proj's input
    o_proj         /model/layers.{i}/self_attn/o_proj/MatMul_output_0
    attn_residual  /model/layers.{i}/Add_output_0
    post_norm      /model/layers.{i}/post_attention_layernorm/Mul_1_output_0
    gate, up, down /model/layers.{i}/mlp/{gate,up,down}_proj/MatMul_output_0
    act            /model/layers.{i}/mlp/Mul_output_0
    out            /model/layers.{i}/Add_1_output_0
    norm           the graph output, last_hidden_state; in a CausalLM export (a reranker's), the
                   LM head's input (/model/norm/Mul_1_output_0), the head being /lm_head/MatMul
pooled and embedding are the bridge's (diff pools the graph's norm as sentence-transformers does);
so are a reranker's logits and score (the last token's yes and no logits, their softmax).
A graph ONNX Runtime saved after optimizing keeps these names: a FusedMatMul under its fusion
suffixes (fused_name), and in an fp16 graph the fp32 twin of a tensor (InsertedPrecisionFreeCast_)
where ORT kept no fp16 copy. onnxruntime-genai's builder has a layout of its own: align_genai.py.
"""

from __future__ import annotations

from ..taps import Aligned
from .align_genai import align_genai, is_genai
from .graph import PAST, Graph
from .run import CAST_PREFIX

NAMES = {  # tap stage -> (tensor name under /model/layers.{i}/, layout)
    "input_norm": ("input_layernorm/Mul_1_output_0", "rows"),
    "q": ("self_attn/q_proj/MatMul_output_0", "flat"), "k": ("self_attn/k_proj/MatMul_output_0", "flat"),
    "v": ("self_attn/v_proj/MatMul_output_0", "flat"),
    "q_norm": ("self_attn/q_norm/Mul_1_output_0", "rows"), "k_norm": ("self_attn/k_norm/Mul_1_output_0", "rows"),
    "o_proj": ("self_attn/o_proj/MatMul_output_0", "rows"), "attn_residual": ("Add_output_0", "rows"),
    "post_norm": ("post_attention_layernorm/Mul_1_output_0", "rows"),
    "gate": ("mlp/gate_proj/MatMul_output_0", "rows"), "up": ("mlp/up_proj/MatMul_output_0", "rows"),
    "act": ("mlp/Mul_output_0", "rows"), "down": ("mlp/down_proj/MatMul_output_0", "rows"),
    "out": ("Add_1_output_0", "rows"),
}
PASS_THROUGH = {"Transpose", "Reshape", "Expand", "Unsqueeze", "Cast"}  # layout-only ops


def fused_name(name) -> str:
    """A node's exporter name without the suffixes ONNX Runtime's optimizer appends when it fuses
    it (a saved optimized graph: "/.../self_attn/MatMul/MatmulTransposeFusion//MatMulScaleFusion/"
    is the score MatMul, now a FusedMatMul with the scale folded in)."""
    for suffix in ("/MatmulTransposeFusion/", "/MatMulScaleFusion/"):
        name = name.split(suffix)[0]
    return name


def made_by(g: Graph, t) -> str | None:
    return g.producer[t].op_type if t in g.producer else None


def cache_concat(g: Graph, t) -> str | None:
    """In a with-past export, the new keys or values where t is Concat(the cache, new): the cache
    is a past_key_values input, as it is or through a one-input Concat (layer 0's, as traced)."""
    n = g.producer.get(t)
    if n is None or n.op_type != "Concat" or len(n.input) != 2:
        return None
    past = n.input[0]
    while past in g.producer and g.producer[past].op_type == "Concat" and len(g.producer[past].input) == 1:
        past = g.producer[past].input[0]
    return n.input[1] if PAST.match(past) else None


def align(g: Graph, cfg) -> tuple[dict[str, Aligned], list[str]]:
    """({tap name: Aligned}, [notes on what could not be aligned])."""
    if is_genai(g):
        return align_genai(g, cfg)
    made = set(g.producer)
    found, notes = {}, []
    if "/model/embed_tokens/Gather_output_0" in made:
        found["embed"] = Aligned("/model/embed_tokens/Gather_output_0", "structure")
    for i in range(cfg.num_hidden_layers):
        p = f"/model/layers.{i}/"
        for stage, (name, layout) in NAMES.items():
            # a graph ONNX Runtime saved optimized from fp16 keeps the name only where an op reads an
            # fp16 copy (the value that op computes with, as in a graph it optimizes when loading);
            # elsewhere the value is its fp32 twin
            for t in (p + name, CAST_PREFIX + p + name):
                if t in made:
                    found[f"layers.{i}.{stage}"] = Aligned(t, "structure", layout)
                    break
        scores = next((n for n in g.nodes if fused_name(n.name) == p + "self_attn/MatMul"), None)
        if scores is not None:
            found[f"layers.{i}.q_rope"] = Aligned(scores.input[0], "structure", "heads_first")
            k = scores.input[1]
            while k in g.producer and (g.producer[k].op_type in PASS_THROUGH or cache_concat(g, k)):
                if g.producer[k].input[0] == CAST_PREFIX + k and made_by(g, CAST_PREFIX + k) == "Add":
                    break  # the fp16 copy of RoPE's Add in a graph ORT saved optimized: what the scores read
                k = cache_concat(g, k) or g.producer[k].input[0]
            if made_by(g, k) == "Add" or made_by(g, CAST_PREFIX + k) == "Add":
                found[f"layers.{i}.k_rope"] = Aligned(k, "structure", "heads_first")
        pv = next((n for n in g.nodes if fused_name(n.name) == p + "self_attn/MatMul_1"), None)
        if pv is not None:
            t = pv.output[0]
            while len(g.consumers[t]) == 1 and (g.consumers[t][0].op_type in ("Transpose", "Reshape")
                                                or t.startswith(CAST_PREFIX)):  # fp32 twin -> its fp16 copy
                t = g.consumers[t][0].output[0]
            found[f"layers.{i}.attn"] = Aligned(t, "structure", "flat")
    found["norm"] = Aligned(g.lm_head_input() or g.output, "structure")
    if g.rope_inv_freq_fp16():
        notes.append("this graph stores RoPE's inv_freq in fp16 (/model/rotary_emb/Mul): a frequency is off by up "
                     "to 1.8e-4 rad per position, so q_rope/k_rope drift from the fp32 reference as positions grow "
                     "(0.09 rad at position 512, 1.5 rad at 8192; the stress graph departs from ~600 positions on "
                     "with --quant none; the simulation stores it in fp16 too); keep /model/rotary_emb in fp32 "
                     "when converting to fp16")
    if not any(name.startswith("layers.") for name in found):
        notes.append("no /model/layers.{i}/ names: not the TorchScript exporter's layout, so taps are matched numerically")
    return found, notes
