"""Write q3ref/formats/litert/sdpa_probe.tflite: one odml.scaled_dot_product_attention composite,
as litert-torch writes it into every Qwen3 export, on GQA shapes with nothing else around it.

    /path/to/litert-env/bin/python scripts/make_sdpa_probe.py [OUT]   (litert-torch; not q3ref's env)

probe.py runs it on both runtimes: the builtin kernels run the composite's decomposition, the
XNNPACK delegate its own attention subgraph, and each is compared with q3ref's emulation
(quant.attention_builtin, xnnpack.attention) bit for bit. The shapes test what the emulations
must get right: 72 keys (one 64-wide step of XNNPACK's row sum, then an 8-value tail), head_dim 32
(its scale 1/sqrt(32) is no power of two), 4 query heads on 2 KV heads. It has no weights:
5.3 KB, and it regenerates byte for byte (litert-torch 0.10.0).
"""

import sys
from pathlib import Path

import litert_torch
import torch
from litert_torch.generative.layers.scaled_dot_product_attention import scaled_dot_product_attention_with_hlfb

T, H, HKV, DH = 72, 4, 2, 32  # formats/litert/probe.py reads these shapes from the graph


class SDPA(torch.nn.Module):
    def forward(self, q, k, v, mask):  # [1, T, H, Dh], [1, T, Hkv, Dh] x2, [1, 1, T, T] additive
        return scaled_dot_product_attention_with_hlfb(q, k, v, DH, mask)


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "q3ref/formats/litert/sdpa_probe.tflite"
    args = (torch.zeros(1, T, H, DH), torch.zeros(1, T, HKV, DH), torch.zeros(1, T, HKV, DH), torch.zeros(1, 1, T, T))
    litert_torch.convert(SDPA().eval(), args).export(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
