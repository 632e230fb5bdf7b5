"""Export a Qwen3-Embedding checkpoint to a LiteRT .tflite graph, the way the published ones
were made: litert-torch's generative Qwen3 layers re-authored as an embedder.

    /path/to/venv-with-litert-torch/bin/python scripts/export_tflite.py CKPT_DIR OUT.tflite \\
        [--seq-len 512] [--quant none|dynamic_int8|weight_only_int8|fp16|dynamic_int4_block32|128] \\
        [--defect NAME[:LAYER]]

Needs litert-torch (0.10), tensorflow and torch==2.13.0 (optional; not a q3ref dependency).
Graph: inputs input_ids and attention_mask, both int32 [1, seq_len]; output [1, D], the last
real token's final-norm state, L2-normalized inside the graph; causal + padding mask as an
additive -1e9 (FACTS.md: litert-torch's own -inf masks make NaN rows under left padding).
Positions are arange(seq_len) whatever the padding, as in transformers.

--defect plants one known bug, for testing q3ref's diff (the name says where it starts):
  rope_base          RoPE theta 1e4 (1e6 if the config has 1e4)    -> layers.0.q_rope
  q_norm_ones:L      layer L's q_norm weight replaced by ones     -> layers.L.q_norm
  gate_up_swap:L     layer L's gate and up projections swapped    -> layers.L.gate
  first_token_pool   pools position 0 instead of the last token   -> pooled
  final_norm_scale   final norm weight x 1.25                     -> norm
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import litert_torch
import litert_torch.generative.layers.model_config as cfg
from litert_torch.generative.utilities import converter, loader, model_builder

# Checkpoint names as Qwen3-Embedding ships them: no "model." prefix, no lm_head.
TENSOR_NAMES = loader.ModelLoader.TensorNames(
    ff_up_proj="layers.{}.mlp.up_proj",
    ff_down_proj="layers.{}.mlp.down_proj",
    ff_gate_proj="layers.{}.mlp.gate_proj",
    attn_query_proj="layers.{}.self_attn.q_proj",
    attn_key_proj="layers.{}.self_attn.k_proj",
    attn_value_proj="layers.{}.self_attn.v_proj",
    attn_query_norm="layers.{}.self_attn.q_norm",
    attn_key_norm="layers.{}.self_attn.k_norm",
    attn_output_proj="layers.{}.self_attn.o_proj",
    pre_attn_norm="layers.{}.input_layernorm",
    post_attn_norm="layers.{}.post_attention_layernorm",
    embedding="embed_tokens",
    final_norm="norm",
    lm_head=None,
)
DEFECTS = ["rope_base", "q_norm_ones", "gate_up_swap", "first_token_pool", "final_norm_scale"]


def model_config(c: dict, seq_len: int, rope_theta: float) -> cfg.ModelConfig:
    """litert-torch's Qwen3 example config, with every number from config.json."""
    rope = c.get("rope_theta") or c["rope_parameters"]["rope_theta"]
    norm = cfg.NormalizationConfig(type=cfg.NormalizationType.RMS_NORM, epsilon=c.get("rms_norm_eps", 1e-6))
    attn = cfg.AttentionConfig(
        num_heads=c["num_attention_heads"], head_dim=c["head_dim"], num_query_groups=c["num_key_value_heads"],
        query_norm_config=norm, key_norm_config=norm, rotary_base=rope_theta or rope, rotary_percentage=1.0,
        qkv_use_bias=False, qkv_transpose_before_split=True, qkv_fused_interleaved=False)
    ff = cfg.FeedForwardConfig(type=cfg.FeedForwardType.GATED, activation=cfg.ActivationConfig(cfg.ActivationType.SILU),
                               intermediate_size=c["intermediate_size"])
    block = cfg.TransformerBlockConfig(attn_config=attn, ff_config=ff, pre_attention_norm_config=norm,
                                       post_attention_norm_config=norm)
    return cfg.ModelConfig(vocab_size=c["vocab_size"], num_layers=c["num_hidden_layers"],
                           max_seq_len=max(seq_len, 8), embedding_dim=c["hidden_size"], block_configs=block,
                           final_norm_config=norm, lm_head_share_weight_with_embedding=True)


class Embedder(nn.Module):
    """input_ids, attention_mask [1, S] -> unit embedding [1, D] (the published graphs' signature)."""

    def __init__(self, decoder, first_token_pool=False):
        super().__init__()
        self.decoder, self.first_token_pool = decoder, first_token_pool

    def forward(self, input_ids, attention_mask):
        m, S = self.decoder, input_ids.shape[1]
        attn = m.config.block_config(0).attn_config
        pos = torch.arange(S)
        rope = m.config.build_rope(pos, attn.head_dim, attn.rotary_base)
        keep = attention_mask.to(torch.float32)  # [1, S]; argmax over int64 fails to legalize
        causal = torch.tril(torch.ones(S, S))  # [S, S]
        allowed = causal[None, None] * keep[:, None, None, :]  # [1, 1, S, S]
        additive = (1.0 - allowed) * -1e9  # [1, 1, S, S]
        x = m.tok_embedding(input_ids)  # [1, S, D]
        for block in m.transformer_blocks:
            out = block(x, rope, additive, pos, None)
            x = out[0] if isinstance(out, tuple) else out
        x = m.final_norm(x)  # [1, S, D]
        if self.first_token_pool:
            pooled = x[:, 0]
        else:
            last = S - 1 - torch.argmax(torch.flip(keep, [1]), dim=1)  # [1]
            pooled = x[torch.arange(1), last]  # [1, D]
        return F.normalize(pooled, p=2.0, dim=-1)


def plant(decoder, defect, layer):
    blocks = decoder.transformer_blocks
    with torch.no_grad():
        if defect == "q_norm_ones":
            blocks[layer].atten_func.query_norm.weight.fill_(1.0)
        elif defect == "gate_up_swap":
            ff = blocks[layer].ff
            w1, w3 = ff.w1.weight.clone(), ff.w3.weight.clone()
            ff.w1.weight.copy_(w3)
            ff.w3.weight.copy_(w1)
        elif defect == "final_norm_scale":
            decoder.final_norm.weight.mul_(1.25)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--quant", default="none",
                   choices=["none", "dynamic_int8", "weight_only_int8", "fp16", "dynamic_int4_block32",
                            "dynamic_int4_block128"])
    p.add_argument("--defect", help="one of " + ", ".join(DEFECTS) + " (':LAYER' for per-layer ones)")
    a = p.parse_args()
    c = json.loads((Path(a.checkpoint) / "config.json").read_text())
    defect, layer = (a.defect.split(":") + ["0"])[:2] if a.defect else (None, "0")
    if defect and defect not in DEFECTS:
        sys.exit(f"unknown defect {defect!r}")
    theta = c.get("rope_theta") or c["rope_parameters"]["rope_theta"]
    wrong_theta = 1e4 if theta != 1e4 else 1e6  # always a base other than the config's
    mcfg = model_config(c, a.seq_len, wrong_theta if defect == "rope_base" else None)
    decoder = model_builder.build_decoder_only_model(str(a.checkpoint), mcfg, TENSOR_NAMES)
    plant(decoder, defect, int(layer))
    module = Embedder(decoder, first_token_pool=defect == "first_token_pool").eval()
    ids = torch.zeros((1, a.seq_len), dtype=torch.int32)
    mask = torch.ones((1, a.seq_len), dtype=torch.int32)
    recipe = converter.get_quant_recipe_from_flag(a.quant, mcfg)
    edge = litert_torch.convert(module, (ids, mask), quant_config=recipe)
    edge.export(a.out)
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.2f} MB, quant {a.quant}, defect {a.defect})")


if __name__ == "__main__":
    main()
