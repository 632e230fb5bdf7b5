"""Qwen3.5 checkpoint tensors by the text model's own names (`layers.0.linear_attn.A_log`, ...):
`model.` prefixed (Qwen3_5ForCausalLM, text only) or `model.language_model.` (the published VLM,
whose vision tower, `model.visual.*`, is not read). Upcast to fp32 on first use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import safetensors_io
from ..errors import Q3RefError
from ..weights import checkpoint_files
from .checkpoint import expected_shapes


class Qwen35Weights:
    def __init__(self, path, cfg):
        path = Path(path)
        self.path, self.cfg, self.raw, self.skipped = path, cfg, {}, 0
        for f in checkpoint_files(path):
            for name, entry in safetensors_io.open_tensors(f).items():
                if name.startswith("model.visual.") or name.startswith("mtp."):
                    self.skipped += 1  # the vision tower (and multi-token prediction) are not the text decoder
                    continue
                self.raw[name.removeprefix("model.language_model.").removeprefix("model.")] = entry
        for name, shape in expected_shapes(cfg).items():  # a checkpoint of another config fails here, in one line
            if name not in self.raw:
                raise Q3RefError(f"{path}: tensor {name} is missing (not a Qwen3.5 text checkpoint of this config?)")
            st_dtype, arr = self.raw[name]
            if arr is None:
                raise Q3RefError(f"{path}: {name} is stored as {st_dtype}, which q3ref does not read")
            if arr.shape != shape:
                raise Q3RefError(f"{path}: {name} has shape {arr.shape}, config.json says {shape}")
        self._cache = {}

    def __getitem__(self, name) -> np.ndarray:
        if name not in self._cache:
            if name not in self.raw:
                raise Q3RefError(f"{self.path}: tensor {name} is missing")
            st_dtype, arr = self.raw[name]
            self._cache[name] = safetensors_io.upcast(st_dtype, arr, np.float32)
        return self._cache[name]

    def head(self) -> np.ndarray:  # [V, D]: lm_head, or the embedding when tied
        return self["lm_head.weight"] if "lm_head.weight" in self.raw else self["embed_tokens.weight"]
