"""Regenerate tests/fixtures/qwen35: a tiny random Qwen3.5 text checkpoint and transformers' own
taps on it (fp32, eager attention; prefill runs the chunked delta rule).

    python scripts/make_qwen35_fixtures.py     # reference environment: torch==2.13.0, transformers>=5.24
    python scripts/make_qwen35_fixtures.py --shapes   # only shapes-0.8b.json (the 0.8B preset's tensors)

Config: 4 layers (linear, full, linear, full attention), D=64, F=96; full attention 4 heads / 2 KV,
head_dim 32, partial rotary 0.25, theta 1e7, output gate; GatedDeltaNet with 2 key heads and 4
value heads (dk = dv = 16, conv kernel 4); vocab 512, tied LM head. Every parameter is random,
norm weights, A_log and dt_bias included (their defaults of zeros and ones hide +1 bugs).
Sequences of 5, 70 and 130 tokens (70 and 130 cross the 64-token chunk boundary). Saved per
sequence: each layer's stages, the final norm, the last position's logits, and the conv and
recurrent states after the last token (from transformers' cache); and under decode/ the logits and
states of the same ids fed one at a time (transformers' decode path: the recurrent form), with the
gap between the two forms in taps.json.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/qwen35"
LENGTHS = (5, 70, 130)


def config():
    from transformers.models.qwen3_5 import Qwen3_5TextConfig

    return Qwen3_5TextConfig(
        vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
        layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                         "mrope_section": [2, 1, 1]},
        linear_conv_kernel_dim=4, linear_key_head_dim=16, linear_value_head_dim=16,
        linear_num_key_heads=2, linear_num_value_heads=4, tie_word_embeddings=True,
        max_position_embeddings=4096)


def randomize(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.rand(p.shape, generator=g) * 15 + 0.5))
            elif p.ndim == 1:  # norms (zero-centred and plain), dt_bias
                p.copy_(0.3 * torch.randn(p.shape, generator=g) + (1.0 if "linear_attn.norm" in name else 0.0))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed" in name else p.shape[-1] ** -0.5))


@torch.no_grad()
def record(model, ids):
    out, hooks = {}, []
    put = lambda name, t: out.__setitem__(name, t.detach().float()[0].numpy().copy())  # noqa: E731
    for i, layer in enumerate(model.model.layers):
        p = f"layers.{i}."
        mixer = layer.linear_attn if hasattr(layer, "linear_attn") else layer.self_attn
        hooks += [layer.input_layernorm.register_forward_hook(lambda m, a, r, p=p: put(p + "input_norm", r)),
                  mixer.register_forward_hook(lambda m, a, r, p=p: put(p + "mixer", r[0] if isinstance(r, tuple) else r)),
                  layer.post_attention_layernorm.register_forward_pre_hook(lambda m, a, p=p: put(p + "attn_residual", a[0])),
                  layer.post_attention_layernorm.register_forward_hook(lambda m, a, r, p=p: put(p + "post_norm", r)),
                  layer.mlp.register_forward_hook(lambda m, a, r, p=p: put(p + "mlp", r)),
                  layer.register_forward_hook(lambda m, a, r, p=p: put(p + "out", r[0] if isinstance(r, tuple) else r))]
    hooks.append(model.model.norm.register_forward_hook(lambda m, a, r: put("norm", r)))
    res = model(torch.as_tensor(ids)[None], use_cache=True)
    for h in hooks:
        h.remove()
    out["logits"] = res.logits[0, -1].float().numpy().copy()
    cache = res.past_key_values
    for i, t in enumerate(model.config.layer_types):
        if t == "linear_attention":
            out[f"layers.{i}.conv_state"] = cache.get_conv_state(i, state_idx=0)[0].float().numpy().copy()
            out[f"layers.{i}.recurrent_state"] = cache.get_recurrent_state(i, state_idx=0)[0].float().numpy().copy()
    return out


@torch.no_grad()
def decode_path(model, ids):
    """The same sequence fed one token at a time with the cache: transformers' decode path, which runs
    the recurrent form of the delta rule (torch_recurrent_gated_delta_rule) and causal_conv1d_update.
    -> the last position's logits and the states after the last token."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    for t, tok in enumerate(ids):
        res = model(torch.as_tensor([[tok]]), past_key_values=cache, use_cache=True,
                    cache_position=torch.tensor([t]))
        cache = res.past_key_values
    out = {"logits": res.logits[0, -1].float().numpy().copy()}
    for i, t in enumerate(model.config.layer_types):
        if t == "linear_attention":
            out[f"layers.{i}.conv_state"] = cache.get_conv_state(i, state_idx=0)[0].float().numpy().copy()
            out[f"layers.{i}.recurrent_state"] = cache.get_recurrent_state(i, state_idx=0)[0].float().numpy().copy()
    return out


def preset_shapes():
    """tests/fixtures/qwen35/shapes-0.8b.json: every parameter's shape in transformers' own
    Qwen3_5ForCausalLM built (on the meta device) from q3ref's qwen3.5-0.8b preset config."""
    from transformers.models.qwen3_5 import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    sys.path.insert(0, str(ROOT))
    from q3ref.qwen35.checkpoint import PRESET_0_8B

    with torch.device("meta"):
        model = Qwen3_5ForCausalLM(Qwen3_5TextConfig(**PRESET_0_8B))
    shapes = {n: list(p.shape) for n, p in model.state_dict().items()}
    (OUT / "shapes-0.8b.json").write_text(json.dumps(shapes, indent=1) + "\n")
    print(f"wrote {len(shapes)} shapes, {sum(int(np.prod(s)) for s in shapes.values()):,} values")


def main():
    if sys.argv[1:] == ["--shapes"]:
        return preset_shapes()
    import transformers
    from transformers.models.qwen3_5 import Qwen3_5ForCausalLM

    cfg = config()
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = Qwen3_5ForCausalLM(cfg).eval()
    randomize(model)
    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = OUT / "checkpoint"
    model.save_pretrained(ckpt, safe_serialization=True)
    arrays = {}
    rng = np.random.default_rng(0)
    for n in LENGTHS:
        ids = rng.integers(0, cfg.vocab_size, n)
        arrays[f"len{n}/input_ids"] = ids
        for k, v in record(model, ids).items():
            arrays[f"len{n}/{k}"] = v
        for k, v in decode_path(model, ids).items():
            arrays[f"len{n}/decode/{k}"] = v
    # transformers' own gap between its two forms (prefill: chunked; decode: recurrent), max |diff| / max |chunked|
    gaps = {f"len{n}": max(float(np.abs(arrays[f"len{n}/decode/{k}"] - arrays[f"len{n}/{k}"]).max()
                                 / np.abs(arrays[f"len{n}/{k}"]).max())
                           for k in ("logits", "layers.0.recurrent_state", "layers.2.recurrent_state"))
            for n in LENGTHS}
    np.savez_compressed(OUT / "taps.npz", **arrays)
    (OUT / "taps.json").write_text(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                                               "attn_implementation": "eager", "dtype": "float32",
                                               "delta_rule": "torch_chunk_gated_delta_rule (prefill, chunk 64)",
                                               "decode_path": "the same ids one at a time with the cache: "
                                                              "torch_recurrent_gated_delta_rule (len{n}/decode/...)",
                                               "chunked_vs_recurrent_gap": gaps,
                                               "lengths": LENGTHS}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
