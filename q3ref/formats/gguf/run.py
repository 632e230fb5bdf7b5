"""The graph side of a GGUF diff: llama.cpp's own nodes, from a live run (llama.py, needs
llama-cpp-python) or from a recording of one (.npz, as scripts/export_gguf.py writes: per run
"{k}/ids", "{k}/pooled" and "{k}/{indexed node key}")."""

from __future__ import annotations

import numpy as np

from ...errors import Q3RefError
from .align import node_key

POOLED = "result_embd_pooled:GET_ROWS"


def as_taps(nodes: dict, pooled) -> dict[str, np.ndarray]:
    """{indexed key: ggml-shaped array} -> {node key: [1, T, ...]}; the first node of a key wins
    (later ones with the same name and op are norms inside build_norm, not taps)."""
    out = {}
    for k, v in nodes.items():
        key = node_key(k)
        if key not in out:
            v = np.asarray(v, np.float32)
            while v.ndim > 2 and v.shape[0] == 1:  # ggml's unit outer dims
                v = v[0]
            out[key] = v[None]  # [1, T, ...]
    out[POOLED] = np.asarray(pooled, np.float32)[None]  # [1, D]
    return out


def run_live(path, ids):
    from .llama import run_llama

    return as_taps(*run_llama(path, ids))


def recorded_runs(npz_path):
    """{tuple(ids): (nodes, pooled)} of a recording."""
    try:
        z = np.load(npz_path)
    except (OSError, ValueError) as e:
        raise Q3RefError(f"{npz_path}: not a recording of llama.cpp runs ({e})") from None
    runs = {}
    for run in sorted({k.split("/", 1)[0] for k in z.files}):
        if f"{run}/ids" not in z.files:
            raise Q3RefError(f"{npz_path}: run {run} has no ids")
        nodes = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith(run + "/") and k.count(":")}
        runs[tuple(int(i) for i in z[f"{run}/ids"])] = (nodes, z[f"{run}/pooled"])
    return runs


def run_recorded(npz_path, ids):
    runs = recorded_runs(npz_path)
    key = tuple(int(i) for i in ids)
    if key not in runs:
        raise Q3RefError(f"{npz_path} holds no run of these ids; it has runs of {len(runs)} inputs, "
                         f"e.g. --ids {','.join(map(str, next(iter(runs))))}")
    return as_taps(*runs[key])
