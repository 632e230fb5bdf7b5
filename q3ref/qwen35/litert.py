"""Diff a Qwen3.5 LiteRT export (litert-torch's Qwen3.5 path: a .tflite, or the .litertlm bundle
holding it) against the NumPy reference, state by state.

The graph has a prefill signature per length (`prefill_64`, ...) that returns only the updated
states, and a `decode` signature that returns the logits. Per layer they are:
- GatedDeltaNet: kv_cache_c_{i}, the conv state [1, channels, C-1] (the last C-1 inputs of the
  conv), and kv_cache_r_{i}, the recurrent state [1, Hv, dk, dv];
- gated full attention: kv_cache_k_{i} [1, Hkv, cache, Dh] and kv_cache_v_{i} [1, Hkv, Dh, cache].
The delta rule itself is the custom op `gated_delta_update(q, k, v, beta, g, state) -> (out,
state)` (q l2-normalized and scaled by 1/sqrt(dk), k l2-normalized, [1, heads, T, d]; beta and g
[1, Hv, T]), which the stock interpreter cannot run. q3ref computes it with the op's documented
math, litert-torch's reference (key heads repeated for their value heads, then delta.recurrent
from the given state), and the graph's own kernels compute everything else (formats/litert/
segments.py). The op's inputs and outputs are stages of the diff too: q, k, v, beta, g, core.

As the LiteRT-LM runtime does, the prompt but its last token is prefilled (padded with the pad
token, which the graph masks out), and the last token is decoded at its position: the decode
logits are the reference's last-position logits.

The graph is judged against q3ref's simulation of it (fp32_simulation, int8_simulation): where
the probe finds this CPU's XNNPACK kernels emulated, every stage is the graph's to the bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import Q3RefError
from . import delta
from .config import Qwen35Config
from .model import forward, rope_inv_freq
from .weights import Qwen35Weights

F32 = np.float32
# Allowed max |graph - expected| / max |expected| per stage. fp32: <= 1.7e-6 from the fp32
# reference, 0 from the simulation (63 inputs). int8, against its simulation: 0 at every stage of
# 63 inputs where the XNNPACK probe finds this CPU's kernels emulated, so held as fp32 is. Where
# it does not, each op it does not find falls back to NumPy's and one activation rounding can flip: 1.2e-2 ..
# 1.7e-2 on 2 of 12 inputs, measured before they were emulated (the fp32 reference is 1e-2 ..
# 2e-1 away). The planted k_norm defect leaves 0.9.
TOLERANCE = {"fp32": 1e-4, "int8": 1e-4}
TOLERANCE_NOT_EMULATED = 5e-2
NEG = np.float32(-1e38)  # litert-torch's masked value (create_qwen3_5_attention_mask)
# litert-torch computes g with a softplus of its own, log1p(exp(a + dt_bias clamped at 50)), where
# transformers' F.softplus returns x itself above 20: equal in fp32 up to 50, capped past it.
SOFTPLUS_CLAMP = 50.0


def gated_delta_update(q_t, k_t, v_t, beta_t, g_t, state):
    """The custom op's documented math (litert-torch gated_delta_rule.py), batch 1: [1, H, T, d] in."""
    rep = v_t.shape[1] // q_t.shape[1]
    q, k = (np.repeat(x[0], rep, axis=0).transpose(1, 0, 2) for x in (q_t, k_t))  # [T, Hv, dk]
    out, S = delta.recurrent(q, k, v_t[0].transpose(1, 0, 2), g_t[0].T, beta_t[0].T, state=state[0], scaled=True)
    return out.transpose(1, 0, 2)[None], S[None]  # [1, Hv, T, dv], [1, Hv, dk, dv]


def float_ops(cache, inv_freq=None):
    """The graph's float ops as XNNPACK runs them, for model.forward's sim=, where the probe finds
    this CPU's kernels emulated: the norms' decompositions, SiLU as LOGISTIC then MUL, litert-torch's
    softplus through EXP and LOG, the RoPE tables' COS and SIN, and attention over the K/V cache's
    `cache` columns (its softmax sums the masked ones as exact zeros). Everywhere, the delta rule
    as the diff computes gated_delta_update on the graph's side. inv_freq: the RoPE frequencies
    the graph holds, where they are the config's to within ROPE_ULPS (graph_inv_freq)."""
    from ..formats.litert import xnnpack
    from .model import rope_tables

    def delta_rule(q, k, v, g, beta):
        q = q * F32(q.shape[2] ** -0.5)  # q scaled first (the graph's MUL), then the op's reference math
        return delta.recurrent(q, k, v, g, beta, scaled=True)

    def norm(x, w, eps, plus_one=True):  # [..., n]: the graph holds 1 + w, rounded to fp32, as its weight
        n = x.shape[-1]
        w = (F32(1) + w) if plus_one else w
        return xnnpack.rms_norm(np.asarray(x, F32).reshape(-1, n), w, eps).reshape(x.shape)

    def l2norm(x, eps=1e-6):  # [..., n]
        return xnnpack.l2norm(np.asarray(x, F32).reshape(-1, x.shape[-1]), eps).reshape(x.shape)

    def silu(x):  # LOGISTIC, then MUL
        x = np.asarray(x, F32)
        return x * xnnpack.sigmoid(x)

    def softplus(x):  # litert-torch's: log1p(exp(min(x, 50))), as MINIMUM, EXP, ADD 1, LOG
        return xnnpack.log(xnnpack.exp(np.minimum(np.asarray(x, F32), F32(SOFTPLUS_CLAMP))) + F32(1))

    def attention(q, k, v):  # [H, T, Dh] x3 -> [H, T, Dh]: q scaled first (the graph's MUL)
        T, Dh = q.shape[1:]
        visible = np.tril(np.ones((T, T), bool))
        return np.stack([xnnpack.attend_rows(q[h] * F32(Dh ** -0.5), k[h], v[h], visible, 0, cache)
                         for h in range(q.shape[0])])

    ops = {"norm": norm, "l2norm": l2norm, "silu": silu, "sigmoid": xnnpack.sigmoid, "softplus": softplus,
           "rope_tables": lambda T, cfg: rope_tables(T, cfg, xnnpack.cos, xnnpack.sin, inv_freq), "attention": attention}
    # each where the probe finds this CPU's XNNPACK computing it so (NumPy's elsewhere)
    probed = {"norm": "rms_norm", "silu": "sigmoid"}
    return {**{k: f for k, f in ops.items() if xnnpack.emulates(probed.get(k, k))}, "delta": delta_rule}


def fp32_simulation(calls, cache, inv_freq=None):
    """What litert-torch's fp32 graph computes on XNNPACK, where the probe finds its kernels
    emulated: FULLY_CONNECTED as f32-gemm's FMA chain over the inputs, from the bias; the depthwise
    conv as f32-dwconv's, one FMA per tap in order, from its zero bias; the float ops. Elsewhere
    None: the fp32 reference itself. (calls: unused, as in int8_simulation.)"""
    from ..formats.litert import xnnpack

    if not runtime_note("fp32")["emulated"]:
        return None
    return {"linear": xnnpack.f32_gemm_linear(), "conv": xnnpack.dwconv, **float_ops(cache, inv_freq)}


def int8_simulation(calls, cache, inv_freq=None):
    """What litert-torch's dynamic_wi8_afp32 graph computes, as sim= for model.forward: int8
    weights per channel (the embedding per row); FULLY_CONNECTED through XNNPACK's dynamic int8
    kernel (quant.dynamic_int8_linear); the depthwise conv on the builtin hybrid kernel, its input
    quantized as one tensor per graph call; the float ops (float_ops). calls: the token counts of
    the calls the reference covers in one pass (the prefill's, then 1 per decode step), since that
    scale spans a call."""
    from ..quant import dynamic_int8_linear, hybrid_dwconv, int8_per_channel, int8_rows

    def conv(padded, kernel):  # [T + C - 1, channels], [channels, C] -> [T, channels]
        wq, ws, _ = int8_per_channel(kernel)  # [channels, C] integer-valued, [channels]
        C, out, start = kernel.shape[1], [], 0
        for n in calls:  # each call's history + tokens, quantized as one tensor
            out.append(hybrid_dwconv(padded[start:start + n + C - 1], wq, ws))
            start += n
        return np.concatenate(out)  # [T, channels]

    return {"linear": dynamic_int8_linear("xnnpack"), "rows": int8_rows, "conv": conv, **float_ops(cache, inv_freq)}


# The graph's RoPE frequencies are torch's fp32 1 / theta^(2i/R), made at export; its pow is
# not NumPy's (full-size 0.8B: 5 of 32 values 1 ulp apart, which left k_rope 3e-7 off and flipped
# later roundings). Within this many ulps of the config's they are the same frequencies, and the
# simulation takes the graph's; further, they are a defect, and the diff names them.
ROPE_ULPS = 2


def graph_inv_freq(seg):
    """[R/2] fp32: the constant the graph multiplies positions by before its COS, or None."""
    s, fu = seg.s, seg.fu
    code = [fu.get_builtin_code_from_operator_code(seg.m.operatorCodes[op.opcodeIndex]) for op in seg.ops]
    maker = {o: k for k, op in enumerate(seg.ops) for o in op.outputs}
    for k, op in enumerate(seg.ops):
        if code[k] != s.BuiltinOperator.COS:
            continue
        frontier = [op.inputs[0]]
        while frontier:  # back through CONCATENATION / RESHAPE to the MUL with a constant
            t = frontier.pop()
            j = maker.get(t)
            if j is None:
                continue
            if code[j] == s.BuiltinOperator.MUL:
                const = [i for i in seg.ops[j].inputs if i in seg.const]
                if const:
                    return np.frombuffer(seg.constant(const[0]), F32).ravel().copy()
            elif code[j] in (s.BuiltinOperator.CONCATENATION, s.BuiltinOperator.RESHAPE):
                frontier += [i for i in seg.ops[j].inputs if i >= 0 and i not in seg.const]
    return None


def recipe(seg) -> str:
    """int8 when the graph's FULLY_CONNECTED weights are int8 (litert-torch's dynamic_wi8_afp32)."""
    s = seg.s
    for op in seg.ops:
        if seg.fu.get_builtin_code_from_operator_code(seg.m.operatorCodes[op.opcodeIndex]) == s.BuiltinOperator.FULLY_CONNECTED:
            if seg.sg.tensors[op.inputs[1]].type == s.TensorType.INT8:
                return "int8"
    return "fp32"


def graph_bytes(path: Path) -> tuple[bytes, str]:
    """The TFLite model of a .tflite, or of a .litertlm's (first) TFLiteModel section."""
    from ..formats.litert import litertlm

    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise Q3RefError(f"{path}: cannot read ({e.strerror})") from None
    if litertlm.is_litertlm(head):
        f = litertlm.read(path)
        models = f.tflite_models()
        if not models:
            raise Q3RefError(f"{path}: the bundle holds no TFLite model")
        return f.data(models[0]), f"{path.name} (section {models[0].index}, {models[0].items.get('model_type', '?')})"
    data = path.read_bytes()
    if data[4:8] != b"TFL3":
        raise Q3RefError(f"{path}: neither a .litertlm bundle nor a .tflite graph")
    return data, path.name


def pad_token(seg) -> int:
    """The pad id the prefill graph masks out: the constant its tokens are compared NOT_EQUAL with."""
    s, tokens = seg.s, seg.inputs["tokens"]
    for op in seg.ops:
        code = seg.fu.get_builtin_code_from_operator_code(seg.m.operatorCodes[op.opcodeIndex])
        if code == s.BuiltinOperator.NOT_EQUAL and tokens in op.inputs:
            other = [i for i in op.inputs if i != tokens][0]
            data = seg.constant(other)
            return int(np.frombuffer(data, np.int32 if len(data) == 4 else np.int64)[0])
    return -1  # no padding mask in this graph: prefill must be exactly its length


def mask(positions, cache):
    pos = np.arange(cache)[None, None, None, :]
    return np.where(pos <= np.asarray(positions)[None, None, :, None], np.float32(0), NEG).astype(np.float32)


def diff(graph: Path, checkpoint: Path, ids, tolerance=None):
    from ..formats.litert.segments import Segmented

    data, source = graph_bytes(Path(graph))
    cfg = Qwen35Config.from_json(Path(checkpoint) / "config.json")
    w = Qwen35Weights(checkpoint, cfg)
    ids = np.asarray(ids, np.int64)
    if len(ids) < 2:
        raise Q3RefError("give at least 2 token ids: all but the last are prefilled, the last is decoded")
    bad = ids[(ids < 0) | (ids >= cfg.vocab_size)]
    if len(bad):
        raise Q3RefError(f"token id {bad[0]} is outside the vocabulary (0..{cfg.vocab_size - 1})")
    custom = {"gated_delta_update": gated_delta_update}
    try:
        decode = Segmented(data, "decode", custom)
    except Q3RefError as e:
        raise Q3RefError(f"{source}: {e}") from None
    prefills = sorted(int(k.split("_")[1]) for k in (d.signatureKey.decode() for d in decode.m.signatureDefs)
                      if k.startswith("prefill_"))
    n = len(ids) - 1
    fits = [p for p in prefills if p >= n]
    if not fits:
        raise Q3RefError(f"{n} prompt tokens do not fit the graph's prefill signatures ({prefills})")
    prefill = Segmented(data, f"prefill_{fits[0]}", custom, parsed=decode.m)
    T, pad = fits[0], pad_token(prefill)
    if n < T and pad < 0:
        raise Q3RefError(f"the graph has no pad mask: give exactly {T} + 1 token ids")
    if pad in ids[:n]:
        raise Q3RefError(f"token id {pad} is the graph's pad token: the prefill would mask it out")
    check_config(prefill, cfg, source)
    cache = prefill.sg.tensors[prefill.inputs["mask"]].shape[-1]
    tokens = np.full((1, T), pad, np.int32)
    tokens[0, :n] = ids[:n]
    states = {k: np.zeros(prefill.sg.tensors[i].shape, np.float32)
              for k, i in prefill.inputs.items() if k.startswith("kv_cache_")}
    states_out, calls, _ = prefill.run({"tokens": tokens, "input_pos": np.arange(T, dtype=np.int32),
                                         "mask": mask(np.arange(T), cache), **states})
    out, decode_calls, _ = decode.run({"tokens": ids[None, n:].astype(np.int32), "input_pos": np.array([n], np.int32),
                                       "mask": mask([n], cache), **states_out})

    # The reference: fp32, recurrent form (the graph's); beside it the graph's simulation, which
    # the graph is then judged against (the fp32 distance is reported too): always for an int8
    # graph, and for an fp32 one where this CPU's XNNPACK kernels are emulated.
    quant = recipe(prefill)
    probe = runtime_note(quant)
    emulated = probe["emulated"]
    simulate = quant == "int8" or emulated
    if tolerance is None:
        tolerance = TOLERANCE[quant] if emulated or quant == "fp32" else TOLERANCE_NOT_EMULATED
    theirs, mine = graph_inv_freq(prefill), rope_inv_freq(cfg)
    if theirs is not None and theirs.shape != mine.shape:
        raise Q3RefError(f"{source}: its RoPE rotates {2 * theirs.size} dims per head, the checkpoint's config "
                         f"{2 * mine.size} (partial_rotary_factor)")
    same = theirs is not None and np.abs(theirs.view(np.int32) - mine.view(np.int32)).max() <= ROPE_ULPS
    inv_freq = theirs if same else None  # for the simulation; the fp32 reference keeps the config's
    refs = {}
    for kind, sim in (("fp32", lambda calls, cache, inv_freq: None),) + (
            (("sim", int8_simulation if quant == "int8" else fp32_simulation),) if simulate else ()):
        prompt, full = {}, {}
        forward(w, cfg, ids[:n], prompt, form="recurrent", sim=sim([n], cache, inv_freq))
        forward(w, cfg, ids, full, form="recurrent", sim=sim([n, 1], cache, inv_freq))
        refs[kind] = (prompt, full)
    basis = "sim" if simulate else "fp32"
    rows = []
    if theirs is not None:  # the graph's frequencies against the config's, first: a wrong theta shows here
        rel = float(np.abs(theirs - mine).max() / np.abs(mine).max())
        rows.append({"step": "prefill", "name": "rotary.inv_freq", "layer": None, "stage": "inv_freq", "rel_err": rel,
                     **({"rel_err_fp32": rel} if simulate else {}), "ok": rel <= tolerance})

    def row(step, name, got, pick):
        r = {"step": step, "name": name, "layer": int(name.split(".")[1]) if name.startswith("layers.") else None,
             "stage": name.split(".")[-1]}
        for kind, (prompt, full) in refs.items():
            want = pick(prompt if step == "prefill" else full)
            r["rel_err" if kind == basis else "rel_err_fp32"] = float(np.abs(got - want).max()) / (float(np.abs(want).max()) or 1.0)
        r["ok"] = r["rel_err"] <= tolerance
        rows.append(r)

    linear = [i for i, t in enumerate(cfg.layer_types) if t == "linear_attention"]
    for step, states, step_calls, rows_of in (("prefill", states_out, calls, slice(0, n)),
                                              ("decode", out, decode_calls, slice(n, n + 1))):
        for i, kind in enumerate(cfg.layer_types):
            p = f"layers.{i}."
            if kind == "linear_attention":
                args, (core, _) = step_calls[linear.index(i)][1:]
                # the graph keeps the last C-1 inputs of the conv; q3ref's tap holds C
                row(step, p + "conv_state", states[f"kv_cache_c_{i}"][0], lambda t, p=p: t[p + "conv_state"][:, 1:])
                if step == "prefill":  # the op's inputs and output, [1, heads, T, d] in the graph
                    for name, got in zip(("q", "k", "v"), args[:3]):
                        row(step, p + name, got[0].transpose(1, 0, 2)[:n], lambda t, p=p, name=name: t[p + name])
                    row(step, p + "beta", args[3][0].T[:n], lambda t, p=p: t[p + "beta"])
                    row(step, p + "g", args[4][0].T[:n], lambda t, p=p: t[p + "g"])
                    row(step, p + "core", core[0].transpose(1, 0, 2)[:n], lambda t, p=p: t[p + "core"])
                row(step, p + "recurrent_state", states[f"kv_cache_r_{i}"][0], lambda t, p=p: t[p + "recurrent_state"])
            else:  # the cache rows this step wrote: K [1, Hkv, cache, Dh], V [1, Hkv, Dh, cache]
                row(step, p + "k_rope", states[f"kv_cache_k_{i}"][0].transpose(1, 0, 2)[rows_of],
                    lambda t, p=p: t[p + "k_rope"][rows_of])
                row(step, p + "v", states[f"kv_cache_v_{i}"][0].transpose(2, 0, 1)[rows_of], lambda t, p=p: t[p + "v"][rows_of])
    row("decode", "logits", out["logits"].reshape(-1), lambda t: t["logits"])
    first = next((r for r in rows if not r["ok"]), None)
    return {"graph": str(graph), "source": source, "checkpoint": str(checkpoint), "model": "qwen3.5",
            "precision": quant, "compared_with": compared_with(quant, probe), "runtime_kernels": probe,
            "prefill": f"prefill_{T}", "prompt_tokens": n, "pad_token": pad, "cache": int(cache),
            "tolerance": tolerance, "taps": rows,
            "first_divergence": None if first is None else {k: first[k] for k in ("step", "name", "layer", "stage", "rel_err")},
            "runtime": "ai-edge-litert's interpreter for every op but gated_delta_update, which q3ref computes with "
                       "the op's documented math (litert-torch's reference, recurrent form); the stock interpreter "
                       "does not resolve it"}


# The XNNPACK emulations (formats/litert/xnnpack.PROBED_BY) a Qwen3.5 graph's simulation stands on
FLOAT_OPS = ("rms_norm", "l2norm", "sigmoid", "softplus", "rope_tables", "attention")
PRODUCTS = {"fp32": ("f32_gemm_linear", "dwconv"), "int8": ("dynamic_int8_linear", "hybrid_dwconv")}


def runtime_note(quant) -> dict:
    """The XNNPACK probe's verdict held to the ops this graph runs."""
    from ..formats.litert import probe, xnnpack

    return probe.narrowed(probe.xnnpack_variant(), xnnpack.probe_ops(*FLOAT_OPS, *PRODUCTS[quant]))


def compared_with(quant, probe) -> str:
    differ = ", ".join(op for op, ok in probe["ops"].items() if not ok)
    if quant == "int8":
        return ("q3ref's simulation of int8 (dynamic_wi8_afp32" + (", XNNPACK's float kernels emulated: probed)"
                if probe["emulated"] else f"; this CPU's XNNPACK {differ} not emulated)"))
    return ("q3ref's simulation of the fp32 graph (XNNPACK's kernels emulated: probed)" if probe["emulated"]
            else f"q3ref fp32 reference (recurrent form; this CPU's XNNPACK {differ} not emulated)")


def check_config(seg, cfg, source):
    """The graph's state shapes against config.json: another model or config is one line."""
    expect = {}
    for i, t in enumerate(cfg.layer_types):
        if t == "linear_attention":
            expect[f"kv_cache_r_{i}"] = (1, cfg.linear_num_value_heads, cfg.linear_key_head_dim, cfg.linear_value_head_dim)
        else:
            expect[f"kv_cache_k_{i}"] = (1, cfg.num_key_value_heads, None, cfg.head_dim)
    for name, shape in expect.items():
        if name not in seg.inputs:
            raise Q3RefError(f"{source}: no state {name}: not an export of this checkpoint's config "
                             f"({cfg.num_hidden_layers} layers: {', '.join(cfg.layer_types)})")
        got = tuple(int(d) for d in seg.sg.tensors[seg.inputs[name]].shape)
        if any(want not in (None, g) for want, g in zip(shape, got)) or len(got) != len(shape):
            raise Q3RefError(f"{source}: state {name} is {list(got)}, the checkpoint's config makes "
                             f"{['cache' if d is None else d for d in shape]}")
    extra = sorted(k for k in seg.inputs if k.startswith("kv_cache_") and int(k.rsplit("_", 1)[1]) >= cfg.num_hidden_layers)
    if extra:
        raise Q3RefError(f"{source}: state {extra[0]} is past the checkpoint's {cfg.num_hidden_layers} layers")


def is_lm_graph(path: Path) -> bool:
    """A .litertlm bundle, or a .tflite with a `decode` signature (a decoder LM, not an embedding graph)."""
    from ..formats.litert import litertlm

    try:
        with open(path, "rb") as f:
            head = f.read(8)
        if litertlm.is_litertlm(head):
            return True
        if head[4:8] != b"TFL3":
            return False
        from ai_edge_litert.interpreter import Interpreter

        return "decode" in Interpreter(model_path=str(path)).get_signature_list()
    except (OSError, ValueError, RuntimeError):
        return False


def describe_lm(path: Path) -> dict:
    """inspect's view of a bundle or LM graph: sections, signatures, states, custom ops."""
    from ..formats.litert import litertlm
    from ..formats.litert.segments import custom_codes

    lines, d = [], {"path": str(path)}
    with open(path, "rb") as f:
        bundle = litertlm.is_litertlm(f.read(8))
    if bundle:
        f = litertlm.read(path)
        d["litertlm"] = {"version": ".".join(map(str, f.version)), "system": f.system,
                         "sections": [{"index": s.index, "type": s.kind, "bytes": s.size, **s.items} for s in f.sections]}
        lines.append(f"{path.name}: LiteRT-LM bundle, version {d['litertlm']['version']}, {len(f.sections)} sections")
        for s in f.sections:
            lines.append(f"  section {s.index}: {s.kind:<22} {s.size:>12,} bytes  {s.items or ''}".rstrip())
        tok = f.tokenizer_json()
        if tok is not None:
            d["tokenizer_json_bytes"] = len(tok)
            lines.append(f"  tokenizer.json: {len(tok):,} bytes inflated")
    data, source = graph_bytes(path)
    from ai_edge_litert import __version__ as litert_version
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_content=data).get_signature_list()
    d["signatures"] = sigs
    lines.append(f"{source}: signatures {', '.join(sigs)}")
    states = sorted((k for k in sigs.get("decode", {}).get("inputs", []) if k.startswith("kv_cache_")),
                    key=lambda k: (k.rsplit("_", 1)[0], int(k.rsplit("_", 1)[1])))  # kv_cache_c_2 before c_10
    lines.append(f"  states: {', '.join(states)}")
    codes = custom_codes(data)
    d["custom_ops"] = codes
    if codes:
        d["unresolved"] = {c: f"not resolved by ai-edge-litert {litert_version}'s interpreter" for c in codes}
        lines.append(f"  custom ops: {', '.join(codes)}: the stock interpreter (ai-edge-litert {litert_version}) "
                     "does not resolve them, so the graph does not run as it is here. "
                     + ("q3ref's diff runs every other op in the interpreter and computes gated_delta_update "
                        "with the op's documented math." if codes == ["gated_delta_update"] else ""))
    d["lines"] = lines
    return d
