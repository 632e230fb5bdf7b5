"""A GGUF as q3ref's weights: `--weights MODEL.gguf` runs the reference on the file's tensors,
dequantized to fp32, for a user who has no safetensors. The config comes from the metadata."""

from __future__ import annotations

import numpy as np

from ...config import Config
from ...errors import Q3RefError
from ...weights import expected_shapes
from .file import GGUFFile


def config_from_gguf(f: GGUFFile) -> Config:
    d = f.describe()
    need = ("hidden_size", "layers", "heads", "kv_heads", "intermediate_size", "vocab_size")
    missing = [k for k in need if not d[k]]
    if missing:
        raise Q3RefError(f"{f.path}: metadata lacks {', '.join(missing)}")
    return Config(hidden_size=d["hidden_size"], num_hidden_layers=d["layers"], num_attention_heads=int(d["heads"]),
                  num_key_value_heads=int(d["kv_heads"]), head_dim=int(d["head_dim"] or d["hidden_size"] // d["heads"]),
                  intermediate_size=int(d["intermediate_size"]), vocab_size=d["vocab_size"],
                  rms_norm_eps=float(d["rms_eps"] or 1e-6), rope_theta=float(d["rope_base"] or 1e6),
                  max_position_embeddings=int(d["context_length"] or 32768))


class GGUFWeights:
    """Checkpoint names -> fp32 arrays, dequantized from the file on first use (kept if resident)."""

    def __init__(self, path, dtype=np.float32, resident=True):
        self.file = GGUFFile(path)
        self.path, self.cfg = self.file.path, config_from_gguf(self.file)
        self.dtype, self.resident = np.dtype(dtype), resident
        for name, shape in expected_shapes(self.cfg).items():
            if name not in self.file.names:
                raise Q3RefError(f"{self.path}: tensor {name} (GGUF {gguf_name(name)}) is missing")
            got = tuple(self.file.tensors[self.file.names[name]].shape[::-1])
            if got != shape:
                raise Q3RefError(f"{self.path}: tensor {self.file.names[name]} has shape {list(got)}, "
                                 f"the metadata implies {list(shape)}")
        self.stored_dtypes = {self.file.type_of(n) for n in expected_shapes(self.cfg)}
        self._cache = {}

    def __getitem__(self, name):
        if name in self._cache:
            return self._cache[name]
        out = self.file.dequantize(name).astype(self.dtype)
        if self.resident:
            self._cache[name] = out
        return out

    def embed_rows(self, ids):  # [N] -> [N, D]; streaming, only those rows are dequantized
        if self.resident:
            return self["embed_tokens.weight"][ids]
        return self.file.dequantize("embed_tokens.weight", ids).astype(self.dtype)


def gguf_name(ckpt_name):
    from .file import LAYER_NAMES, TOP_NAMES

    inverse = {v: k for k, v in {**LAYER_NAMES, **TOP_NAMES}.items()}
    parts = ckpt_name.split(".")
    if parts[0] == "layers":
        return f"blk.{parts[1]}.{inverse['.'.join(parts[2:-1])]}.weight"
    return f"{inverse[parts[0]]}.weight"
