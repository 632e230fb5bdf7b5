"""Qwen3.5 text config, from transformers' Qwen3_5TextConfig keys (config.json, or the published
VLM's text_config). Dimension names: D hidden, F MLP width; full attention H heads / Hkv KV heads
of Dh, rotating the first R = Dh * partial_rotary_factor dims; GatedDeltaNet Hk key heads and Hv
value heads of dk / dv, conv kernel C."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import read_config
from ..errors import Q3RefError


@dataclass
class Qwen35Config:
    hidden_size: int  # D
    intermediate_size: int  # F
    num_hidden_layers: int
    layer_types: list  # "linear_attention" | "full_attention", one per layer
    num_attention_heads: int  # H
    num_key_value_heads: int  # Hkv
    head_dim: int  # Dh
    linear_num_key_heads: int  # Hk
    linear_num_value_heads: int  # Hv
    linear_key_head_dim: int  # dk
    linear_value_head_dim: int  # dv
    linear_conv_kernel_dim: int  # C
    vocab_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1e7
    partial_rotary_factor: float = 0.25
    tie_word_embeddings: bool = True

    @property
    def rotary_dim(self) -> int:  # R
        return int(self.head_dim * self.partial_rotary_factor)

    @classmethod
    def from_json(cls, path: Path) -> "Qwen35Config":
        return cls.from_dict(read_config(path), path)

    @classmethod
    def from_dict(cls, d: dict, path="config") -> "Qwen35Config":
        d = d.get("text_config", d)  # the published checkpoint is a VLM: its text side is nested
        rope = d.get("rope_parameters") or {}
        try:
            return cls(**{k: d[k] for k in (
                "hidden_size", "intermediate_size", "num_hidden_layers", "layer_types", "num_attention_heads",
                "num_key_value_heads", "head_dim", "linear_num_key_heads", "linear_num_value_heads",
                "linear_key_head_dim", "linear_value_head_dim", "linear_conv_kernel_dim", "vocab_size")},
                rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
                rope_theta=float(rope.get("rope_theta", d.get("rope_theta", 1e7))),
                partial_rotary_factor=float(rope.get("partial_rotary_factor", d.get("partial_rotary_factor", 0.25))),
                tie_word_embeddings=bool(d.get("tie_word_embeddings", True)))
        except KeyError as e:
            raise Q3RefError(f"{path}: not a Qwen3.5 config (no {e.args[0]})") from None


def is_qwen35(config_json: Path) -> bool:
    d = read_config(config_json)
    text = d.get("text_config") if isinstance(d.get("text_config"), dict) else d
    return str(text.get("model_type", d.get("model_type", ""))).startswith("qwen3_5")
