"""Checkpoint loading: memory-mapped safetensors, checked tensor by tensor against the config.

Tensor names are the checkpoint's own, end to end (`layers.3.self_attn.q_proj.weight`).
The published Qwen3-Embedding file has no `model.` prefix; transformers-saved ones may;
both are accepted. Nothing is substituted: a missing or misshapen tensor is an error that
names it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import safetensors_io
from .config import Config
from .errors import Q3RefError


def expected_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every tensor the forward pass reads, with its shape ([out, in] for projections)."""
    D, H, Hkv, Dh, F = (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                        cfg.head_dim, cfg.intermediate_size)
    shapes = {"embed_tokens.weight": (cfg.vocab_size, D)}
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (D,),
            p + "self_attn.q_proj.weight": (H * Dh, D),
            p + "self_attn.k_proj.weight": (Hkv * Dh, D),
            p + "self_attn.v_proj.weight": (Hkv * Dh, D),
            p + "self_attn.q_norm.weight": (Dh,),
            p + "self_attn.k_norm.weight": (Dh,),
            p + "self_attn.o_proj.weight": (D, H * Dh),
            p + "post_attention_layernorm.weight": (D,),
            p + "mlp.gate_proj.weight": (F, D),
            p + "mlp.up_proj.weight": (F, D),
            p + "mlp.down_proj.weight": (D, F),
        })
    shapes["norm.weight"] = (D,)
    return shapes


def checkpoint_files(path: Path) -> list[Path]:
    """model.safetensors, or the shards listed by model.safetensors.index.json."""
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise Q3RefError(f"{index}: not a valid safetensors index (no weight_map)") from None
        files = sorted({path / f for f in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise Q3RefError(f"{path}: shard(s) listed in the index are missing: {', '.join(missing)}")
        return files
    raise Q3RefError(f"{path}: no model.safetensors or model.safetensors.index.json")


class Weights:
    """The checkpoint's tensors, memory-mapped in their stored dtype, upcast on request.

    resident=True keeps each upcast tensor after first use (fast repeated runs);
    resident=False ("streaming") upcasts on every access and keeps nothing, so only the tensor
    in use exists in float: how 4B and 8B run in a few GB.
    """

    def __init__(self, path, cfg: Config, dtype=np.float32, resident=True):
        self.path, self.cfg, self.dtype, self.resident = Path(path), cfg, np.dtype(dtype), resident
        raw, names = {}, []
        for f in checkpoint_files(self.path):
            for name, entry in safetensors_io.open_tensors(f).items():
                raw[name.removeprefix("model.")] = entry
                names.append(name)
        # A reranker (Qwen3ForCausalLM, as the Qwen3-Reranker repos store it) has every name under
        # `model.` and, unless tied, an lm_head of its own; an embedding checkpoint has neither.
        self.prefixed = all(n.startswith("model.") for n in names if n != "lm_head.weight") and bool(names)
        self.lm_head = raw.get("lm_head.weight")  # (dtype, array) or None
        if self.lm_head is not None and self.lm_head[1].shape != (cfg.vocab_size, cfg.hidden_size):
            raise Q3RefError(f"{self.path}: lm_head.weight has shape {list(self.lm_head[1].shape)}, "
                             f"config.json implies {[cfg.vocab_size, cfg.hidden_size]}")
        self.raw, self.stored_dtypes = {}, set()
        for name, shape in expected_shapes(cfg).items():
            if name not in raw:
                raise Q3RefError(f"{self.path}: tensor {name} is missing from the checkpoint")
            st_dtype, arr = raw[name]
            if st_dtype not in safetensors_io.FLOAT_DTYPES:
                raise Q3RefError(f"{self.path}: tensor {name} has dtype {st_dtype}; "
                                 f"q3ref reads {', '.join(safetensors_io.FLOAT_DTYPES)}")
            if arr.shape != shape:
                raise Q3RefError(f"{self.path}: tensor {name} has shape {list(arr.shape)}, "
                                 f"config.json implies {list(shape)}")
            self.raw[name] = (st_dtype, arr)
            self.stored_dtypes.add(st_dtype)
        self._cache: dict[str, np.ndarray] = {}
        self._checked: set[str] = set()  # tensors already found finite (streaming re-reads them)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._cache:
            return self._cache[name]
        st_dtype, arr = self.raw[name]
        out = safetensors_io.upcast(st_dtype, arr, self.dtype)
        safetensors_io.release_pages(arr)
        if name not in self._checked:
            if not np.isfinite(out).all():
                raise Q3RefError(f"{self.path}: tensor {name} holds NaN or Inf")
            self._checked.add(name)
        if self.resident:
            self._cache[name] = out
        return out

    def head_rows(self, ids) -> np.ndarray:
        """Rows of the LM head for `ids` [n] -> [n, D]: lm_head.weight, or embed_tokens when tied.
        A reranker reads two rows ("yes", "no"), never the [T, V] logit matrix."""
        st_dtype, table = self.lm_head if self.lm_head is not None else self.raw["embed_tokens.weight"]
        return safetensors_io.upcast(st_dtype, table[np.asarray(ids)], self.dtype)

    def embed_rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of embed_tokens.weight for `ids`, upcast without touching the rest of the table."""
        st_dtype, table = self.raw["embed_tokens.weight"]
        return safetensors_io.upcast(st_dtype, table[ids], self.dtype)
