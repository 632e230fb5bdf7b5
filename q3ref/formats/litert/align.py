"""Which graph tensor is which q3ref tap, for graphs made by litert-torch's generative layers.

The LiteRT tensor-name map of q3ref lives here. It leans on the graph's wiring more than on
names: blocks start at each RMSNorm composite named `RMSNorm_pre_atten_norm` (litert-torch's
module path), and inside a block every tap is found from its neighbours:

    input_norm     output of the pre-attention odml.rms_norm composite
    q, k, v        SLICEs of the fused qkv FULLY_CONNECTED (cat[q, k, v]), ordered by offset
    q_norm, k_norm odml.rms_norm composites reading q and k
    q_rope, k_rope the first two inputs of odml.scaled_dot_product_attention ([1, S, H, Dh])
    attn           that composite's output
    o_proj         the FULLY_CONNECTED reading attn (through its RESHAPE)
    attn_residual  the ADD reading o_proj
    post_norm      the odml.rms_norm reading attn_residual
    gate, up       the two FULLY_CONNECTED reading post_norm: gate is the one LOGISTIC reads
                   (litert-torch's w1; up is w3)
    act, down      the input and output of the last FULLY_CONNECTED (w2)
    out            the ADD reading down
    norm           the odml.rms_norm reading the last block's out
    pooled         the first input of the final DIV (L2 normalization), or the GATHER_ND
    embedding      the graph's output
"""

from __future__ import annotations

from ..taps import Aligned
from .graph import Graph, Op


def _only(ops: list[Op], kind=None, composite=None) -> Op | None:
    hits = [op for op in ops if (kind is None or op.kind == kind) and (composite is None or op.composite == composite)]
    return hits[0] if hits else None


def align(g: Graph, cfg) -> tuple[dict[str, Aligned], list[str]]:
    """({tap name: Aligned}, [notes on what could not be aligned])."""
    found: dict[str, Aligned] = {}
    notes: list[str] = []
    cons = g.consumers
    found["embedding"] = Aligned(g.sg.outputs[0], "structure")
    pre_norms = [op for op in g.ops if op.composite == "odml.rms_norm" and "pre_atten_norm" in g.names[op.outputs[0]]]
    if not pre_norms:
        return found, ["no odml.rms_norm composite named pre_atten_norm: not litert-torch's layout, "
                       "so taps are matched numerically"]
    found["embed"] = Aligned(pre_norms[0].inputs[0], "structure")
    last_out = None
    for i, pre in enumerate(pre_norms):
        p = f"layers.{i}."
        put = lambda stage, t: found.__setitem__(p + stage, Aligned(t, "structure"))  # noqa: E731
        try:
            n = pre.outputs[0]
            put("input_norm", n)
            qkv = _only(cons[n], "FULLY_CONNECTED")
            reshape = _only(cons[qkv.outputs[0]], "RESHAPE")
            slices = sorted((op for op in cons[reshape.outputs[0]] if op.kind == "SLICE"),
                            key=lambda op: int(g.constant(op.inputs[1])[2]))
            q, k, v = (s.outputs[0] for s in slices[:3])
            put("q", q), put("k", k), put("v", v)
            put("q_norm", _only(cons[q], composite="odml.rms_norm").outputs[0])
            put("k_norm", _only(cons[k], composite="odml.rms_norm").outputs[0])
            sdpa = next(op for op in g.ops[pre.index:] if op.composite == "odml.scaled_dot_product_attention")
            put("q_rope", sdpa.inputs[0]), put("k_rope", sdpa.inputs[1])
            if sdpa.inputs[2] != v:
                notes.append(f"{p}v: the attention op reads a value tensor other than the qkv slice")
            put("attn", sdpa.outputs[0])
            o_in = _only(cons[sdpa.outputs[0]], "RESHAPE")
            o_proj = _only(cons[o_in.outputs[0]] if o_in else cons[sdpa.outputs[0]], "FULLY_CONNECTED")
            put("o_proj", o_proj.outputs[0])
            res = _only(cons[o_proj.outputs[0]], "ADD")
            put("attn_residual", res.outputs[0])
            post = _only(cons[res.outputs[0]], composite="odml.rms_norm")
            put("post_norm", post.outputs[0])
            fcs = [op for op in cons[post.outputs[0]] if op.kind == "FULLY_CONNECTED"]
            gate = next(op for op in fcs if any(c.kind == "LOGISTIC" for c in cons[op.outputs[0]]))
            up = next(op for op in fcs if op is not gate)
            put("gate", gate.outputs[0]), put("up", up.outputs[0])
            act = _only(cons[up.outputs[0]], "MUL")
            down = _only(cons[act.outputs[0]], "FULLY_CONNECTED")
            put("act", act.outputs[0]), put("down", down.outputs[0])
            out = _only(cons[down.outputs[0]], "ADD")
            put("out", out.outputs[0])
            last_out = out.outputs[0]
        except (AttributeError, StopIteration, ValueError, TypeError, IndexError):
            notes.append(f"{p}*: block {i} does not have the litert-torch structure; aligned up to here")
            last_out = None
    if last_out is not None:
        final = _only(cons[last_out], composite="odml.rms_norm")
        if final is not None:
            found["norm"] = Aligned(final.outputs[0], "structure")
    graph_out = g.sg.outputs[0]
    div = g.producer.get(graph_out)
    if div is not None and div.kind == "DIV":
        found["pooled"] = Aligned(div.inputs[0], "structure")
    elif "norm" in found and (gather := _only(cons[found["norm"].tensor], "GATHER_ND")):
        found["pooled"] = Aligned(gather.outputs[0], "structure")
    return found, notes
