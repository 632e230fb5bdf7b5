"""Record every q3ref tap from transformers' own Qwen3 (fp32, eager attention).

Used by the fixture scripts only (needs the optional `reference` extra: torch==2.13.0 and
transformers). Nothing from q3ref is used to compute these values: transformers runs the
model, forward hooks record its module inputs and outputs, and apply_rotary_pos_emb is
wrapped to record RoPE's outputs. Pooling and normalization follow sentence-transformers
(last real token via attention_mask.flip(1).argmax(1), then F.normalize).
"""

import torch
import torch.nn.functional as F
import transformers
from transformers import Qwen3Model
from transformers.models.qwen3 import modeling_qwen3


def load(ckpt_dir):
    model = Qwen3Model.from_pretrained(ckpt_dir, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "attn_implementation": "eager", "dtype": "float32"}


@torch.no_grad()
def taps(model, ids, attention_mask=None, dims=()):
    """ids [B, T] -> {tap name: float32 array [B, T, ...]} plus pooled / embedding [B, D]."""
    ids = torch.as_tensor(ids).long()
    mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask).long()
    B, T = ids.shape
    cfg = model.config
    H, Hkv, Dh = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    out, handles, current = {}, [], {}

    def put(name, t, shape=None):
        t = t.detach().float()
        out[name] = (t.reshape(B, T, *shape) if shape else t).numpy().copy()

    def after(name, shape=None):
        return lambda mod, inp, res: put(name, res[0] if isinstance(res, tuple) else res, shape)

    def before(name, shape=None):
        return lambda mod, inp: put(name, inp[0], shape)

    handles.append(model.embed_tokens.register_forward_hook(after("embed")))
    for i, layer in enumerate(model.layers):
        p, a, m = f"layers.{i}.", layer.self_attn, layer.mlp
        handles += [
            layer.input_layernorm.register_forward_hook(after(p + "input_norm")),
            a.q_proj.register_forward_hook(after(p + "q", (H, Dh))),
            a.k_proj.register_forward_hook(after(p + "k", (Hkv, Dh))),
            a.v_proj.register_forward_hook(after(p + "v", (Hkv, Dh))),
            a.q_norm.register_forward_hook(after(p + "q_norm")),
            a.k_norm.register_forward_hook(after(p + "k_norm")),
            a.register_forward_pre_hook(lambda mod, inp, i=i: current.__setitem__("layer", i)),
            a.o_proj.register_forward_pre_hook(before(p + "attn", (H, Dh))),
            a.o_proj.register_forward_hook(after(p + "o_proj")),
            layer.post_attention_layernorm.register_forward_pre_hook(before(p + "attn_residual")),
            layer.post_attention_layernorm.register_forward_hook(after(p + "post_norm")),
            m.gate_proj.register_forward_hook(after(p + "gate")),
            m.up_proj.register_forward_hook(after(p + "up")),
            m.down_proj.register_forward_pre_hook(before(p + "act")),
            m.down_proj.register_forward_hook(after(p + "down")),
            layer.register_forward_hook(after(p + "out")),
        ]
    handles.append(model.norm.register_forward_hook(after("norm")))

    original_rope = modeling_qwen3.apply_rotary_pos_emb

    def recording_rope(q, k, cos, sin, *args, **kwargs):
        q_out, k_out = original_rope(q, k, cos, sin, *args, **kwargs)  # [B, H, T, Dh]
        p = f"layers.{current['layer']}."
        put(p + "q_rope", q_out.transpose(1, 2))
        put(p + "k_rope", k_out.transpose(1, 2))
        return q_out, k_out

    modeling_qwen3.apply_rotary_pos_emb = recording_rope
    try:
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, D]
    finally:
        modeling_qwen3.apply_rotary_pos_emb = original_rope
        for h in handles:
            h.remove()
    last = T - 1 - mask.flip(1).argmax(1)  # sentence-transformers' last-token index
    pooled = hidden[torch.arange(B), last]  # [B, D]
    out["pooled"] = pooled.numpy().copy()
    out["embedding"] = F.normalize(pooled, p=2, dim=-1).numpy().copy()
    for d in dims:  # MRL: truncate, then normalize again
        out[f"embedding_dim{d}"] = F.normalize(pooled[:, :d], p=2, dim=-1).numpy().copy()
    return out
