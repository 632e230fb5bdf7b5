"""The RoPE tables a litert-torch graph carries, for the simulation to rotate with.

litert-torch bakes cos and sin for positions 0..seq_len-1 into the graph as fp32 constants
[1, 1, S, Dh/2] that MULs read. quant.rope_tables_litert recomputes them from the config, but not
to the bit: on the stress graph 4 of 512 sin values are 1 ulp off (torch's sinf), and on the
0.6B graph (Dh 128, 512 positions) torch's powf puts some frequencies 1 ulp elsewhere, so an angle
near 511 rad moves by ~5e-5 and a sin near 0 by thousands of ulps (1e-6 absolute). 1 ulp in
q_rope flips an int8 activation level layers later. So the simulation reads the graph's own
tables wherever they are the config's up to that rounding (TOLERANCE): a table built from another
RoPE base (a defect the diff must localize) is off by 0.1 and more, and is never adopted.
"""

from __future__ import annotations

import numpy as np

from ...quant import rope_tables_litert


def tolerance(S) -> float:
    """How far fp32 rounding of the angles moves a table entry at positions below S: an angle
    pos * freq (freq <= 1) off by a few ulps of itself, ~S * 2^-22 each; with room, S * 2^-20."""
    return S * 2.0 ** -20


def graph_tables(g, cfg) -> tuple[np.ndarray, np.ndarray] | None:
    """(cos, sin) [S, Dh/2] from the graph's constants, or None when it has no pair within
    tolerance(S) of the config's (rope_tables_litert)."""
    S, half = g.seq_len, cfg.head_dim // 2
    cos, sin = (t[:, :half] for t in rope_tables_litert(np.arange(S), cfg.head_dim, cfg.rope_theta))  # [S, Dh/2]
    found = {}
    for t in {i for op in g.ops if op.kind == "MUL" for i in op.inputs}:
        c = g.constant(t)
        if c is None or c.dtype != np.float32 or c.size != S * half or c.shape[-1] != half:
            continue
        c = c.reshape(S, half)
        for name, ref in (("cos", cos), ("sin", sin)):
            if name not in found and np.abs(c - ref).max() <= tolerance(S):
                found[name] = c
    return (found["cos"], found["sin"]) if len(found) == 2 else None


def tables_from(cos_g, sin_g):
    """A K["rope_tables"] (model.forward's hook) that looks positions up in the graph's tables."""
    def rope_tables(pos, head_dim, theta, dtype=np.float32):  # [N] -> cos, sin [N, Dh]
        pos = np.asarray(pos)
        cos, sin = cos_g[pos].astype(dtype), sin_g[pos].astype(dtype)  # [N, Dh/2] each
        return np.concatenate([cos, cos], axis=-1), np.concatenate([sin, sin], axis=-1)  # [N, Dh] each
    return rope_tables
