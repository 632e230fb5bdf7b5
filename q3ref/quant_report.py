"""quant-report: where a quantization recipe's error comes from, layer by layer.

Each quantized matmul is run on the fp32 reference's own input (its tap), three ways:
    y_ref  = x @ W.T                      fp32
    y_w    = x @ dequant(quant(W)).T      weight rounding only
    y_sim  = the recipe's product          weight and run-time activation rounding
so the error it adds splits into weight rounding |y_w - y_ref| and activation rounding
|y_sim - y_w| (relative L2 to |y_ref|), apart from the error it inherits. Beside them: the
input's crest factor (max|x| / rms(x) of the worst row: what per-row activation scales lose to)
and the weight's scale spread (largest per-channel or per-block scale over the median), and the
error the whole simulated chain has reached at each layer's output.
"""

from __future__ import annotations

import numpy as np

from . import model as M
from .quant import dequantize_blockwise, fp16_round, int4_blockwise, int8_per_channel, simulation

# (tap of the product, tap of its input, checkpoint name under layers.{i}.)
MATMULS = [("q", "input_norm", "self_attn.q_proj.weight"), ("k", "input_norm", "self_attn.k_proj.weight"),
           ("v", "input_norm", "self_attn.v_proj.weight"), ("o_proj", "attn", "self_attn.o_proj.weight"),
           ("gate", "post_norm", "mlp.gate_proj.weight"), ("up", "post_norm", "mlp.up_proj.weight"),
           ("down", "act", "mlp.down_proj.weight")]


def weight_rounding(quant):
    """W -> (the weight the recipe multiplies with, its scales or None)."""
    if quant in ("int8", "int8-weight-only"):
        def int8(w):
            q, s, _ = int8_per_channel(w)
            return q * s[:, None], s
        return int8
    if quant.startswith("int4-block"):
        block = int(quant.removeprefix("int4-block"))

        def int4(w):
            q, s, _ = int4_blockwise(w, block)
            return dequantize_blockwise(q, s), s
        return int4
    return lambda w: (fp16_round(w)[0], None)  # fp16, fp16-activations


def rel(a, b):  # |a - b| / |b|, relative L2
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def crest(x):  # [N, K] -> max over rows of max|x_row| / rms(x_row)
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=1))
    return float(np.max(np.abs(x).max(axis=1) / np.maximum(rms, 1e-30)))


def scale_spread(scales):  # -> (largest scale / median scale, index of the largest)
    if scales is None:
        return None, None
    s = np.asarray(scales, np.float64).reshape(scales.shape[0], -1).max(axis=1)  # per output channel
    return float(s.max() / max(np.median(s), 1e-30)), int(np.argmax(s))


def quant_report(model, ids, quant, runtime="xnnpack", progress=None) -> dict:
    """The error budget of `quant` for one sequence of ids, as a plain dict."""
    cfg, W = model.cfg, model.weights
    ids = model.check_ids(ids)
    ref = model.trace(ids)  # fp32 taps, [T, ...] each
    sim_w, K = simulation(W, model.kernels, quant, runtime)
    sim = {}
    with np.errstate(over="ignore", invalid="ignore"):  # fp16 recipes may overflow: reported, not raised
        M.embed(sim_w, cfg, ids[None, :], np.ones((1, len(ids)), bool), None, K, sim)
    linear, rounded = K["linear"], weight_rounding(quant)
    rows, layers = [], []
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        for stage, src, name in MATMULS:
            x = ref[p + src].reshape(len(ids), -1).astype(np.float32)  # [T, in]
            w = W[p + name]  # [out, in]
            w_q, scales = rounded(w)
            y_ref, y_w = x @ w.T, x @ np.asarray(w_q, np.float32).T  # [T, out] each
            with np.errstate(over="ignore", invalid="ignore"):
                if "round" in K:  # fp16 activations: the input and the output rounded to fp16
                    y_sim = K["round"](linear(K["round"](x), w))  # [T, out]
                else:
                    y_sim = linear(x, w)  # [T, out]
            spread, channel = scale_spread(scales)
            rows.append({"layer": i, "stage": stage, "weight": p + name, "weight_error": rel(y_w, y_ref),
                         "activation_error": rel(y_sim, y_w), "total_error": rel(y_sim, y_ref),
                         "input_crest": crest(x), "scale_spread": spread, "scale_outlier_channel": channel})
        mine = rows[-len(MATMULS):]
        worst = max(mine, key=lambda r: r["total_error"])
        out = sim[p + "out"][0]
        layers.append({"layer": i, "weight_error": max(r["weight_error"] for r in mine),
                       "activation_error": max(r["activation_error"] for r in mine), "worst_stage": worst["stage"],
                       "global_error": rel(out, ref[p + "out"]) if np.isfinite(out).all() else float("inf"),
                       "max_scale_spread": max((r["scale_spread"] or 0) for r in mine)})
        if progress:
            progress(i + 1)
    emb = rel(sim["embed"][0], ref["embed"])
    emb_out = sim["embedding"][0]
    cos = float(emb_out @ ref["embedding"]) if np.isfinite(emb_out).all() else float("nan")
    return {"weights": str(model.path), "quant": quant, "runtime": runtime, "tokens": len(ids),
            "embed_error": emb, "output_cosine": cos, "matmuls": rows, "layers": layers}


def print_report(r, console):
    from rich.table import Table

    t = Table(title=f"quant-report: {r['quant']} ({r['runtime']} runtime), {r['tokens']} tokens, {r['weights']}")
    for col in ("layer", "weight rounding", "activation rounding", "worst matmul", "chain error at out",
                "max scale spread"):
        t.add_column(col, justify="right" if col != "worst matmul" else "left")
    for row in r["layers"]:
        t.add_row(str(row["layer"]), f"{row['weight_error']:.2e}", f"{row['activation_error']:.2e}", row["worst_stage"],
                  f"{row['global_error']:.2e}", f"{row['max_scale_spread']:.1f}x" if row["max_scale_spread"] else "-")
    console.print(t)
    m = r["matmuls"]
    w_top = max(m, key=lambda x: x["weight_error"])
    a_top = max(m, key=lambda x: x["activation_error"])
    c_top = max(m, key=lambda x: x["input_crest"])
    console.print(f"embedding table rounding: {r['embed_error']:.2e} (rel L2 of the looked-up rows)")
    console.print(f"largest weight-rounding error: {w_top['weight']} ({w_top['weight_error']:.2e})")
    console.print(f"largest activation-rounding error: layers.{a_top['layer']}.{a_top['stage']} "
                  f"({a_top['activation_error']:.2e}); its input's crest factor {a_top['input_crest']:.1f}")
    why = " (per-row int8 activation scales spend their range on it)" if r["quant"] in ("int8",) or \
        r["quant"].startswith("int4") else ""
    console.print(f"most outlying input: layers.{c_top['layer']}.{c_top['stage']}, max|x| = "
                  f"{c_top['input_crest']:.1f} x rms{why}")
    spread = [x for x in m if x["scale_spread"]]
    if spread:
        s_top = max(spread, key=lambda x: x["scale_spread"])
        console.print(f"widest scale spread: {s_top['weight']}, channel {s_top['scale_outlier_channel']} at "
                      f"{s_top['scale_spread']:.1f}x the median scale")
    console.print(f"output cosine, simulation vs fp32 reference: {r['output_cosine']:.6f}")


def plot(r, file, fmt="png"):
    """Error by layer: the chain's error at each layer's output, and each layer's largest local
    weight and activation rounding errors."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2))
    ax = fig.add_subplot()
    L = [x["layer"] for x in r["layers"]]
    ax.semilogy(L, [x["global_error"] for x in r["layers"]], "k-o", ms=3, label="chain error at layers.i.out")
    ax.semilogy(L, [max(x["weight_error"], 1e-12) for x in r["layers"]], "C0--", label="weight rounding (largest matmul)")
    ax.semilogy(L, [max(x["activation_error"], 1e-12) for x in r["layers"]], "C3--",
                label="activation rounding (largest matmul)")
    ax.set_xlabel("layer")
    ax.set_ylabel("relative L2 error")
    ax.set_title(f"{r['quant']} ({r['runtime']}): error budget by layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(file, format=fmt)
