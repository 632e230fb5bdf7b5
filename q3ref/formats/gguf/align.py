"""Which llama.cpp node is which tap: by the names llama.cpp's Qwen3 graph gives its nodes
(src/models/qwen3.cpp, llama-graph.cpp) and, for matmuls, by the weight they read.

Node keys (run.py): "{name}:{op}", and "MUL_MAT:{weight}" for a projection (o_proj's node has no
name of its own). Every q3ref tap has a node when flash attention is off.
"""

from __future__ import annotations

from ..taps import Aligned

LAYER_NODES = {
    "input_norm": ("attn_norm-{i}:MUL", "rows"),
    "q": ("MUL_MAT:blk.{i}.attn_q.weight", "flat"),
    "k": ("MUL_MAT:blk.{i}.attn_k.weight", "flat"),
    "v": ("MUL_MAT:blk.{i}.attn_v.weight", "flat"),
    "q_norm": ("Qcur_normed-{i}:MUL", "rows"),
    "k_norm": ("Kcur_normed-{i}:MUL", "rows"),
    "q_rope": ("Qcur-{i}:ROPE", "rows"),
    "k_rope": ("Kcur-{i}:ROPE", "rows"),
    "attn": ("kqv_out-{i}:CONT", "flat"),
    "o_proj": ("MUL_MAT:blk.{i}.attn_output.weight", "rows"),
    "attn_residual": ("ffn_inp-{i}:ADD", "rows"),
    "post_norm": ("ffn_norm-{i}:MUL", "rows"),
    "gate": ("MUL_MAT:blk.{i}.ffn_gate.weight", "rows"),
    "up": ("MUL_MAT:blk.{i}.ffn_up.weight", "rows"),
    "act": ("ffn_swiglu-{i}:SWIGLU", "rows"),
    "down": ("MUL_MAT:blk.{i}.ffn_down.weight", "rows"),
    "out": ("l_out-{i}:ADD", "rows"),
}
TOP_NODES = {"embed": ("embd:GET_ROWS", "rows"), "norm": ("result_norm:MUL", "rows"),
             "pooled": ("llama_get_embeddings_seq", "rows")}
# Rank pooling (a reranker's file): the last row, the rank head's matmul and the softmax over it
# (llama-graph.cpp build_pooling), each one row of one sequence.
RANK_NODES = {"pooled": ("rank_input:GET_ROWS", "flat"), "logits": ("MUL_MAT:cls.output.weight", "flat"),
              "score": ("result_embd_pooled:SOFT_MAX", "flat")}


def align(cfg, rank=False):
    nodes = {**TOP_NODES, **RANK_NODES} if rank else TOP_NODES
    found = {name: Aligned(key, "structure", layout) for name, (key, layout) in nodes.items()}
    for i in range(cfg.num_hidden_layers):
        for stage, (key, layout) in LAYER_NODES.items():
            found[f"layers.{i}.{stage}"] = Aligned(key.format(i=i), "structure", layout)
    return found, []


def node_key(indexed_key: str) -> str:
    """"12:Qcur-0:ROPE" -> "Qcur-0:ROPE"; "32:node_32:MUL_MAT:blk.0.attn_output.weight" -> "MUL_MAT:blk.0.attn_output.weight"."""
    _, name, op, *src = indexed_key.split(":")
    return f"{op}:{src[0]}" if op == "MUL_MAT" and src else f"{name}:{op}"


def per_head(key: str) -> bool:
    """Nodes laid out [T, H, Dh] in ggml (after the reshape to heads, before the merge)."""
    name, op = key.rsplit(":", 1) if key.count(":") == 1 else (key, "")
    return op == "ROPE" or name.startswith(("Qcur_normed-", "Kcur_normed-"))
