"""Random Qwen3.5 text checkpoints with real shapes (`make-checkpoint --preset qwen3.5-0.8b`), named
as transformers' Qwen3_5ForCausalLM saves them (`model.layers.{i}...`, tied head), bf16, drawn
as q3ref/checkpoint.py draws Qwen3 ones (one PCG64 stream per tensor).

Zero-centred norm weights are drawn as 0.1 N(0, 1) (the stored w of (1 + w)), the gated norm's as
1 + 0.1 N(0, 1) (it multiplies by w itself); A_log ~ -2 + 0.1 N and dt_bias ~ 0.1 N put the
per-token decay exp(g) near 0.9, so the state remembers tens of tokens, across chunk edges.
"""

from __future__ import annotations

import json

import numpy as np

from .. import safetensors_io
from ..checkpoint import RANDOM_MARK, check_seed, checkpoint_dir, random_tensor

# Qwen3.5-0.8B's text decoder (FACTS.md): full attention every 4th layer, the rest GatedDeltaNet.
PRESET_0_8B = dict(
    architectures=["Qwen3_5ForCausalLM"], model_type="qwen3_5_text", hidden_size=1024, intermediate_size=3584,
    num_hidden_layers=24, layer_types=["full_attention" if i % 4 == 3 else "linear_attention" for i in range(24)],
    num_attention_heads=8, num_key_value_heads=2, head_dim=256, linear_num_key_heads=16, linear_num_value_heads=16,
    linear_key_head_dim=128, linear_value_head_dim=128, linear_conv_kernel_dim=4, vocab_size=248320,
    rms_norm_eps=1e-6, tie_word_embeddings=True, max_position_embeddings=262144, hidden_act="silu",
    attention_bias=False, attention_dropout=0.0, torch_dtype="bfloat16",
    rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                     "mrope_section": [11, 11, 10]})
PRESETS = {"qwen3.5-0.8b": PRESET_0_8B}


def expected_shapes(cfg) -> dict:
    """Text decoder tensor name (without `model.`) -> shape, as Qwen3_5ForCausalLM holds them."""
    D, F, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    H, Hkv, Dh = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    Hk, Hv, dk, dv = cfg.linear_num_key_heads, cfg.linear_num_value_heads, cfg.linear_key_head_dim, cfg.linear_value_head_dim
    conv = 2 * Hk * dk + Hv * dv  # q, k and v all pass the depthwise conv
    shapes = {"embed_tokens.weight": (V, D), "norm.weight": (D,)}
    for i, kind in enumerate(cfg.layer_types):
        p = f"layers.{i}."
        shapes |= {p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                   p + "mlp.gate_proj.weight": (F, D), p + "mlp.up_proj.weight": (F, D), p + "mlp.down_proj.weight": (D, F)}
        if kind == "linear_attention":
            a = p + "linear_attn."
            shapes |= {a + "in_proj_qkv.weight": (conv, D), a + "in_proj_z.weight": (Hv * dv, D),
                       a + "in_proj_b.weight": (Hv, D), a + "in_proj_a.weight": (Hv, D),
                       a + "conv1d.weight": (conv, 1, cfg.linear_conv_kernel_dim), a + "dt_bias": (Hv,),
                       a + "A_log": (Hv,), a + "norm.weight": (dv,), a + "out_proj.weight": (D, Hv * dv)}
        else:
            a = p + "self_attn."
            shapes |= {a + "q_proj.weight": (2 * H * Dh, D), a + "k_proj.weight": (Hkv * Dh, D),
                       a + "v_proj.weight": (Hkv * Dh, D), a + "o_proj.weight": (D, H * Dh),
                       a + "q_norm.weight": (Dh,), a + "k_norm.weight": (Dh,)}
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, D)
    return shapes


def draw(name, shape, seed):  # row chunks of fp32 values
    if len(shape) == 3:  # conv1d [channels, 1, C]: drawn as [channels, C], fan-in C
        yield from (x.reshape(-1, 1, shape[2]) for x in random_tensor(name, (shape[0], shape[2]), seed))
        return
    zero_centred = len(shape) == 1 and name.endswith("norm.weight") and ".linear_attn." not in name
    shift = 3 if name.endswith("A_log") else 1 if zero_centred or name.endswith("dt_bias") else 0
    for x in random_tensor(name, shape, seed):  # 1-D tensors come as 1 + 0.1 N(0, 1)
        yield x - np.float32(shift) if shift else x


def make_checkpoint(out, cfg, seed=0, preset=None, config=None):
    seed = check_seed(seed)
    out = checkpoint_dir(out)
    specs = {("lm_head.weight" if n == "lm_head.weight" else "model." + n):
             ("BF16", s, lambda n=n, s=s: map(safetensors_io.bf16_bits, draw(n, s, seed)))
             for n, s in expected_shapes(cfg).items()}
    safetensors_io.write(out / "model.safetensors", specs, metadata={"format": "pt"})
    config = dict(config or PRESETS[preset])
    config[RANDOM_MARK] = {"preset": preset, "seed": seed, "generator": "numpy PCG64 standard_normal", "kind": "qwen3.5 text"}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out
