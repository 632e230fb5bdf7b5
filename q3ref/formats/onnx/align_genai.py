"""Which ONNX tensor is which q3ref tap, for graphs onnxruntime-genai's model builder writes
(`python -m onnxruntime_genai.models.builder -i CKPT -o OUT -p fp32|int4 -e cpu
--extra_options exclude_lm_head=true`: the hidden states out, no LM head). The builder names
nodes by module path under /model/layers.{i}/ with "attn" (the exporter's is "self_attn"), fuses
q/k/v into one qkv_proj MatMul and a Split, runs RMSNorm as (Skip)SimplifiedLayerNormalization,
whose 4th output is the residual sum, and attention as GroupQueryAttention with RoPE inside it
(do_rotary: its cos/sin caches are initializers):

    embed          /model/embed_tokens/Gather/output_0 (GatherBlockQuantized/output_0 in 4 bits; with a
                   tied LM head kept, it reads the head's 4-bit blocks through a Reshape)
    input_norm     /model/layers.{i}/input_layernorm/output_0
    q, k, v        /model/layers.{i}/attn/qkv_proj/Split/output_{0,1,2}  [1, S, Hx*Dh]: "flat"
                   (or the q_proj/k_proj/v_proj MatMul outputs where they are apart)
    q_norm, k_norm /model/layers.{i}/attn/{q,k}_norm/Reshape_2/output_0   [1, S, Hx*Dh]
    q_rope         inside GroupQueryAttention: no tensor
    k_rope         GroupQueryAttention's present key (the cache after its RoPE) [1, Hkv, S, Dh]
    attn           /model/layers.{i}/attn/GroupQueryAttention/output_0   [1, S, H*Dh]
    o_proj, gate, up, down   /model/layers.{i}/{attn/o_proj,mlp/gate_proj,...}/MatMul/output_0 (the
                   name stays when int4 makes the node MatMulNBits, .../MatMul_Q4)
    attn_residual  /model/layers.{i}/post_attention_layernorm/output_3
    post_norm      /model/layers.{i}/post_attention_layernorm/output_0
    act            /model/layers.{i}/mlp/Mul/output_0
    out            the next layer's input_layernorm/output_3; the last layer's has no tensor (the
                   final norm, /model/layers.{L}/final_norm_layernorm, returns the norm only)
    norm           the graph output (hidden_states); with the LM head kept (a reranker's), its
                   input, the final norm's output_0
"""

from __future__ import annotations

import re

from ..taps import Aligned
from .graph import Graph

LAYER = re.compile(r"/model/layers\.\d+/attn/")


def is_genai(g: Graph) -> bool:
    return any(LAYER.match(n.name) for n in g.nodes)


def align_genai(g: Graph, cfg) -> tuple[dict[str, Aligned], list[str]]:
    made, found = set(g.producer), {}

    def put(tap, tensor, layout="rows"):
        if tensor in made:
            found[tap] = Aligned(tensor, "structure", layout)

    put("embed", "/model/embed_tokens/Gather/output_0")
    put("embed", "/model/embed_tokens/GatherBlockQuantized/output_0")  # int4, or a tied LM head's 4-bit blocks
    L = cfg.num_hidden_layers
    for i in range(L):
        p, tap = f"/model/layers.{i}/", f"layers.{i}."
        put(tap + "input_norm", p + "input_layernorm/output_0")
        for k, x in enumerate("qkv"):
            apart = p + f"attn/{x}_proj/MatMul/output_0"
            put(tap + x, apart if apart in made else p + f"attn/qkv_proj/Split/output_{k}", "flat")
        put(tap + "q_norm", p + "attn/q_norm/Reshape_2/output_0", "flat")
        put(tap + "k_norm", p + "attn/k_norm/Reshape_2/output_0", "flat")
        gqa = next((n for n in g.nodes if n.name == p + "attn/GroupQueryAttention"), None)
        if gqa is not None:
            put(tap + "attn", gqa.output[0], "flat")
            if rotary(gqa) and len(gqa.output) > 1:  # present.{i}.key: the keys after its RoPE
                put(tap + "k_rope", gqa.output[1], "heads_first")
        put(tap + "o_proj", p + "attn/o_proj/MatMul/output_0")
        put(tap + "attn_residual", p + "post_attention_layernorm/output_3")
        put(tap + "post_norm", p + "post_attention_layernorm/output_0")
        for x in ("gate", "up", "down"):
            put(tap + x, p + f"mlp/{x}_proj/MatMul/output_0")
        put(tap + "act", p + "mlp/Mul/output_0")
        put(tap + "out", f"/model/layers.{i + 1}/input_layernorm/output_3")
    found["norm"] = Aligned(g.lm_head_input() or g.output, "structure")  # a reranker's: the LM head's input
    notes = ["onnxruntime-genai's layout: RoPE runs inside GroupQueryAttention, so q_rope has no tensor (k_rope "
             f"is the key cache it returns); the final norm does not return its residual sum, so layers.{L - 1}.out "
             "has none either"]
    return found, notes


def rotary(node) -> bool:
    return any(a.name == "do_rotary" and a.i == 1 for a in node.attribute)
