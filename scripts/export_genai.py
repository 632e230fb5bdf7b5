"""Export a Qwen3-Embedding checkpoint with onnxruntime-genai's model builder, as a user deploying
it through onnxruntime-genai would: the hidden states out, no LM head (--causal-lm: a reranker,
its LM head kept, logits out).

    /path/to/reference-venv/bin/python scripts/export_genai.py CKPT_DIR OUT.onnx
        [--precision fp32|int4|int8] [--defect NAME[:LAYER]] [--context 512]

Needs onnxruntime-genai (its builder needs torch and transformers) besides the reference
environment. The builder runs (`python -m onnxruntime_genai.models.builder ... --extra_options
exclude_lm_head=true`) on a copy of the
checkpoint (transformers' Qwen3ForCausalLM, fp32, with export_onnx.py's --defect planted if any;
max_position_embeddings set to --context, the length of the cos/sin caches the builder stores,
to keep a test graph small), then the graph and its weights are saved as one .onnx file.
int4: the builder's MatMulNBits (its defaults: 4 bits, blocks of 32, accuracy_level 4 on CPU).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_onnx import load  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ckpt")
    p.add_argument("out")
    p.add_argument("--precision", default="fp32", choices=["fp32", "int4", "int8"])
    p.add_argument("--defect")
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--causal-lm", action="store_true",
                   help="a reranker: the checkpoint's own Qwen3ForCausalLM, LM head kept (logits out)")
    a = p.parse_args()
    from transformers import Qwen3ForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        hf, built = Path(tmp) / "hf", Path(tmp) / "built"
        if a.causal_lm:
            lm = load(a.ckpt, a.defect, causal_lm=True)  # its LM head (tied or not) as the checkpoint has it
            lm.config.max_position_embeddings = a.context
        else:
            body = load(a.ckpt, a.defect)  # Qwen3Model, defect planted
            config = body.config
            config.max_position_embeddings = a.context
            config.architectures = ["Qwen3ForCausalLM"]
            lm = Qwen3ForCausalLM(config).eval()
            lm.model.load_state_dict(body.state_dict())
        lm.save_pretrained(hf)
        extra = [] if a.causal_lm else ["--extra_options", "exclude_lm_head=true"]
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(built),
                        "-p", a.precision, "-e", "cpu", "-c", str(Path(tmp) / "cache"), *extra],
                       check=True, stdout=subprocess.DEVNULL)
        m = onnx.load(str(built / "model.onnx"))  # its weights from model.onnx.data beside it
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        onnx.save(m, a.out)
    import onnxruntime_genai
    import transformers
    print(f"wrote {a.out} ({Path(a.out).stat().st_size / 1e6:.2f} MB)")
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                      "onnxruntime-genai": onnxruntime_genai.__version__}))


if __name__ == "__main__":
    main()
