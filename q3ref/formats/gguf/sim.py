"""What llama.cpp's CPU backend computes for a GGUF, as model.forward kernels.

Weights: each tensor quantized by quants.py to the file's own type for it (a Q4_K_M file mixes
Q4_K and Q6_K), then dequantized. Activations: before each matmul the activation rows are
converted to the weight type's vec_dot_type (ggml-cpu's type_traits), and that rounding is most
of what the runtime adds:
    F16 -> F16, BF16 -> BF16            round to nearest even
    Q8_0, Q4_0 -> Q8_0                  per 32 values: q = rint(x * 127/amax), d = fp16(amax/127)
                                        (the AVX path; the reference path's roundf differs on ties)
    K-quants -> Q8_K                    per 256 values: iscale = -127/max (max: the signed value of
                                        largest |x|), q = min(127, rint(iscale * x)), d = 1/iscale
Attention with flash attention off (the tapped run): q converted to fp16 for K (the F16 cache),
scores * scale in fp32, softmax in fp32 with a float64 sum, the probabilities converted to fp16 for
V. With it on (llama.cpp's default, simulate(flash=True)): below 64 query tokens an online softmax
key after key, q in fp16 and V accumulated in fp16; from 64, tiles of 64 keys with q, the
probabilities and the accumulator in fp32 (ggml_cpu.flash_attn). RMSNorm: sum
of squares in float64, scale = 1/sqrtf(mean + eps) in fp32, x * scale, then * w (two roundings).
RoPE: the angle multiplied by theta_scale = base^(-2/Dh) pair after pair, in fp32.

Two sets of kernels: the plain ones here (block products as the dequantized activation times the
dequantized weight, summed by BLAS; np.exp), which round where the runtime rounds and sum in
another order; and ggml_cpu.py's, which sum in ggml-cpu's own order, to the bit, for the build
they describe (EMULATED_BUILD; simulate(exact=True)). Which one applies is decided from the
build that ran (Export.runtime_note).
"""

from __future__ import annotations

import numpy as np

from ...quant import bf16_round, to_fp16
from .file import HEAD_ROWS, RANK_HEAD
from .quants import QK_K, QUANTIZERS, first_max_abs

F32 = np.float32
VEC_DOT = {"F32": "F32", "F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0", "Q4_0": "Q8_0",
           "Q4_K": "Q8_K", "Q5_K": "Q8_K", "Q6_K": "Q8_K"}


def dequantize(raw, ggml_type, shape):  # stored bytes -> fp32 values
    import gguf

    return gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[ggml_type]).astype(F32).reshape(shape)


def dequantized(w, ggml_type):  # fp32 [out, in] -> fp32 [out, in] as the file would hold it
    return np.asarray(w, F32) if ggml_type == "F32" else dequantize(QUANTIZERS[ggml_type](w), ggml_type, np.shape(w))


# ------------------------------------------------------------------ activations
def q8_0_parts(raw, shape):  # stored Q8_0 bytes -> q int8 [out, in], d [out, in/32] (fp16 values)
    blocks = raw.reshape(-1, 34)
    d = np.ascontiguousarray(blocks[:, :2]).view(np.float16).astype(F32).reshape(shape[0], -1)
    q = blocks[:, 2:].view(np.int8).reshape(shape)  # int8: a quarter of fp32's memory at full size
    return q, d


def act_q8_0_parts(x):  # [N, K] -> integer-valued q [N, K], d [N, K/32]: quantize_row_q8_0 (AVX)
    b = np.asarray(x, F32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    inv = np.where(amax != 0, F32(127) / np.where(amax != 0, amax, F32(1)), F32(0))
    q = np.rint(b * inv[:, None])
    return q.reshape(np.shape(x)), to_fp16(amax / F32(127)).reshape(np.shape(x)[0], -1)


def act_q8_K_parts(x):  # [N, K] -> integer-valued q [N, K], d [N, K/256]: quantize_row_q8_K
    b = np.asarray(x, F32).reshape(-1, QK_K)
    amax, signed = first_max_abs(b)
    iscale = np.where(amax != 0, F32(-127) / np.where(amax != 0, signed, F32(1)), F32(0))
    q = np.minimum(127, np.rint(iscale[:, None] * b))
    d = np.where(amax != 0, F32(1) / np.where(iscale != 0, iscale, F32(1)), F32(0))
    return q.reshape(np.shape(x)), d.reshape(np.shape(x)[0], -1)


def act_q8_K_x4_parts(x):
    """The repack path's activations: rows in groups of four by ggml_quantize_mat_q8_K_4x8 (AVX2),
    the rest by quantize_row_q8_K. The 4x8 kernel takes iscale = -127/amax when +amax occurs in the
    block and +127/amax otherwise; the reference takes the sign of the first largest |x|: they
    differ only when both +amax and -amax occur and -amax comes first."""
    q, d = act_q8_K_parts(x)
    n4 = x.shape[0] - x.shape[0] % 4
    if n4 == 0:
        return q, d
    b = np.asarray(x[:n4], F32).reshape(-1, QK_K)
    amax = np.abs(b).max(axis=1)
    positive = (b == amax[:, None]).any(axis=1)
    iscale = np.where(amax != 0, np.where(positive, F32(-127), F32(127)) / np.where(amax != 0, amax, F32(1)), F32(0))
    q[:n4] = np.rint(iscale[:, None] * b).reshape(n4, -1)
    d[:n4] = np.where(amax != 0, F32(1) / np.where(iscale != 0, iscale, F32(1)), F32(0)).reshape(n4, -1)
    return q, d


def act_q8_0(x):  # [N, K] -> [N, K] fp32: the Q8_0 rows, dequantized
    q, d = act_q8_0_parts(x)
    return (q * np.repeat(d, 32, axis=1)).astype(F32)


def act_q8_k(x):  # [N, K] -> [N, K] fp32: the Q8_K rows, dequantized
    q, d = act_q8_K_parts(x)
    return (q * np.repeat(d, QK_K, axis=1)).astype(F32)


ACTIVATION = {"F32": lambda x: np.asarray(x, F32), "F16": to_fp16, "BF16": lambda x: bf16_round(x)[0],
              "Q8_0": act_q8_0, "Q8_K": act_q8_k}


# ------------------------------------------------------------------ float ops
def rms_norm_ggml(x, w, eps):  # [N, C] -> [N, C]
    x = np.asarray(x, F32)
    sq = (x * x).astype(np.float64)  # each square rounded in fp32, then summed in double
    mean = (sq.sum(axis=1) / x.shape[1]).astype(F32)
    scale = F32(1) / np.sqrt(mean + F32(eps))
    return (x * scale[:, None]) * np.asarray(w, F32)  # RMS_NORM, then the MUL by the weight


def rope_tables_ggml(pos, head_dim, theta, dtype=np.float32):  # [N] -> cos, sin [N, Dh]
    theta_scale = F32(np.power(F32(theta), F32(-2.0) / F32(head_dim), dtype=F32))  # powf
    angles = np.empty((len(pos), head_dim // 2), F32)
    a = np.asarray(pos, F32)
    for i in range(head_dim // 2):
        angles[:, i] = a
        a = a * theta_scale
    from .ggml_cpu import cos_sin

    cos, sin = cos_sin(angles)  # the C library's cosf, sinf
    return np.concatenate([cos, cos], axis=1).astype(dtype), np.concatenate([sin, sin], axis=1).astype(dtype)


def attention_ggml(q, k, v, mask):  # [B, T, H, Dh], [B, T, Hkv, Dh] x2, [B, T] -> [B, T, H, Dh]
    B, T, H, Dh = q.shape
    rep = H // k.shape[2]
    out = np.zeros_like(q)
    causal = np.tril(np.ones((T, T), dtype=bool))
    scale = F32(1.0 / np.sqrt(F32(Dh)))  # llama.cpp: 1.0f/sqrtf(float(n_embd_head))
    for b in range(B):
        visible = causal & mask[b][None, :] & mask[b][:, None]  # [T, T]
        q16 = to_fp16(q[b]).transpose(1, 0, 2)  # [H, T, Dh]: q converted for the F16 cache's dot
        k16 = np.repeat(to_fp16(k[b]), rep, axis=1).transpose(1, 2, 0)  # [H, Dh, T]
        v16 = np.repeat(to_fp16(v[b]), rep, axis=1).transpose(1, 0, 2)  # [H, T, Dh]
        s = (q16 @ k16) * scale  # [H, T, T]
        s = np.where(visible, s, -np.inf)
        mx = s.max(axis=-1, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, 0)
        e = np.exp(s - mx)  # [H, T, T]
        total = e.astype(np.float64).sum(axis=-1, keepdims=True)
        p = e * (1.0 / np.where(total > 0, total, 1)).astype(F32)  # ggml_vec_scale_f32(1/sum)
        out[b] = (to_fp16(p) @ v16).transpose(1, 0, 2)  # probabilities converted for V's dot
    return out


def per_head(q, k, v, mask):  # [T, H, Dh], [T, Hkv, Dh] x2, [T] -> [H, T, Dh] fp32, [H, T, Dh] x2 fp16 values, [T, T]
    rep = q.shape[1] // k.shape[1]
    T = q.shape[0]
    visible = np.tril(np.ones((T, T), dtype=bool)) & mask[None, :] & mask[:, None]  # [T, T]
    return (np.asarray(q, F32).transpose(1, 0, 2), np.repeat(to_fp16(k), rep, axis=1).transpose(1, 0, 2),
            np.repeat(to_fp16(v), rep, axis=1).transpose(1, 0, 2), visible)


def attention_ggml_flash(q, k, v, mask):  # [B, T, H, Dh], [B, T, Hkv, Dh] x2, [B, T] -> [B, T, H, Dh]
    """llama.cpp's default attention (flash attention on), plainly: the scores from q rounded to fp16
    below 64 tokens (one_chunk's K dot) and from fp32 q at 64 or more (tiled), softmax by np.exp,
    the V product in fp32 (one_chunk's fp16 accumulator is ggml_cpu.flash_attn's alone)."""
    from .ggml_cpu import FA_TILE_Q

    out = np.zeros_like(q)
    scale = F32(1.0 / np.sqrt(F32(q.shape[-1])))
    for b in range(q.shape[0]):
        qh, kh, vh, visible = per_head(q[b], k[b], v[b], mask[b])
        if qh.shape[1] < FA_TILE_Q:
            qh = to_fp16(qh)
        s = np.where(visible, (qh @ kh.transpose(0, 2, 1)) * scale, -np.inf)  # [H, T, T]
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        out[b] = ((e / e.sum(axis=-1, keepdims=True)) @ vh).transpose(1, 0, 2)
    return out


# ------------------------------------------------------------------ the simulation
class SimulatedWeights:
    """The checkpoint's tensors as the GGUF holds them (quantized by quants.py to the file's type
    for each, dequantized); the type of each handed-out array is kept for the linear kernel."""

    def __init__(self, weights, types: dict):
        self.inner, self.types = weights, types
        self.dtype, self.resident = weights.dtype, weights.resident
        self.stored = {}  # id(array handed out) -> (ggml type, stored bytes): what the kernels read
        self._held = {}

    def __getitem__(self, name):
        t = self.types.get(name, "F32")
        if t == "F32":
            return self.inner[name]
        if name not in self._held:
            w = self.inner[name]
            raw = QUANTIZERS[t](w)
            arr = dequantize(raw, t, w.shape)
            self._held[name] = arr
            self.stored[id(arr)] = (t, raw)
        return self._held[name]

    def kind(self, w):
        return self.stored.get(id(w), ("F32", None))[0]

    def embed_rows(self, ids):  # rows quantize independently: only the looked-up ones are
        return dequantized(self.inner.embed_rows(ids), self.types["embed_tokens.weight"]).astype(self.dtype)

    def head_rows(self, ids):  # a reranker's rank head: the LM head's rows, as the file holds them
        key = (HEAD_ROWS, tuple(ids))
        if key not in self._held:
            w, t = self.inner.head_rows(ids), self.types.get(HEAD_ROWS, "F32")
            if t == "F32":
                self._held[key] = w
            else:
                raw = QUANTIZERS[t](w)
                self._held[key] = dequantize(raw, t, w.shape)
                self.stored[id(self._held[key])] = (t, raw)
        return self._held[key]


def attention_ggml_exact(q, k, v, mask):  # [B, T, H, Dh], [B, T, Hkv, Dh] x2, [B, T] -> [B, T, H, Dh]
    """attention_ggml with ggml-cpu's own kernels (ggml_cpu.py): the products by tinyBLAS F16,
    the softmax with ggml_v_expf and its sums; the key axis padded to 16 with masked slots."""
    from . import ggml_cpu

    B, T, H, Dh = q.shape
    rep = H // k.shape[2]
    Kp = -(-T // 16) * 16  # the KV cache's length in 16-lane groups; empty slots are masked
    out = np.zeros_like(q)
    causal = np.tril(np.ones((T, T), dtype=bool))
    scale = F32(1.0 / np.sqrt(F32(Dh)))
    product = ggml_cpu.matmul_f16_numba if T >= 2 else ggml_cpu.matmul_f16_vec_dot  # as for the projections
    for b in range(B):
        visible = np.zeros((T, Kp), bool)
        visible[:, :T] = causal & mask[b][None, :] & mask[b][:, None]
        for h in range(H):
            g = h // rep
            q16, k16 = to_fp16(q[b, :, h]), to_fp16(k[b, :, g])  # [T, Dh] each
            s = product(q16, k16) * scale  # [T, T]
            s = np.where(visible, np.pad(s, ((0, 0), (0, Kp - T))), -np.inf).astype(F32)
            p = to_fp16(ggml_cpu.softmax(s))  # [T, Kp]
            vt = np.pad(to_fp16(v[b, :, g]).T, ((0, 0), (0, Kp - T)))  # [Dh, Kp]
            out[b, :, h] = product(p, vt)
    return out


def attention_ggml_flash_exact(q, k, v, mask):  # [B, T, H, Dh], [B, T, Hkv, Dh] x2, [B, T] -> [B, T, H, Dh]
    """attention_ggml_flash with ggml-cpu's own kernels: ggml_cpu.flash_attn (one_chunk below 64
    tokens, tiled from 64)."""
    from . import ggml_cpu

    out = np.zeros_like(q)
    scale = F32(1.0 / np.sqrt(F32(q.shape[-1])))
    for b in range(q.shape[0]):
        out[b] = ggml_cpu.flash_attn(*per_head(q[b], k[b], v[b], mask[b]), scale).transpose(1, 0, 2)
    return out


GGUF_TYPES = ("F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K")


def types_for(quant, cfg, reranker=False) -> dict:
    """--quant for --runtime llama.cpp: a ggml type for every matrix (norms stay F32, as
    convert_hf_to_gguf writes them; a reranker's rank head too, HEAD_ROWS), or the per-tensor
    types of a .gguf file: a conversion of this checkpoint (its shapes), with a rank head for a
    reranker's."""
    from ...errors import Q3RefError
    from ...weights import expected_shapes

    shapes = expected_shapes(cfg)
    if str(quant).endswith(".gguf"):
        from .file import GGUFFile

        f = GGUFFile(quant)
        missing = [n for n in shapes if n not in f.names]
        if missing:
            raise Q3RefError(f"{quant}: no tensor for {missing[0]}; the file is another model's conversion")
        other = next((n for n in shapes if f.shape_of(n) != tuple(shapes[n])), None)
        if other:
            raise Q3RefError(f"{quant}: {other} is {list(f.shape_of(other))} in the file and {list(shapes[other])} "
                             "in this checkpoint; the file is another model's conversion")
        head = f.rank_head()  # a reranker's cls.output: the LM head's yes and no rows
        if reranker and head is None:
            raise Q3RefError(f"{quant} has no rank head ({RANK_HEAD}): it is not a reranker's conversion, and "
                             "its types say nothing of the head this checkpoint scores with")
        return {n: f.type_of(n) for n in shapes} | ({HEAD_ROWS: head.tensor_type.name} if head is not None else {})
    if quant not in GGUF_TYPES:
        raise Q3RefError(f"--quant with --runtime llama.cpp takes one of {', '.join(GGUF_TYPES)} or a .gguf file, "
                         f"not {quant!r}")
    block = 256 if quant.endswith("_K") else 32 if quant.startswith("Q") else 1
    narrow = [n for n, s in shapes.items() if len(s) == 2 and s[1] % block]
    if narrow:
        raise Q3RefError(f"--quant {quant}: {narrow[0]} has rows of {shapes[narrow[0]][1]} values, "
                         f"not a multiple of {block} (llama-quantize would fall back to another type)")
    return {n: quant if len(s) == 2 else "F32" for n, s in shapes.items()} | {HEAD_ROWS: quant}  # (a reranker's head)


# The build ggml_cpu.py emulates: these features on in llama_print_system_info's line.
EMULATED_BUILD = ("AVX2", "FMA", "F16C", "AVX512", "AVX512_VNNI", "LLAMAFILE", "REPACK")


def exact_type(t) -> bool:
    """Whether ggml_cpu.py has the matmuls llama.cpp takes for weights of type t, at any number
    of tokens (vec_dot, tinyBLAS, tiled or repacked: Q4_0 and Q4_K are repacked whenever their
    rows come in eights, every Qwen3 projection; a reranker's 2-row rank head is not). BF16's
    needs an AVX512_BF16 build (TYPE_NEEDS)."""
    return t in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K")


TYPE_NEEDS = {"BF16": "AVX512_BF16"}  # a type's emulated kernel: the build feature it is compiled with


def build_features(info: str) -> dict:
    """"CPU : AVX2 = 1 | FMA = 1 | ..." -> {feature: on}"""
    out = {}
    for part in info.split("|"):
        if "=" in part:
            name, _, value = part.rpartition("=")
            out[name.split(":")[-1].strip()] = value.strip() == "1"
    return out


EMULATED_OFF = ("AMX_INT8",)  # ggml's AMX kernels would take the quantized matmuls instead


def emulated(info: str, types) -> dict:
    """Whether ggml_cpu.py computes what this build computes, feature by feature and type by type."""
    features = build_features(info)
    ops = {f: features.get(f, False) for f in EMULATED_BUILD}
    ops.update({f"no {f}": not features.get(f, False) for f in EMULATED_OFF})
    ops.update({f"{t} matmul": exact_type(t) and (t not in TYPE_NEEDS or features.get(TYPE_NEEDS[t], False))
                for t in sorted(set(types))})
    return ops


def with_flash_attention(simulated):
    """(weights, kernels) of simulate() -> the same weights (quantized once) with ggml's flash
    attention, llama.cpp's default, in place of the attention without it."""
    weights, K = simulated
    return weights, dict(K, attention={attention_ggml_exact: attention_ggml_flash_exact,
                                       attention_ggml: attention_ggml_flash}[K["attention"]])


def simulate(weights, kernels, types, exact=True, flash=False):
    """(weights, kernel dict) for model.forward that compute as llama.cpp's CPU backend does on
    a GGUF whose tensors have `types` {checkpoint name: ggml type}. exact: ggml-cpu's own kernels
    (ggml_cpu.py, an AVX-512 build); else the plain twins here (BLAS sums, np.exp), which round
    where the runtime rounds but sum in another order. flash: flash attention on, llama.cpp's
    default (the tapped run turns it off, so that each attention product is a node)."""
    from ...kernels import KERNELS, rope_numpy

    from . import ggml_cpu

    sim = SimulatedWeights(weights, types)
    if not exact:
        def plain(x, w):  # [N, in], [out, in] -> [N, out]
            return ACTIVATION[VEC_DOT[sim.kind(w)]](x) @ w.T
        K = dict(KERNELS[kernels], linear=plain, rms_norm=rms_norm_ggml, attention=attention_ggml,
                 rope=rope_numpy, rope_tables=rope_tables_ggml)
        return with_flash_attention((sim, K)) if flash else (sim, K)
    parts = {}
    jitted = kernels == "numba"  # ggml's sums either way: Numba's loops, or their NumPy twins
    matmul_f16 = ggml_cpu.matmul_f16_numba if jitted else ggml_cpu.matmul_f16
    matmul_q8_0 = ggml_cpu.matmul_q8_0_numba if jitted else ggml_cpu.matmul_q8_0
    q45_K_parts = ggml_cpu.q45_K_parts_numba if jitted else ggml_cpu.q45_K_parts
    matmul_q4_K_repack = ggml_cpu.matmul_q4_K_repack_numba if jitted else ggml_cpu.matmul_q4_K_repack

    def unpacked(w, unpack):  # a weight's stored bytes, unpacked once
        if id(w) not in parts:
            parts[id(w)] = unpack(sim.stored[id(w)][1], w.shape)
        return parts[id(w)]

    def linear(x, w):  # [N, in], [out, in] -> [N, out]
        t = sim.kind(w)
        if t == "F16":  # tinyBLAS for two rows or more, ggml's vec_dot for one
            return (matmul_f16 if x.shape[0] >= 2 else ggml_cpu.matmul_f16_vec_dot)(to_fp16(x), w)
        if t == "BF16":  # the same split (an AVX512_BF16 build: emulated() says so)
            return (ggml_cpu.matmul_bf16 if x.shape[0] >= 2 else ggml_cpu.matmul_bf16_vec_dot)(bf16_round(x)[0], w)
        if t == "Q8_0":
            return matmul_q8_0(*act_q8_0_parts(x), *unpacked(w, q8_0_parts))
        if t == "Q4_0":  # repacked when its rows come in eights (every Qwen3 projection)
            kernel = ggml_cpu.matmul_q4_0_repack if w.shape[0] % 8 == 0 else matmul_q8_0
            return kernel(*act_q8_0_parts(x), *unpacked(w, ggml_cpu.q4_0_parts))
        if t == "Q6_K":
            L, sc, wd = unpacked(w, ggml_cpu.q6_K_parts)
            if x.shape[0] >= 8:  # ggml-cpu's tiled K-quant matmul; fewer rows go to vec_dot
                return ggml_cpu.matmul_tiled(*act_q8_K_parts(x), np.repeat(sc, 16, axis=1) * (L - 32).astype(np.int16), wd)
            return ggml_cpu.matmul_q6_K(*act_q8_K_parts(x), L, sc, wd)
        if t == "Q4_K" and w.shape[0] % 8 == 0:  # repacked 8 columns at a time (CPU_REPACK buffer)
            scaled, mins, wd, wdmin = unpacked(w, lambda raw, shape: q45_K_parts(raw, shape, 4))
            return matmul_q4_K_repack(*act_q8_K_x4_parts(x), scaled, mins, wd, wdmin)
        if t in ("Q4_K", "Q5_K") and x.shape[0] >= 8:
            bits = int(t[1])
            scaled, mins, wd, wdmin = unpacked(w, lambda raw, shape: q45_K_parts(raw, shape, bits))
            return ggml_cpu.matmul_tiled(*act_q8_K_parts(x), scaled, wd, mins, wdmin)
        if t in ("Q4_K", "Q5_K"):  # fewer than 8 tokens (Q4_K: rows not in eights, a rank head): vec_dot
            bits = int(t[1])
            parts = unpacked(w, lambda raw, shape: q45_K_parts(raw, shape, bits))
            return (ggml_cpu.matmul_q4_K if bits == 4 else ggml_cpu.matmul_q5_K)(*act_q8_K_parts(x), *parts)
        act = ACTIVATION[VEC_DOT[t]]
        return act(x) @ w.T

    K = dict(KERNELS[kernels], linear=linear, rms_norm=rms_norm_ggml, attention=attention_ggml_exact,
             rope=ggml_cpu.rope, rope_tables=rope_tables_ggml, silu_mul=ggml_cpu.silu_mul)
    return with_flash_attention((sim, K)) if flash else (sim, K)
