"""Full-size Qwen3.5: a 512-token prefill of a random Qwen3.5-0.8B text decoder, q3ref next to
transformers' Qwen3_5ForCausalLM, in the same run.

    PYTHON=/path/to/ref/python     # torch==2.13.0 (CPU), transformers>=5.24, numba
    $PYTHON bench/qwen35_fullsize.py [--tokens 512]

Makes weights/random-qwen3.5-0.8b (git-ignored; `q3ref make-checkpoint --preset qwen3.5-0.8b`) on
first use. Each side runs in its own process, so each peak RSS is its own: load the checkpoint
(bf16 -> fp32), one warm-up prefill of 16 tokens, then the timed prefill, the last position's
logits kept. q3ref runs the chunked delta rule (as transformers' prefill) and then the recurrent
one (as LiteRT's graph); transformers runs fp32 with eager attention. Prints the table, the logits'
distances and the two forms' gap, and appends them to bench/RESULTS.md.
"""

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from measure import append_results  # noqa: E402

CKPT = ROOT / "weights/random-qwen3.5-0.8b"

COMMON = """
import json, resource, sys, time
import numpy as np
ids, out = np.load(sys.argv[1]), sys.argv[2]
def peak_gb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
"""

Q3REF = COMMON + """
from q3ref.qwen35.config import Qwen35Config
from q3ref.qwen35.model import forward
from q3ref.qwen35.weights import Qwen35Weights
t0 = time.perf_counter()
cfg = Qwen35Config.from_json(sys.argv[3] + "/config.json")
w = Qwen35Weights(sys.argv[3], cfg)
for name in w.raw:
    w[name]
forward(w, cfg, ids[:16])
load = time.perf_counter() - t0
res = {"load_s": load}
for form in ("chunked", "recurrent"):
    t0 = time.perf_counter()
    logits = forward(w, cfg, ids, form=form)
    res[form + "_s"] = time.perf_counter() - t0
    np.save(out + "." + form + ".npy", logits)
res["peak_gb"] = peak_gb()
print(json.dumps(res))
"""

TRANSFORMERS = COMMON + """
import torch
from transformers.models.qwen3_5 import Qwen3_5ForCausalLM
torch.set_num_threads(2)
t0 = time.perf_counter()
model = Qwen3_5ForCausalLM.from_pretrained(sys.argv[3], dtype=torch.float32, attn_implementation="eager").eval()
with torch.no_grad():
    model(torch.as_tensor(ids[:16])[None])
load = time.perf_counter() - t0
with torch.no_grad():
    t0 = time.perf_counter()
    logits = model(torch.as_tensor(ids)[None], logits_to_keep=1).logits[0, -1].numpy()
    prefill = time.perf_counter() - t0
np.save(out + ".transformers.npy", logits)
print(json.dumps({"load_s": load, "chunked_s": prefill, "peak_gb": peak_gb()}))
"""


def child(code, ids_file, out):
    r = subprocess.run([sys.executable, "-c", code, ids_file, out, str(CKPT)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        sys.exit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=512)
    a = p.parse_args()
    if not (CKPT / "model.safetensors").is_file():
        subprocess.run([sys.executable, "-m", "q3ref", "make-checkpoint", "--preset", "qwen3.5-0.8b", "--out", CKPT],
                       check=True, cwd=ROOT)
    from q3ref.formats.cpu import cpu_name

    tmp = ROOT / "weights/qwen35-bench"
    ids = np.random.default_rng(0).integers(0, 248320, a.tokens)
    np.save(str(tmp) + ".ids.npy", ids)
    q3 = child(Q3REF, str(tmp) + ".ids.npy", str(tmp))
    hf = child(TRANSFORMERS, str(tmp) + ".ids.npy", str(tmp))
    ref, chunked, recurrent = (np.load(f"{tmp}.{k}.npy") for k in ("transformers", "chunked", "recurrent"))
    rel = lambda x, y: float(np.abs(x - y).max() / np.abs(y).max())  # noqa: E731
    text = (f"\n## Qwen3.5 prefill, random 0.8B text decoder, {a.tokens} tokens ({datetime.date.today()})\n\n"
            f"{cpu_name()}. Each side in its own process: load (bf16 -> fp32, one 16-token warm-up), then one "
            "timed prefill to the last position's logits.\n\n"
            "| | load + warm-up s | prefill s | peak RSS GB |\n|---|---|---|---|\n"
            f"| q3ref, chunked delta rule (Numba) | {q3['load_s']:.1f} | {q3['chunked_s']:.2f} | {q3['peak_gb']:.2f} |\n"
            f"| q3ref, recurrent delta rule (Numba), same process | | {q3['recurrent_s']:.2f} | |\n"
            f"| transformers {hf_version()} (fp32, eager; chunked) | {hf['load_s']:.1f} | {hf['chunked_s']:.2f} | "
            f"{hf['peak_gb']:.2f} |\n\n"
            f"Last-position logits, max |diff| / max |transformers|: q3ref chunked {rel(chunked, ref):.2g}, "
            f"q3ref recurrent {rel(recurrent, ref):.2g}; the two forms' gap {rel(recurrent, chunked):.2g}.\n")
    append_results(text)


def hf_version():
    import transformers

    return transformers.__version__


if __name__ == "__main__":
    main()
