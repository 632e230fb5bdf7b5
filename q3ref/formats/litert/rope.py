"""The RoPE tables a litert-torch graph carries, for the simulation to rotate with.

litert-torch bakes cos and sin for positions 0..seq_len-1 into the graph as fp32 constants
[1, 1, S, Dh/2] that MULs read. quant.rope_tables_litert recomputes them from the config: every
cos value, but the export's torch sinf is not correctly rounded (4 of the stress graph's 512 sin
values are 1 ulp off; on the int4 graphs, 2 ulps), and 1 ulp in q_rope flips an int8 activation
level layers later. So the simulation reads the graph's own tables, but only where each is within
ULPS of the config's: a table built from another RoPE base (a defect the diff must localize) is
millions of ulps away and is never adopted.
"""

from __future__ import annotations

import numpy as np

from ...quant import rope_tables_litert

ULPS = 4  # torch's sinf against the exact sin of the same fp32 angle: at most 2 measured


def ulps(a, b) -> int:  # fp32 arrays of one shape -> the largest distance in units in the last place
    ia, ib = (np.asarray(x, np.float32).view(np.int32).astype(np.int64) for x in (a, b))
    ia, ib = (np.where(i < 0, -(i & 0x7FFFFFFF), i) for i in (ia, ib))  # sign-magnitude -> ordered
    return int(np.abs(ia - ib).max(initial=0))


def graph_tables(g, cfg) -> tuple[np.ndarray, np.ndarray] | None:
    """(cos, sin) [S, Dh/2] from the graph's constants, or None when it has no pair within ULPS
    of the config's (rope_tables_litert)."""
    S, half = g.seq_len, cfg.head_dim // 2
    cos, sin = (t[:, :half] for t in rope_tables_litert(np.arange(S), cfg.head_dim, cfg.rope_theta))  # [S, Dh/2]
    found = {}
    for t in {i for op in g.ops if op.kind == "MUL" for i in op.inputs}:
        c = g.constant(t)
        if c is None or c.dtype != np.float32 or c.size != S * half or c.shape[-1] != half:
            continue
        c = c.reshape(S, half)
        for name, ref in (("cos", cos), ("sin", sin)):
            if name not in found and ulps(c, ref) <= ULPS:
                found[name] = c
    return (found["cos"], found["sin"]) if len(found) == 2 else None


def tables_from(cos_g, sin_g):
    """A K["rope_tables"] (model.forward's hook) that looks positions up in the graph's tables."""
    def rope_tables(pos, head_dim, theta, dtype=np.float32):  # [N] -> cos, sin [N, Dh]
        pos = np.asarray(pos)
        cos, sin = cos_g[pos].astype(dtype), sin_g[pos].astype(dtype)  # [N, Dh/2] each
        return np.concatenate([cos, cos], axis=-1), np.concatenate([sin, sin], axis=-1)  # [N, Dh] each
    return rope_tables
