"""The graph side of a GGUF diff: llama.cpp's own nodes, from a live run (llama.py, needs
llama-cpp-python) or from a recording of one (.npz, as scripts/export_gguf.py writes: per run
"{k}/ids", "{k}/pooled" and "{k}/{indexed node key}", and "{k}/deployed", the output of the same
ids run with llama.cpp's defaults; "file_sha256" and "file_name" of the GGUF that ran;
"system_info" and "cpu" of the build and machine that ran it)."""

from __future__ import annotations

import hashlib

import numpy as np

from ...errors import Q3RefError
from ..cpu import cpu_name
from .align import node_key, per_head
from .file import RANK_HEAD

OUTPUT = "llama_get_embeddings_seq"  # what a run hands back: the pooled row [D], or a rank file's [classes]
RANK_INPUT = "rank_input:GET_ROWS"  # the row rank pooling reads: its GET_ROWS node has no name of its own


def as_taps(nodes: dict, pooled) -> dict[str, np.ndarray]:
    """{indexed key: ggml-shaped array} -> {node key: [1, T, ...]}; the first node of a key wins
    (later ones with the same name and op are norms inside build_norm, not taps). The GET_ROWS
    right before a rank head's matmul is also kept as RANK_INPUT."""
    out, previous = {}, None
    for k in sorted(nodes, key=lambda k: int(k.split(":", 1)[0])):  # graph order
        key = node_key(k)
        if key not in out:
            v = np.asarray(nodes[k], np.float32)[0]  # ggml's ne3 = 1: [ne2, ne1, ne0]
            if not per_head(key):
                v = v[0]  # a 2-D node: [T, D] (ne2 = 1); per-head nodes are [T, H, Dh], even at T = 1
            out[key] = v[None]  # [1, T, ...]
        if key == f"MUL_MAT:{RANK_HEAD}" and previous and previous.endswith(":GET_ROWS"):
            out[RANK_INPUT] = out[previous]  # [1, 1, D]
        previous = key
    out[OUTPUT] = np.asarray(pooled, np.float32)[None]  # [1, D] or [1, classes]
    return out


def run_deployed(path, ids):
    """-> the output of the file run as llama.cpp's defaults run it (flash attention auto, its thread
    count, no eval callback): what llama-server and llama-embedding return."""
    from .llama import FLASH_ATTN_AUTO, run_llama

    return run_llama(path, ids, capture=False, threads=None, flash_attn=FLASH_ATTN_AUTO)[1]


def run_live(path, ids):
    """-> ({node key: [1, T, ...]}, the build's feature line, this CPU's name)."""
    from .llama import run_llama, system_info

    return as_taps(*run_llama(path, ids)), system_info(), cpu_name()


def file_digest(path) -> str:
    """sha256 of a file, read 16 MB at a time (a 0.6B Q8_0 file: about 1 s)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def check_recording_is_of(npz_path, gguf_file):
    """A recording diffed against another file would pass that file off as the recorded one (a
    base file's runs against a defective file with the same embedding table show no defect).
    Recordings name their file by sha256; one that does not is held to the file's embedding rows
    for its ids, which are llama.cpp's GET_ROWS of the file's own table, bit for bit."""
    z = _load(npz_path)
    if "file_sha256" in z.files:
        recorded, here = str(z["file_sha256"]), file_digest(gguf_file.path)
        if recorded != here:
            name = str(z["file_name"]) if "file_name" in z.files else "another file"
            raise Q3RefError(f"{npz_path} was recorded from {name} (sha256 {recorded[:12]}), not from "
                             f"{gguf_file.path} (sha256 {here[:12]}); record this file's runs or run llama.cpp live")
        return
    for ids, (nodes, _) in recorded_runs(npz_path).items():
        rows = next((v for k, v in nodes.items() if k.split(":")[1] == "embd"), None)
        if rows is None:
            continue
        own = gguf_file.dequantize("embed_tokens.weight", np.array(ids))  # [n, D]
        if not np.array_equal(np.asarray(rows, np.float32).reshape(own.shape), own):
            raise Q3RefError(f"{npz_path} is not a recording of {gguf_file.path}: its embedding rows for "
                             f"ids {','.join(map(str, ids[:8]))}... differ from the file's")


def _load(npz_path):
    try:
        z = np.load(npz_path)
    except (OSError, ValueError) as e:
        raise Q3RefError(f"{npz_path}: not a recording of llama.cpp runs ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):  # a lone .npy array
        raise Q3RefError(f"{npz_path}: not a recording of llama.cpp runs (one array, not an .npz of runs)")
    return z


def recorded_runs(npz_path):
    """{tuple(ids): (nodes, pooled)} of a recording."""
    z = _load(npz_path)
    runs = {}
    for run in sorted({k.split("/", 1)[0] for k in z.files if "/" in k}):
        if f"{run}/ids" not in z.files or f"{run}/pooled" not in z.files:
            raise Q3RefError(f"{npz_path}: run {run} has no ids or no pooled output")
        nodes = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(run + "/") and k.count(":")}
        runs[tuple(int(i) for i in z[f"{run}/ids"])] = (nodes, z[f"{run}/pooled"])
    return runs


def recorded_deployed(npz_path, ids):
    """-> the recorded output of these ids as llama.cpp's defaults run them, or None."""
    z = _load(npz_path)
    for run in sorted({k.split("/", 1)[0] for k in z.files if k.endswith("/deployed")}):
        if tuple(int(i) for i in z[f"{run}/ids"]) == tuple(int(i) for i in ids):
            return z[f"{run}/deployed"]
    return None


def run_recorded(npz_path, ids):
    """-> like run_live, from the recording (which carries the build and CPU it was made on)."""
    runs = recorded_runs(npz_path)
    key = tuple(int(i) for i in ids)
    if not runs:
        raise Q3RefError(f"{npz_path}: not a recording of llama.cpp runs (no run in it)")
    if key not in runs:
        raise Q3RefError(f"{npz_path} holds no run of these ids; it has runs of {len(runs)} inputs, "
                         f"e.g. --ids {','.join(map(str, next(iter(runs))))}")
    z = np.load(npz_path)
    info = str(z["system_info"]) if "system_info" in z.files else ""
    cpu = str(z["cpu"]) if "cpu" in z.files else "unknown CPU"
    return as_taps(*runs[key]), info, cpu
