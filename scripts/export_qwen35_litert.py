"""Regenerate tests/fixtures/qwen35/litert: the tiny random Qwen3.5 checkpoint (tests/fixtures/qwen35/
checkpoint) exported by litert-torch's own Qwen3.5 path, as the 0.8B LiteRT release is made.

    python scripts/export_qwen35_litert.py    # a litert env: torch==2.13.0, litert-torch 0.10, tensorflow,
                                              # transformers 5.24 (litert-torch imports tensorflow)

Writes:
- model.litertlm: the fp32 export (signatures prefill_64 and decode, cache 256), bundled by
  litert-torch with its tokenizer (`bundle_litert_lm=True`);
- int8.tflite: the same with litert-torch's `dynamic_wi8_afp32` recipe (int8 weights, fp32
  activations: the release's recipe);
- defect_k_norm.tflite: fp32, layer 1's k_norm weight stored as w - 1 (a zero-centred norm exported
  as if it were plain: the graph computes w instead of 1 + w), a planted defect for the diff to find;
- model.litertlm.peek.txt: what litert-lm-builder's own reader (litertlm_peek) prints of the bundle,
  which tests/test_qwen35_litert.py holds q3ref's reader to;
- VERSION: the versions that made them.
Every graph holds the custom op `gated_delta_update`, which ai-edge-litert's stock interpreter
does not resolve (q3ref runs the op's documented math in its place: q3ref/qwen35/litert.py).
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CKPT = ROOT / "tests/fixtures/qwen35/checkpoint"
OUT = ROOT / "tests/fixtures/qwen35/litert"
ARGS = dict(keep_temporary_files=True, cache_length=256, prefill_lengths=[64], externalize_embedder=False)


def export(ckpt, out, **kw):
    from litert_torch.generative.export_hf import export as lt

    lt.export(model=str(ckpt), output_dir=str(out), **ARGS, **kw)


def planted(tmp):
    """The checkpoint with layer 1's k_norm weight w stored as w - 1."""
    from safetensors.numpy import load_file, save_file

    ckpt = Path(tmp) / "defect"
    shutil.copytree(CKPT, ckpt)
    tensors = load_file(ckpt / "model.safetensors")
    tensors["model.layers.1.self_attn.k_norm.weight"] = tensors["model.layers.1.self_attn.k_norm.weight"] - 1
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    return ckpt


def peek():
    import subprocess

    r = subprocess.run([sys.executable, "-m", "litert_lm_builder.litertlm_peek_main", "--litertlm_file",
                        str(OUT / "model.litertlm")], capture_output=True, text=True, check=True)
    (OUT / "model.litertlm.peek.txt").write_text(r.stdout)


def main():
    if sys.argv[1:] == ["--peek"]:
        return peek()
    import ai_edge_litert
    import litert_torch
    import torch
    import transformers

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export(CKPT, tmp / "fp32", quantization_recipe="", bundle_litert_lm=True)
        shutil.copyfile(next((tmp / "fp32").glob("*.litertlm")), OUT / "model.litertlm")
        export(CKPT, tmp / "int8", quantization_recipe="dynamic_wi8_afp32", bundle_litert_lm=False)
        shutil.copyfile(next((tmp / "int8").rglob("*_quantized.tflite")), OUT / "int8.tflite")
        export(planted(tmp), tmp / "defect", quantization_recipe="", bundle_litert_lm=False)
        shutil.copyfile(tmp / "defect/model.tflite", OUT / "defect_k_norm.tflite")
    peek()
    versions = {"litert-torch": getattr(litert_torch, "__version__", "?"), "ai-edge-litert": ai_edge_litert.__version__,
                "torch": torch.__version__, "transformers": transformers.__version__, **ARGS}
    (OUT / "VERSION").write_text(json.dumps(versions, indent=2) + "\n")
    print(f"wrote {OUT}: " + ", ".join(f"{p.name} {p.stat().st_size // 1024} KB" for p in sorted(OUT.iterdir())))


if __name__ == "__main__":
    sys.exit(main())
