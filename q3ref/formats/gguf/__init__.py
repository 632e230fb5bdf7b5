"""GGUF files for llama.cpp (llama-cpp-python, ollama, LM Studio): metadata, tensors and quant
types read with gguf-py; llama.cpp's own nodes as the graph side of the diff.

file.py reads the file and maps its names to the checkpoint's; checks.py names metadata bugs;
align.py knows which node is which tap; llama.py runs llama.cpp and copies its nodes out; run.py
hands them over (live, or replayed from a recording); quants.py quantizes as llama-quantize does
and sim.py computes as llama.cpp's CPU backend does. llama.cpp pools inside (the file's pooling
type); the bridge normalizes (output_tap "pooled"). A reranker's file (rank pooling and a rank
head, cls.output: the LM head's yes and no rows) ends in their softmax (output_tap "score").
"""

from __future__ import annotations

import numpy as np

from ..taps import config_problems
from .align import align
from .checks import metadata_checks
from .file import HEAD_ROWS, POOLING_RANK, GGUFFile
from .run import OUTPUT, run_live, run_recorded

MAGIC = b"GGUF"
# Local relative L2 error a quantized stage may add against the fp32 reference, by the lowest-bit
# type in the file. Measured on the committed files (llama.cpp, this CPU): F16 <= 1.5e-3 (KV cache,
# probabilities and activations in fp16 too), Q8_0 <= 1e-2, Q6_K <= 2e-2, Q4_K_M <= 0.1; the planted
# defects add >= 0.3.
LOCAL_LIMIT = {"F32": 1e-4, "F16": 5e-3, "BF16": 2e-2, "Q8_0": 3e-2, "Q6_K": 5e-2, "Q5_K": 0.1, "Q4_K": 0.2, "Q4_0": 0.25}
QUANTIZED_STAGES = {"q", "k", "v", "o_proj", "gate", "up", "down"}
FP16_STAGES = {"attn"}  # the F16 KV cache, q and probabilities rounded to fp16 inside the attention
BLOCK_BYTES = {"F16": 2, "BF16": 2, "Q8_0": 34, "Q4_0": 18, "Q4_K": 144, "Q5_K": 176, "Q6_K": 210}  # one block (or value)
BITS = ["F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q4_0"]  # most to least precise


def match(head: bytes) -> bool:
    return head[:4] == MAGIC


def open(path):  # noqa: A001  (the face's verb)
    return Export(path)


class Export:
    format = "gguf"
    seq_len = None
    output = OUTPUT

    def __init__(self, path):
        self.file = GGUFFile(path)
        self.path = self.file.path
        self.runtimes = ("llama.cpp",)
        self.recording = None
        self.build = self.cpu = None  # the llama.cpp build and CPU of the last run
        types = {t.tensor_type.name for t in self.file.reader.tensors if len(t.shape) > 1}
        self.weight_types = types
        self.precision = self.file.describe()["file_type"]
        self.simulation = f"llama.cpp's {self.precision} (per tensor, from the file)"
        # llama.cpp pools (normalizing is the bridge's), or, in a reranker's file, scores
        ranks = self.file.rank_head() is not None and self.file.key("pooling_type") == POOLING_RANK
        self.output_tap = "score" if ranks else "pooled"

    def types(self):
        """{checkpoint name: ggml type} of every tensor q3ref reads (HEAD_ROWS: the rank head)."""
        types = {name: self.file.type_of(name) for name in self.file.names}
        if self.file.rank_head() is not None:
            types[HEAD_ROWS] = self.file.rank_head().tensor_type.name
        return types

    def simulate(self, weights, kernels, runtime, offset=0):
        from .sim import simulate

        note = self.runtime_note(runtime, True)
        return simulate(weights, kernels, self.types(), exact=bool(note and note["emulated"]))

    def replay(self, npz_path):
        """Diff against a recording of llama.cpp's runs instead of running it (runtime "recorded"),
        once the recording is shown to be of this file."""
        from .run import check_recording_is_of

        check_recording_is_of(npz_path, self.file)
        self.recording, self.runtimes = npz_path, ("recorded", "llama.cpp")

    def describe(self):
        d = self.file.describe()
        size = self.path.stat().st_size
        return {"graph": str(self.path), "size_mb": round(size / 2**20, 2), "precision": self.precision,
                "seq_len": None, **d}

    def summary(self, d):
        """inspect's lines: the metadata that matters, tensor types, and the checks' verdicts."""
        from ..taps import config_line

        lines = [f"{d['graph']}: {d['size_mb']} MB, GGUF {d['architecture']}, file type {d['file_type']}, "
                 f"{d['layers']} blocks, hidden {d['hidden_size']}, vocab {d['vocab_size']}",
                 f"  heads {d['heads']} / kv {d['kv_heads']}, head dim {d['head_dim']}, ffn {d['intermediate_size']}, "
                 f"rope base {d['rope_base']:g}, rms eps {d['rms_eps']:g}, context {d['context_length']}",
                 f"  pooling {d['pooling']}, add_eos {d['add_eos']}, add_bos {d['add_bos']}, eos id {d['eos_id']}, "
                 f"pad id {d['pad_id']}",
                 "  tensors: " + ", ".join(f"{k} {v}" for k, v in sorted(d["tensor_types"].items()))]
        head = d.get("rank_head")
        if head:
            ids = self.file.label_ids()
            lines.append(f"  rank head cls.output ({head['type']}): {head['rows']} rows for labels "
                         + ", ".join(f"{label!r} (id {i})" for label, i in zip(head["labels"], ids))
                         + "; llama.cpp's score is the softmax over them, the first one's share")
        lines += config_line(d)
        rows = d.get("quantized_weights") or []
        if rows:
            same = [r for r in rows if r["equal"]]
            lines.append(f"  quantized weights: {len(same)}/{len(rows)} bit-identical to q3ref's quantization of the "
                         "checkpoint (llama-quantize's recipes, per tensor type)")
            lines += [f"    {r['weight']} ({r['type']}): {r['differing_blocks']} of {r['blocks']} blocks differ"
                      for r in rows if not r["equal"]]
        return lines

    def check_config(self, cfg):
        return config_problems(self.file.describe(), cfg, "blocks")

    def per_tensor_activations(self):
        return False  # ggml quantizes a matmul's activations per block of 32 or 256 values

    def bridge_checks(self, cfg=None, kind=None):
        return metadata_checks(self.file, cfg, kind)

    def head_ids(self):
        """The token ids of the rank head's rows (its labels found in the file's vocabulary)."""
        return self.file.label_ids()

    def align(self, cfg):
        return align(cfg, rank=self.output_tap == "score")

    def float_tensors(self):
        return []  # every tap is aligned by name; no numeric fallback

    def run(self, input_ids, mask, tensors=(), runtime="llama.cpp"):
        ids = input_ids[0][mask[0]]
        taps, self.build, self.cpu = run_recorded(self.recording, ids) if runtime == "recorded" else run_live(self.path, ids)
        return taps

    def tensor_name(self, key):
        return key

    def limits(self, simulated=False):
        if simulated:
            return {}  # the simulation is ggml-cpu's arithmetic: the fp32 floor everywhere
        lowest = max((t for t in self.weight_types if t in BITS), key=BITS.index, default="F32")
        limits = {stage: LOCAL_LIMIT[lowest] for stage in QUANTIZED_STAGES}
        limits["embed"] = LOCAL_LIMIT[self.file.type_of("embed_tokens.weight")]
        if self.file.rank_head() is not None:
            limits["logits"] = LOCAL_LIMIT[self.file.rank_head().tensor_type.name]
        for stage in FP16_STAGES:
            limits[stage] = LOCAL_LIMIT["F16"]
        return limits

    def read_by(self, runtime):
        return ("llama.cpp's graph nodes, " + ("replayed from " + str(self.recording) if runtime == "recorded" else
                "copied out by its eval callback (llama-cpp-python, 1 thread, flash attention off)"))

    def untapped(self, input_ids, mask, runtime):
        """The tapped run has flash attention off (so each attention product is a node); llama.cpp's
        default turns it on for a CPU, which computes attention otherwise (ggml-cpu ops.cpp: below 64
        query tokens an online softmax with V accumulated in fp16, from 64 the tiled kernel). That
        run's output, live or from the recording (None if it holds none for these ids)."""
        from .run import recorded_deployed, run_deployed

        how = ("llama.cpp's defaults: flash attention auto, on for a CPU (-fa off gives the attention the taps "
               "describe), its thread count, no eval callback")
        ids = input_ids[0][mask[0]]
        if runtime == "recorded":
            out = recorded_deployed(self.recording, ids)
            return None if out is None else (how + "; recorded", out[None])
        return how, run_deployed(self.path, ids)[None]  # [1, D] or [1, classes]

    def simulate_untapped(self, simulated):
        """simulate()'s (weights, kernels) -> the simulation of untapped()'s run: the same weights
        (quantized once: a second copy took a full-size diff from 6.4 to 9.6 GB), ggml's flash attention."""
        from .sim import with_flash_attention

        return with_flash_attention(simulated)

    def runtime_note(self, runtime, simulated):
        """Whether the simulation is ggml-cpu's own arithmetic for the build that ran (known after
        run()): {runtime, cpu, ops: {feature or type: emulated}, emulated}."""
        from .sim import emulated

        if not simulated or self.build is None:
            return None
        ops = emulated(self.build, set(self.types().values()))
        return {"variant": "ggml-cpu", "runtime": f"llama.cpp ({self.build})", "cpu": self.cpu,
                "ops": ops, "emulated": all(ops.values())}

    def check_weights(self, weights, cfg):
        """Each tensor's stored bytes against q3ref's quantization of the checkpoint's tensor to the
        same type (quants.py): [{weight, type, blocks, differing_blocks, equal}]."""
        from .quants import QUANTIZERS

        rows = []
        for name, t in self.types().items():
            if t == "F32":
                continue
            if name == HEAD_ROWS:  # the LM head's rows for the file's labels, in the file's order
                ids = self.file.label_ids()
                if None in ids or not ids:
                    continue  # the labels are not tokens of the file: bridge_checks says so
                mine, stored = QUANTIZERS[t](weights.head_rows(ids)), np.asarray(self.file.rank_head().data)
                name = f"cls.output.weight (lm_head rows {', '.join(map(str, ids))})"
            else:
                mine, stored = QUANTIZERS[t](weights[name]), self.file.raw(name)  # uint8 [rows, row bytes]
            stored = stored.view(np.uint8).reshape(mine.shape)
            block = BLOCK_BYTES[t]
            differ = (mine.reshape(-1, block) != stored.reshape(-1, block)).any(axis=1)
            rows.append({"weight": name, "type": t, "blocks": int(differ.size), "differing_blocks": int(differ.sum()),
                         "equal": not differ.any()})
        return rows

    def place(self, ids, padding, pad_id, truncate=False, length=None):
        from ...api import pad
        from ...errors import Q3RefError

        if length is not None:
            raise Q3RefError("--length: llama.cpp runs each sequence unpadded")
        return pad([list(ids)], "right", pad_id)  # [1, T] each, no padding
