"""Read a GGUF (reader.py: what gguf-py, the llama.cpp project's own reader, reads, 40x faster):
metadata, tensors memory-mapped, GGUF tensor names mapped to the checkpoint's, every type gguf-py
knows dequantized to fp32 by gguf-py.

GGUF stores a projection as ne = [in, out] (ggml's order), which reads in NumPy as [out, in]: the
checkpoint's own layout. Qwen3 needs no q/k permutation (NEOX RoPE is rotate_half).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ...errors import Q3RefError

ARCH = "qwen3"
# GGUF name -> checkpoint name; {i} is the layer.
LAYER_NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
TOP_NAMES = {"token_embd": "embed_tokens", "output_norm": "norm"}
# A Qwen3 reranker's rank head, as convert_hf_to_gguf.py writes it when it takes the checkpoint for
# a reranker: the LM head's rows for the classifier labels ("yes", "no"), [2, D]. Not a checkpoint
# tensor: q3ref makes it from weights.head_rows, and calls it HEAD_ROWS in its type map.
RANK_HEAD, HEAD_ROWS = "cls.output.weight", "head_rows"
POOLING_RANK = 4  # llama_pooling_type's LLAMA_POOLING_TYPE_RANK, as the metadata and the C API both say
# What q3ref reads and quantizes itself (weights.py, quants.py); gguf-py could dequantize more.
SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K")
POOLING = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 7: "Q8_0", 15: "Q4_K_M", 14: "Q4_K_S", 17: "Q5_K_M",
              16: "Q5_K_S", 18: "Q6_K", 32: "BF16"}


def checkpoint_name(gguf_name: str) -> str | None:
    """blk.3.attn_q.weight -> layers.3.self_attn.q_proj.weight; None for tensors q3ref does not read
    (output.weight, a reranker's cls head)."""
    base, _, suffix = gguf_name.rpartition(".")
    if base.startswith("blk."):
        _, i, part = base.split(".", 2)
        return f"layers.{i}.{LAYER_NAMES[part]}.{suffix}" if part in LAYER_NAMES else None
    return f"{TOP_NAMES[base]}.{suffix}" if base in TOP_NAMES else None


class GGUFFile:
    def __init__(self, path):
        from .reader import Reader

        self.path = Path(path)
        try:
            self.reader = Reader(str(self.path))
        except Exception as e:  # noqa: BLE001 - ValueError, struct.error, UnicodeDecodeError, OSError
            raise Q3RefError(f"{self.path}: not a readable GGUF ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        self.arch = self.meta("general.architecture")
        if self.arch != ARCH:
            raise Q3RefError(f"{self.path}: architecture {self.arch!r}; q3ref reads {ARCH!r} (Qwen3-Embedding)")
        self.tensors = {t.name: t for t in self.reader.tensors}
        self.names = {checkpoint_name(n): n for n in self.tensors if checkpoint_name(n)}  # checkpoint -> GGUF
        unknown = sorted({t.tensor_type.name for t in self.reader.tensors} - set(SUPPORTED_TYPES))
        if unknown:
            raise Q3RefError(f"{self.path}: tensor type {', '.join(unknown)} is not handled by q3ref "
                             f"(it handles {', '.join(SUPPORTED_TYPES)})")

    def meta(self, key, default=None):
        return self.reader.fields.get(key, default)

    def key(self, name):  # architecture-scoped metadata
        return self.meta(f"{self.arch}.{name}")

    def type_of(self, ckpt_name) -> str:
        return self.tensors[self.names[ckpt_name]].tensor_type.name

    def shape_of(self, ckpt_name) -> tuple:  # the checkpoint's order: ggml's ne reversed
        return tuple(int(n) for n in reversed(self.tensors[self.names[ckpt_name]].shape))

    def raw(self, ckpt_name) -> np.ndarray:
        """The stored bytes (quantized types: uint8 [rows, row bytes]) or values (F32/F16)."""
        return np.asarray(self.tensors[self.names[ckpt_name]].data)

    def dequantize(self, ckpt_name, rows=None) -> np.ndarray:  # -> fp32, the checkpoint's shape
        """The tensor, or only its `rows` [n] -> [n, in]: every GGUF type quantizes a row in
        blocks of its own, so a row is its own bytes (rows of the file's [rows, bytes] array)."""
        import gguf

        t = self.tensors[self.names[ckpt_name]]
        data = np.asarray(t.data) if rows is None else np.asarray(t.data)[np.asarray(rows)]
        if t.tensor_type.name in ("F32", "F16"):
            return np.asarray(data, np.float32)
        return gguf.quants.dequantize(data, t.tensor_type).astype(np.float32)

    def rank_head(self):
        """The rank head tensor, or None."""
        return self.tensors.get(RANK_HEAD)

    def is_reranker(self) -> bool:
        """What the file says: a rank head, rank pooling or a rerank template. (A reranker
        converted as a plain LM says none of it: that takes the checkpoint to tell.)"""
        return (self.rank_head() is not None or self.key("pooling_type") == POOLING_RANK
                or self.meta("tokenizer.chat_template.rerank") is not None)

    def label_ids(self) -> list:
        """The token id of each classifier label (a Qwen3 reranker's "yes", "no"), found by its
        text in the file's own vocabulary; None where a label is not one token."""
        return [self.token_id(label) for label in self.meta(f"{self.arch}.classifier.output_labels") or []]

    def vocab(self) -> list[str]:
        return list(self.meta("tokenizer.ggml.tokens", []))

    def token_id(self, text):
        try:
            return self.vocab().index(text)
        except ValueError:
            return None

    def describe(self) -> dict:
        embd, head = self.tensors.get("token_embd.weight"), self.rank_head()
        n_embd = self.key("embedding_length")
        file_type = self.meta("general.file_type")
        return {
            "format": "gguf", "architecture": self.arch,
            "file_type": FILE_TYPES.get(file_type, file_type),
            "hidden_size": int(n_embd) if n_embd else None,
            "vocab_size": int(embd.shape[1]) if embd is not None else None,
            "layers": int(self.key("block_count") or 0),
            "heads": self.key("attention.head_count"), "kv_heads": self.key("attention.head_count_kv"),
            "head_dim": self.key("attention.key_length"),
            "intermediate_size": self.key("feed_forward_length"),
            "rope_base": self.key("rope.freq_base"), "rms_eps": self.key("attention.layer_norm_rms_epsilon"),
            "context_length": self.key("context_length"),
            "pooling": POOLING.get(self.key("pooling_type"), self.key("pooling_type")),
            "add_eos": self.meta("tokenizer.ggml.add_eos_token"), "add_bos": self.meta("tokenizer.ggml.add_bos_token"),
            "eos_id": self.meta("tokenizer.ggml.eos_token_id"), "pad_id": self.meta("tokenizer.ggml.padding_token_id"),
            "tensor_types": dict(Counter(t.tensor_type.name for t in self.reader.tensors)),
            "tensors": len(self.tensors),
            "rank_head": None if head is None else {
                "type": head.tensor_type.name, "rows": int(head.shape[1]),
                "labels": list(self.meta(f"{self.arch}.classifier.output_labels") or [])},
        }
