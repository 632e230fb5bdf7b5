"""Random checkpoints with real shapes: bf16 safetensors + config.json (+ a tokenizer).

Deterministic: each tensor draws from its own PCG64 stream, seeded by (seed, crc32(name)), so
a tensor does not depend on which others were made and a large checkpoint is written one
tensor at a time. The draws are plain NumPy; the file records the seed and the generator.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np

from . import safetensors_io
from .config import PRESETS, Config
from .errors import Q3RefError
from .weights import expected_shapes

RANDOM_MARK = "q3ref_random_checkpoint"  # config.json key that marks a meaningless checkpoint


CHUNK_ELEMENTS = 1 << 24  # rows per draw: 64 MB of fp32 at a time, whatever the tensor's size


def random_tensor(name: str, shape, seed: int):
    """fp32 values for one tensor, as row chunks drawn in order from one stream (the same values
    as one big draw). Norm weights ~ 1 + 0.1 N(0,1) (non-unit on purpose, so a reference that
    ignores or misapplies them is caught); embeddings ~ N(0, 1); projections ~ N(0, 1/fan_in),
    which keeps every layer's contribution to the residual stream O(1)."""
    rng = np.random.Generator(np.random.PCG64([seed, zlib.crc32(name.encode())]))
    if len(shape) == 1:
        yield 1 + np.float32(0.1) * rng.standard_normal(shape, dtype=np.float32)
        return
    scale = np.float32(1.0 if name == "embed_tokens.weight" else shape[1] ** -0.5)
    step = max(1, CHUNK_ELEMENTS // shape[1])
    for r in range(0, shape[0], step):
        x = rng.standard_normal((min(step, shape[0] - r), shape[1]), dtype=np.float32)
        yield x if scale == 1 else x * scale


def checkpoint_dir(out) -> Path:
    """Make `out` for a checkpoint, or say in one line why not. An existing checkpoint directory
    is written over (that regenerates it); any other non-empty directory or a file is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise Q3RefError(f"--out {out} is a file, not a directory; refusing to write over it")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise Q3RefError(f"{out} exists and is not a checkpoint directory; refusing to write into it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent is a file, or is not writable
        raise Q3RefError(f"cannot make the directory {out}: {e.strerror}") from None
    return out


def check_seed(seed) -> int:
    """NumPy's PCG64 takes seeds 0 .. 2^128 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 128:
        raise Q3RefError(f"--seed must be an integer in 0 .. 2^128 - 1, got {seed}")
    return int(seed)


def make_checkpoint(out, cfg: Config, seed=0, tokenizer=None, preset=None, reranker=False):
    """reranker: a Qwen3ForCausalLM checkpoint as the Qwen3-Reranker repos store it: tensor names
    under `model.`, and `lm_head.weight` of its own unless cfg.tie_word_embeddings."""
    seed = check_seed(seed)
    out = checkpoint_dir(out)
    shapes = expected_shapes(cfg)
    if reranker and not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, cfg.hidden_size)
    stored = (lambda n: n if n == "lm_head.weight" else "model." + n) if reranker else (lambda n: n)
    specs = {stored(name): ("BF16", shape, lambda n=name, s=shape: map(safetensors_io.bf16_bits, random_tensor(n, s, seed)))
             for name, shape in shapes.items()}
    safetensors_io.write(out / "model.safetensors", specs, metadata={"format": "pt"})
    config = cfg.to_dict()
    if reranker:
        config["architectures"] = ["Qwen3ForCausalLM"]
    config[RANDOM_MARK] = {"preset": preset, "seed": seed, "generator": "numpy PCG64 standard_normal",
                           "kind": "reranker" if reranker else "embedding"}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer = Path(tokenizer)
        shutil.copyfile(tokenizer, out / ("tokenizer.json.gz" if tokenizer.suffix == ".gz" else "tokenizer.json"))
    return out


def preset_config(preset: str, **overrides) -> Config:
    if preset not in PRESETS:
        raise Q3RefError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return Config(**{**PRESETS[preset], **overrides})
