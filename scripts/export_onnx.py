"""Export a Qwen3-Embedding checkpoint to ONNX the way the onnx-community files were made, then
make the quantized variants with ONNX Runtime's own quantizers, called as transformers.js's
quantize script calls them.

    /path/to/reference-venv/bin/python scripts/export_onnx.py CKPT_DIR OUT_DIR [--name stress]
        [--variants fp32,int8,uint8,q4,q4f16,q4_zp,q8,q2,fp16,bnb4,int8_per_channel,past] [--defect NAME[:LAYER]]

Needs torch==2.13.0, transformers, onnx, onnxruntime, onnxconverter-common (the reference
environment; not q3ref dependencies). The graph: transformers' Qwen3Model (fp32, eager
attention) through torch.onnx.export (TorchScript exporter, dynamo=False, opset 18); inputs
input_ids, attention_mask, position_ids [batch, seq] int64; output last_hidden_state
[batch, seq, D]; no pooling (the bridge pools). Graphs over 2 GB get external data.

Variants (file names as the onnx-community set names them):
  fp32               model.onnx
  int8               model_int8.onnx      quantize_dynamic, QInt8, MatMulConstBOnly, per-tensor
  int8_per_channel   model_int8_pc.onnx   the same, per_channel=True
  uint8              model_uint8.onnx     the same with QUInt8
  q4                 model_q4.onnx        MatMulNBits, block 32, symmetric
  q4f16              model_q4f16.onnx     q4, then fp16
  q4_zp              model_q4_zp.onnx     MatMulNBitsQuantizer's own defaults: 4 bits, block 128, zero points
  q8                 model_q8.onnx        MatMulNBits 8 bits, block 32, zero points, accuracy_level 4 (int8
                                          activations where MLAS has the kernel), as some published
                                          "int8" files are made (they need onnxruntime >= 1.23)
  q2                 model_q2.onnx        MatMulNBits 2 bits, block 32, symmetric, accuracy_level 4
  fp16               model_fp16.onnx      onnxconverter-common float16, keep_io_types=True
  bnb4               model_bnb4.onnx      MatMulBnb4, NF4, block 64
  VARIANT_opt        model_VARIANT_opt.onnx   VARIANT as ONNX Runtime saves it optimized (ORT_ENABLE_EXTENDED,
                                          optimized_model_filepath), as some published files are: fused
                                          SimplifiedLayerNormalization, FusedMatMul, MatMulIntegerToFloat;
                                          fp16 graphs with ORT's own casts inserted
  static24           model_static24.onnx  fp32 with every shape fixed, input_ids [1, 24] (no dynamic axes)
  int32              model_int32.onnx     fp32 traced with int32 ids, mask and positions: int32 inputs
  past               model_past.onnx      fp32 with the past_key_values.{i}.key/value inputs and present.*
                                          outputs of a with-past export (optimum's names), which an
                                          embedding bridge feeds empty

--causal-lm: a reranker (Qwen3ForCausalLM) as onnx-community's Qwen3-Reranker files are laid out:
model.onnx is the with-past export with logits [batch, seq, vocab] out (the LM head, /lm_head/MatMul,
after the decoder); the quantized variants are made from it the same way (the LM head's MatMul too).

--defect plants one known bug (the name says where it starts):
  rope_base          RoPE theta x 100                         -> layers.0.q_rope
  q_norm_ones:L      layer L's q_norm weight replaced by ones -> layers.L.q_norm
  gate_up_swap:L     layer L's gate and up swapped            -> layers.L.gate
  final_norm_scale   final norm weight x 1.25                 -> norm
"""

import argparse
import json
import sys
from pathlib import Path

import onnx
import torch
from transformers import AutoConfig, Qwen3ForCausalLM, Qwen3Model

DEFECTS = ["rope_base", "q_norm_ones", "gate_up_swap", "final_norm_scale"]


class LastHidden(torch.nn.Module):
    """Qwen3Model with the onnx-community signature: three int64 inputs, last_hidden_state out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=False).last_hidden_state


class WithPast(torch.nn.Module):
    """LastHidden with a KV cache in and out: past_key_values.{i}.key/value [batch, Hkv, past, Dh]
    inputs, present.{i}.key/value outputs, the attention mask over past + new positions."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i in range(len(past) // 2):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
        present = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
        return (out.last_hidden_state, *present)


class WithPastLM(torch.nn.Module):
    """A Qwen3ForCausalLM with a KV cache, laid out as the onnx-community reranker files are (optimum's
    text-generation-with-past): WithPast's decoder, then the LM head, logits [batch, seq, vocab] and
    present.* out. The modules keep their checkpoint paths (/model/layers.{i}/..., /lm_head/MatMul)."""

    def __init__(self, lm):
        super().__init__()
        self.model, self.lm_head = lm.model, lm.lm_head

    def forward(self, input_ids, attention_mask, position_ids, *past):
        hidden, *present = WithPast.forward(self, input_ids, attention_mask, position_ids, *past)
        return (self.lm_head(hidden), *present)


def load(ckpt, defect, causal_lm=False):
    """The checkpoint in fp32 with eager attention: Qwen3Model, or with causal_lm the whole
    Qwen3ForCausalLM (a reranker's: its LM head reads the yes/no logits), a defect planted."""
    config = AutoConfig.from_pretrained(ckpt)
    name, _, layer = (defect or "").partition(":")
    if name == "rope_base":
        params = dict(getattr(config, "rope_parameters", None) or {"rope_type": "default"})
        params["rope_theta"] = float(params.get("rope_theta", getattr(config, "rope_theta", 1e6))) * 100
        config.rope_parameters = params
        if hasattr(config, "rope_theta"):
            config.rope_theta = params["rope_theta"]
    cls = Qwen3ForCausalLM if causal_lm else Qwen3Model
    whole = cls.from_pretrained(ckpt, config=config, dtype=torch.float32, attn_implementation="eager").eval()
    model = whole.model if causal_lm else whole
    with torch.no_grad():
        if name == "q_norm_ones":
            model.layers[int(layer)].self_attn.q_norm.weight.fill_(1.0)
        elif name == "gate_up_swap":
            mlp = model.layers[int(layer)].mlp
            g, u = mlp.gate_proj.weight.clone(), mlp.up_proj.weight.clone()
            mlp.gate_proj.weight.copy_(u), mlp.up_proj.weight.copy_(g)
        elif name == "final_norm_scale":
            model.norm.weight.mul_(1.25)
        elif name and name != "rope_base":  # rope_base went into the config above
            sys.exit(f"unknown defect {name}; choose from {', '.join(DEFECTS)}")
    return whole


def export_fp32(model, path, static=None, dtype=torch.long):
    """static: a fixed [1, static] shape (no dynamic axes), as exports for NPUs and some app
    runtimes are made. dtype: the inputs' (torch.int32: the exporter declares int32 inputs)."""
    ids = torch.arange(11, 11 + (static or 5), dtype=dtype)[None]
    mask = torch.ones_like(ids)
    pos = torch.arange(ids.shape[1], dtype=dtype)[None]
    dyn = None if static else {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                               "position_ids": {0: "batch", 1: "seq"}, "last_hidden_state": {0: "batch", 1: "seq"}}
    torch.onnx.export(LastHidden(model), (ids, mask, pos), str(path), dynamo=False, opset_version=18,
                      input_names=["input_ids", "attention_mask", "position_ids"], output_names=["last_hidden_state"],
                      dynamic_axes=dyn, do_constant_folding=True)
    gather_external_data(path)


def gather_external_data(path):
    """torch writes a model over protobuf's 2 GB limit with one external file per tensor: gather
    them into one model.onnx_data beside it, as the onnx-community files are laid out."""
    torch_files = {d.value for t in onnx.load(str(path), load_external_data=False).graph.initializer
                   for d in t.external_data if d.key == "location"}
    m = onnx.load(str(path))
    try:
        big = m.ByteSize() > 2**31 - 2**20
    except Exception:  # protobuf refuses to even size a message over 2 GB
        big = True
    if big or torch_files:
        onnx.save(m, str(path), save_as_external_data=True, location=path.name + "_data")
        for name in torch_files - {path.name + "_data"}:
            (path.parent / name).unlink(missing_ok=True)


def export_past(model, path):
    """WithPast (WithPastLM for a Qwen3ForCausalLM) through the same exporter, traced with 2 past
    positions; the axes named as optimum names them."""
    cfg = model.config
    lm = isinstance(model, Qwen3ForCausalLM)
    out = "logits" if lm else "last_hidden_state"
    kv = [f"{i}.{t}" for i in range(cfg.num_hidden_layers) for t in ("key", "value")]
    ids = torch.tensor([[11, 12, 13, 14, 15]], dtype=torch.long)
    mask = torch.ones((1, 7), dtype=torch.long)
    pos = torch.arange(2, 7)[None]
    past = [torch.zeros(1, cfg.num_key_value_heads, 2, cfg.head_dim) for _ in kv]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "position_ids": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           out: {0: "batch_size", 1: "sequence_length"},
           **{f"past_key_values.{n}": {0: "batch_size", 2: "past_sequence_length"} for n in kv},
           **{f"present.{n}": {0: "batch_size", 2: "total_sequence_length"} for n in kv}}
    torch.onnx.export((WithPastLM if lm else WithPast)(model), (ids, mask, pos, *past), str(path), dynamo=False,
                      opset_version=18,
                      input_names=["input_ids", "attention_mask", "position_ids"] + [f"past_key_values.{n}" for n in kv],
                      output_names=[out] + [f"present.{n}" for n in kv], dynamic_axes=dyn,
                      do_constant_folding=True)
    gather_external_data(path)


def optimized(src):
    """src as ONNX Runtime saves it after its portable graph optimizations, beside it as *_opt.onnx
    (src made first: list its variant before VARIANT_opt)."""
    import onnxruntime as ort

    dst = src.with_name(src.stem + "_opt.onnx")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    return dst


def quantize(src, dst, variant):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if variant in ("int8", "uint8", "int8_per_channel"):
        # transformers.js quantize_q8: IntegerOps, dynamic, MatMulConstBOnly, activations QUInt8
        quantize_dynamic(str(src), str(dst), per_channel=variant == "int8_per_channel", reduce_range=False,
                         weight_type=QuantType.QUInt8 if variant == "uint8" else QuantType.QInt8,
                         extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True})
    elif variant in ("q4", "q4f16"):
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        q = MatMulNBitsQuantizer(onnx.load(str(src)), block_size=32, is_symmetric=True, accuracy_level=None)
        q.process()
        model = q.model.model
        if variant == "q4f16":
            model = to_fp16(model)
        onnx.save(model, str(dst))
    elif variant in ("q4_zp", "q8", "q2"):
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        opts = {"q4_zp": dict(bits=4, block_size=128, is_symmetric=False),
                "q8": dict(bits=8, block_size=32, accuracy_level=4, is_symmetric=False),
                "q2": dict(bits=2, block_size=32, accuracy_level=4, is_symmetric=True)}[variant]
        q = MatMulNBitsQuantizer(onnx.load(str(src)), **opts)
        q.process()
        onnx.save(q.model.model, str(dst))
    elif variant == "bnb4":
        from onnxruntime.quantization.matmul_bnb4_quantizer import MatMulBnb4Quantizer

        q = MatMulBnb4Quantizer(onnx.load(str(src)), quant_type=1, block_size=64)  # 1: NF4
        q.process()
        onnx.save(q.model.model, str(dst))
    elif variant == "fp16":
        save(to_fp16(shape_inferred(src)), dst)
    else:
        sys.exit(f"unknown variant {variant}")


def to_fp16(model):
    """transformers.js's fp16 recipe: its converter blocks the Cast op (fp32 casts already in the graph
    stay fp32, with casts around them); without that, the converter marks their outputs fp16 and ONNX
    Runtime refuses the graph. onnxconverter-common 1.16 loops forever when "Cast" itself is blocked
    (it re-blocks the casts it inserts), so the graph's own Cast nodes are blocked by name."""
    from onnxconverter_common import float16

    casts = [n.name for n in model.graph.node if n.op_type == "Cast"]
    inferred = any(v.type.tensor_type.elem_type for v in model.graph.value_info)  # shape_inferred() did it
    # A with-past graph keeps no fp32 io: with its cache inputs kept fp32, the converter leaves an fp16
    # Unsqueeze on them that ONNX Runtime refuses to load; its cache, logits and present go fp16.
    past = any(i.name.startswith("past_key_values.") for i in model.graph.input)
    return float16.convert_float_to_float16(model, keep_io_types=not past, disable_shape_infer=inferred,
                                            node_block_list=casts)


def shape_inferred(src):
    """The model at `src` with its shapes inferred file to file: a 0.6B fp32 graph is 2.4 GB, past
    what protobuf serializes in memory, so the converter's own inference fails on it (as
    onnxconverter-common's convert_float_to_float16_model_path does; beside src, where its
    external data resolves)."""
    import tempfile

    from onnx.shape_inference import infer_shapes_path

    with tempfile.NamedTemporaryFile(dir=Path(src).parent, suffix=".onnx") as tmp:
        infer_shapes_path(str(src), tmp.name)
        return onnx.load(tmp.name)


def save(model, dst):
    """One file when it fits protobuf's 2 GB, else the weights in dst's .onnx_data beside it."""
    big = sum(t.ByteSize() for t in model.graph.initializer) > 2**31 - 2**26
    onnx.save(model, str(dst), save_as_external_data=big, location=Path(dst).name + "_data")


FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx", "int8_per_channel": "model_int8_pc.onnx",
         "uint8": "model_uint8.onnx", "q4": "model_q4.onnx", "q4f16": "model_q4f16.onnx",
         "q4_zp": "model_q4_zp.onnx", "q8": "model_q8.onnx", "q2": "model_q2.onnx",
         "fp16": "model_fp16.onnx", "bnb4": "model_bnb4.onnx", "past": "model_past.onnx",
         "static24": "model_static24.onnx", "int32": "model_int32.onnx"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ckpt")
    p.add_argument("out")
    p.add_argument("--name", default="model", help="file name prefix instead of 'model'")
    p.add_argument("--variants", default="fp32,int8,uint8,q4,fp16")
    p.add_argument("--defect")
    p.add_argument("--causal-lm", action="store_true",
                   help="a reranker: Qwen3ForCausalLM with past, logits out (the fp32 file is the with-past export)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / v.replace("model", a.name, 1) for k, v in FILES.items()}
    model = load(a.ckpt, a.defect, a.causal_lm)
    (export_past if a.causal_lm else export_fp32)(model, files["fp32"])
    for variant in a.variants.split(","):
        if variant == "past":
            export_past(model, files[variant])
        elif variant == "static24":
            export_fp32(model, files[variant], static=24)
        elif variant == "int32":
            export_fp32(model, files[variant], dtype=torch.int32)
        elif variant.endswith("_opt"):
            files[variant] = optimized(files[variant.removesuffix("_opt")])
        elif variant != "fp32":
            quantize(files["fp32"], files[variant], variant)
    for variant in a.variants.split(","):
        print(f"wrote {files[variant]} ({files[variant].stat().st_size / 1e6:.2f} MB)")
    import onnxruntime
    import transformers
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                      "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}))


if __name__ == "__main__":
    main()
