"""Model configuration: a frozen dataclass read from a checkpoint's config.json.

Dimension legend used across q3ref (code comments, tap shapes, reports, tests):
    B   sequences in a batch
    T   tokens per sequence
    D   hidden size                      (hidden_size)
    H   query heads                      (num_attention_heads)
    Hkv key/value heads                  (num_key_value_heads), H % Hkv == 0 (GQA)
    Dh  head dim                         (head_dim); H*Dh need not equal D
    F   MLP width                        (intermediate_size)
    V   vocabulary                       (vocab_size)
    L   decoder layers                   (num_hidden_layers)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .errors import Q3RefError


def read_config(path) -> dict:
    """A config.json's object, or one line naming what is wrong with the file (every reader of a
    user's config.json comes through here: Qwen3's, Qwen3.5's and the random-checkpoint mark)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise Q3RefError(f"config: {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Q3RefError(f"config: {path} is not valid JSON ({e})") from None
    except OSError as e:
        raise Q3RefError(f"config: {path}: cannot read ({e.strerror})") from None
    if not isinstance(d, dict):
        raise Q3RefError(f"config: {path} does not hold a JSON object")
    return d


@dataclasses.dataclass(frozen=True)
class Config:
    hidden_size: int  # D
    num_hidden_layers: int  # L
    num_attention_heads: int  # H
    num_key_value_heads: int  # Hkv
    head_dim: int  # Dh; Qwen3 sets it explicitly (128), so q is wider than D in 0.6B
    intermediate_size: int  # F
    vocab_size: int  # V
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    tie_word_embeddings: bool = True  # embedding models carry no lm_head either way
    max_position_embeddings: int = 32768

    def __post_init__(self):
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise Q3RefError(f"config: {name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise Q3RefError(f"config: num_attention_heads={self.num_attention_heads} is not a "
                             f"multiple of num_key_value_heads={self.num_key_value_heads}")
        if self.head_dim % 2:
            raise Q3RefError(f"config: head_dim={self.head_dim} must be even for split-half RoPE")
        if not self.rms_norm_eps > 0 or not self.rope_theta > 0:
            raise Q3RefError("config: rms_norm_eps and rope_theta must be positive")

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        d = dict(d)
        # transformers 5.x writes rope_parameters={"rope_theta": ..., "rope_type": "default"}
        # instead of the published top-level rope_theta; accept both dialects.
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        if "rope_theta" not in d and isinstance(rope, dict) and "rope_theta" in rope:
            d["rope_theta"] = rope["rope_theta"]
        if isinstance(rope, dict) and rope.get("rope_type", "default") not in ("default", None):
            raise Q3RefError(f"config: rope_type {rope.get('rope_type')!r} is not supported "
                             "(Qwen3-Embedding uses plain RoPE)")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in d]
        if missing:
            raise Q3RefError(f"config: missing required key(s) {', '.join(missing)}")
        kwargs = {k: v for k, v in d.items() if k in fields}  # unknown keys are ignored
        kwargs["rms_norm_eps"] = float(kwargs.get("rms_norm_eps", 1e-6))
        kwargs["rope_theta"] = float(kwargs.get("rope_theta", 1e6))
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path) -> "Config":
        return cls.from_dict(read_config(path))

    def to_dict(self) -> dict:
        """Published-dialect config.json content (what transformers also reads)."""
        d = dataclasses.asdict(self)
        d.update(architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_act="silu",
                 attention_bias=False, attention_dropout=0.0, torch_dtype="bfloat16",
                 bos_token_id=151643, eos_token_id=151643, use_cache=False)
        return d


# Shapes of the published checkpoints, used only to generate random checkpoints
# (make-checkpoint). Real checkpoints are always read from their own config.json.
PRESETS = {
    "tiny": dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=8, intermediate_size=48, vocab_size=151669),
    "0.6b": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, intermediate_size=3072, vocab_size=151669),
    # 4B/8B: vocab 151665 and 40960 positions from secondary sources (FACTS.md); the published
    # config.json files could not be read here. Their tie flags do not matter to q3ref: an
    # embedding model reads no head, and a reranker's head is lm_head.weight when the file has one.
    "4b": dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, intermediate_size=9728, vocab_size=151665, max_position_embeddings=40960),
    "8b": dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
               head_dim=128, intermediate_size=12288, vocab_size=151665, max_position_embeddings=40960),
}
