"""Diff an exported graph (any format q3ref reads: formats/) against q3ref, tap by tap, and name
where it first departs.

Two errors per tap, both over real tokens only:
- global: the graph's tensor against q3ref's clean forward (what a user sees grow by layer);
- local: the graph's tensor against q3ref's stage run on the graph's own inputs to that stage
  (teacher forcing, model.forward's `force`): the error this stage adds, not what it inherits.
First divergence: the first tap in forward order whose local error is beyond what the graph's
precision explains. Against the fp32 reference, only stages that read quantized weights can be
off by quantization (the export's limits()); against q3ref's simulation of the export's recipe
(quant="auto") every stage is held to FP32_FLOOR. Nothing here knows which format it holds.
A reranker's export (output_tap "score") is diffed the same way, through the head's taps
(model.rank: pooled, logits, score) instead of the embedding, against a reranker checkpoint.
"""

from __future__ import annotations

import time

import numpy as np

from . import model as M
from .errors import Q3RefError
from .formats.taps import SCORING_OUTPUTS, Aligned, numeric_align, to_tap
from .quant import fp16_headroom
from .tokenizer import EOS_ID

# Every stage whose weights are not quantized runs in fp32 in these exports; measured: <= 1.5e-7
# local error at those stages in fp32, fp16 and int8 LiteRT graphs.
FP32_FLOOR = 1e-4


def metrics(got, ref):
    """cos, relative L2, max |err| and the token of the worst element. Elementwise work stays in
    fp32 (the taps' precision); the sums accumulate in float64."""
    got, ref = np.asarray(got, np.float32), np.asarray(ref, np.float32)
    d = got - ref
    dd, rr, gg = (float(np.sum(a * a, dtype=np.float64)) for a in (d, ref, got))
    gr = float(np.sum(got * ref, dtype=np.float64))
    worst = np.unravel_index(np.argmax(np.abs(d)), d.shape) if d.size else ()
    return {"cos": gr / np.sqrt(gg * rr) if gg * rr > 0 else 0.0,
            "rel_l2": float(np.sqrt(dd / max(rr, 1e-60))),
            "max_abs": float(np.abs(d[worst])) if d.size else 0.0,
            "worst_token": int(worst[0]) if len(worst) > 1 else None}


def head_ids(model, g, notes):
    """The (yes, no) ids whose LM head rows a reranker export's score reads: the checkpoint
    tokenizer's (rerank.answer_ids), or the export's own labels where the checkpoint has no Qwen3
    tokenizer (a test checkpoint's cut vocabulary). A disagreement between the two is a note."""
    if model.kind != "reranker":
        raise Q3RefError(f"{g.path} scores pairs (a reranker's rank head); diff it against the Qwen3-Reranker "
                         f"checkpoint directory it was converted from; {model.path} is not one")
    own = g.head_ids()
    if own is None:  # an export without labels of its own reads every row of the LM head (ONNX's logits)
        return model.answer_ids()
    if model.tokenizer is None:
        if None in own:
            raise Q3RefError(f"{g.path}: its labels are not tokens of its own vocabulary, and {model.path} has no "
                             "Qwen3 tokenizer to say which LM head rows are yes and no")
        notes.append(f"yes/no ids {tuple(own)} are the file's labels ({model.tokenizer_problem})")
        return tuple(own)
    ids = model.answer_ids()
    if tuple(own) != ids:
        notes.append(f"the file's labels are ids {tuple(own)}; the checkpoint's tokenizer has yes, no = {ids}: "
                     "the file's rank head reads other rows of the LM head (compared with the checkpoint's below)")
    return ids


def diff(model, g, ids, padding="right", kernels=None, truncate=False, progress=None,
         quant="none", length=None) -> dict:
    """quant="auto": the expected value is q3ref's simulation of the graph's recipe on the same
    runtime (quant.py), not the fp32 reference. progress(phase, done, total), if given, is told
    about each layer and the graph's run. `g` is an Export (formats/); `kernels` one of its
    runtimes; `length` pads a graph that takes any length (ONNX) to that many positions."""
    cfg = model.cfg
    L = cfg.num_hidden_layers

    def layers_done(phase):  # model.forward's per-layer callback, reporting as `phase`
        return (lambda done: progress(phase, done, L)) if progress else None

    kernels = kernels or g.runtimes[0]
    if kernels not in g.runtimes:
        raise Q3RefError(f"this {g.format} graph runs on {' or '.join(g.runtimes)}, not {kernels!r}")
    problems = g.check_config(cfg)
    if problems:
        raise Q3RefError(f"{g.path} does not fit {model.path}: " + "; ".join(problems))
    ids = model.check_ids(ids)
    precision = g.precision
    seconds, tick = {}, [time.perf_counter()]

    def lap(label):  # time since the previous lap, added to `label`
        now = time.perf_counter()
        seconds[label] = seconds.get(label, 0.0) + now - tick[0]
        tick[0] = now

    found, notes = g.align(cfg)
    lap("align")
    # A reranker export (SCORING_OUTPUTS) ends in the LM head's yes and no rows and their softmax
    # instead of the embedding; it is diffed against a reranker checkpoint.
    final_tap = "score" if g.output_tap in SCORING_OUTPUTS else "embedding"
    yes_no = head_ids(model, g, notes) if final_tap == "score" else None
    names = M.tap_names(cfg, "rank" if yes_no else "embedding")
    pad_id = EOS_ID if EOS_ID < cfg.vocab_size else 0  # the pad token; masked either way
    input_ids, mask = g.place(ids.tolist(), padding, pad_id, truncate, length)
    real = mask[0]
    if not real[0] and g.padding_note():  # padded on the left, which this file does not support
        notes.append(g.padding_note())
    S = mask.shape[1]
    if S > cfg.max_position_embeddings:
        raise Q3RefError(f"{S} positions are more than this model's {cfg.max_position_embeddings} "
                         "(max_position_embeddings in config.json)")

    # The graph first, both its runs, while the process is fresh: the untouched graph's session took
    # 4.7 s after q3ref's forwards against 2.4 s before them (0.6B q4, AMD EPYC).
    # What the bridge makes from the graph's output (pooling, normalizing): q3ref does it, below.
    # A CausalLM's logits at every position: the card takes the last token's yes and no columns.
    bridge = {"norm": {"pooled", "embedding"}, "pooled": {"embedding"},
              "logits": {"pooled", "logits", "score"}}.get(g.output_tap, set())
    missing = [name for name in names if name not in found and name not in bridge]
    wanted = {a.tensor for a in found.values()}
    if missing:  # numeric fallback: read every float activation, match by value
        wanted |= set(g.float_tensors())
    if progress:
        progress(f"graph ({kernels})", 0, 1)
    values = g.run(input_ids, mask, sorted(wanted), kernels)
    lap("graph (rewrite + run)")
    # Is the tapped run the run an app gets? Where it is not (ONNX), the untouched graph's output
    # against the tapped run's, over the real tokens.
    deployed = g.untapped(input_ids, mask, kernels)

    def real_rows(v):  # an output [1, S, ...] over the real tokens; a pooled one [1, D] (or a score) as is
        return v[0][real] if v.ndim > 2 else v[0]

    untapped = None if deployed is None else {"how": deployed[0], **{
        k: v for k, v in metrics(real_rows(deployed[1]), real_rows(values[g.output])).items() if k != "worst_token"}}
    lap("graph as deployed")
    if progress:
        progress(f"graph ({kernels})", 1, 1)

    # q3ref on the real tokens, at the graph's positions (arange(S) even under left padding).
    ids_real = input_ids[:, real]  # [1, T]
    positions = np.arange(S)[None, real]  # [1, T]
    ones = np.ones_like(ids_real, bool)

    def run(weights, K, taps, phase, force=None):  # q3ref's forward to the export's output, taps recorded
        if yes_no:
            return M.rank(weights, cfg, ids_real, ones, yes_no, K, taps, layers_done(phase), positions, force)
        return M.embed(weights, cfg, ids_real, ones, None, K, taps, layers_done(phase), positions, force)

    clean = {}
    run(model.weights, model.kernels, clean, "reference")
    ref = {name: v[0] for name, v in clean.items()}
    lap("reference (clean + forced)")

    if missing:
        numeric = numeric_align(values, ref, real, missing, {a.tensor for a in found.values()})
        found.update(numeric)
        notes.append(f"{len(numeric)} of {len(missing)} taps matched numerically (the closest shape-compatible "
                     "tensor to q3ref's tap, a best guess)"
                     + ("" if len(numeric) == len(missing) else "; the rest could not be aligned"))
        lap("align")
    graph_taps = {name: to_tap(values[a.tensor], real, a.layout, ref[name].shape) for name, a in found.items()}
    for name, source in (("pooled", "norm"), ("embedding", "pooled")):  # as sentence-transformers does
        if name in bridge and source in graph_taps:
            graph_taps[name] = graph_taps["norm"][-1] if name == "pooled" else M.normalize(graph_taps["pooled"][None])[0]
            found[name] = Aligned(found[source].tensor, f"bridge (q3ref {'pools' if name == 'pooled' else 'normalizes'} "
                                                        "the graph's output)")

    def card_score(output):  # [1, S, V] logits -> (yes, no) logits [2] and their softmax [2], as the card does
        logits = output[0][real][-1][list(yes_no)].astype(np.float32)  # logits[:, -1] at yes and no
        e = np.exp(logits - logits.max())
        return logits, e / e.sum()

    if "logits" in bridge:
        graph_taps["logits"], graph_taps["score"] = card_score(values[g.output])
        found["logits"] = Aligned(g.output, "bridge (q3ref takes the last token's yes and no logits)")
        found["score"] = Aligned(g.output, "bridge (q3ref's softmax over them)")

    # The expected computation: the fp32 reference, or the simulation of the graph's recipe.
    sim = g.simulation if quant == "auto" else None
    # offset: the first real token's column in the graph, which sets the lanes of its sums
    weights, K = (g.simulate(model.weights, model.kernels, kernels, offset=int(positions[0, 0])) if sim
                  else (model.weights, model.kernels))
    expected, deployed_simulated = ref, None
    if sim:
        sim_taps = {}
        run(weights, K, sim_taps, f"simulation ({sim}, {kernels})")
        expected = {name: v[0] for name, v in sim_taps.items()}
        deployed_sim = g.simulate_untapped((weights, K)) if deployed else None
        if deployed_sim:  # the run an app makes, simulated too (llama.cpp's defaults: flash attention on)
            lap("reference (clean + forced)")
            dep_taps = {}
            run(*deployed_sim, dep_taps, f"simulation of the graph as deployed ({kernels})")
            deployed_simulated = dep_taps[g.output_tap][0]  # [D] or [classes]
            untapped["sim_rel_l2"] = metrics(real_rows(deployed[1]), deployed_simulated)["rel_l2"]
            lap("simulation of the graph as deployed")
    local = {}
    forced = {k: v[None] for k, v in graph_taps.items() if k not in ("embedding", "score")}
    run(weights, K, local, "expected, on the graph's inputs", forced)
    lap("reference (clean + forced)")

    limits = g.limits(simulated=bool(sim))  # a simulation: the fp32 floor, except where the export says
    rows, first = [], None
    limit_of = {stage: limits.get(stage, FP32_FLOOR) for stage in [*M.LAYER_TAPS, *M.TOP_TAPS, *M.RANK_TAPS]}
    for name in names:
        layer, stage = (int(name.split(".")[1]), name.split(".")[2]) if name.startswith("layers.") else (None, name)
        row = {"name": name, "layer": layer, "stage": stage}
        if name not in graph_taps:
            rows.append({**row, "tensor": None, "aligned": False, "diverged": None})
            continue
        got = graph_taps[name]
        if got.shape != ref[name].shape:
            notes.append(f"{name}: graph tensor {list(got.shape)} vs tap {list(ref[name].shape)}; not compared")
            rows.append({**row, "tensor": g.tensor_name(found[name].tensor), "aligned": False, "diverged": None})
            continue
        glob = metrics(got, ref[name])
        if sim:
            d_sim = metrics(got, expected[name])["rel_l2"]
            glob.update(sim_rel_l2=d_sim, explained=1 - d_sim / glob["rel_l2"] if glob["rel_l2"] > 0 else None)
        loc = metrics(got, local[name][0])
        limit = limits.get(stage, FP32_FLOOR)
        diverged = bool(loc["rel_l2"] > limit)
        if diverged and first is None:
            first = {"name": name, "layer": layer, "stage": stage, "local_rel_l2": loc["rel_l2"], "limit": limit}
        rows.append({**row, "tensor": g.tensor_name(found[name].tensor), "aligned": True, "how": found[name].how, **glob,
                     "local_rel_l2": loc["rel_l2"], "limit": limit, "diverged": diverged})
    final = graph_taps[final_tap] if bridge else values[g.output][0]  # [D], or [2] for a score
    out = metrics(final, ref[final_tap])
    if sim:
        out["sim_rel_l2"] = metrics(final, expected[final_tap])["rel_l2"]
    if yes_no:  # what a user compares: P(yes), the export's against the reference's (and as an app runs it),
        # and its log-odds log P(yes) - log P(no), which still tells scores apart where P(yes) rounds to 1
        as_deployed = None if deployed is None else card_score(deployed[1])[1] if "logits" in bridge else deployed[1][0]
        scores = {"": final, "_reference": ref["score"], **({"_deployed": as_deployed} if deployed else {}),
                  **({"_deployed_simulated": deployed_simulated} if deployed_simulated is not None else {})}
        for suffix, p in scores.items():
            p = np.asarray(p, np.float64)
            odds = float(np.log(p[0]) - np.log(p[1])) if p.min() > 0 else float(np.sign(p[0] - p[1]) * np.inf)
            out[f"p_yes{suffix}"], out[f"log_odds{suffix}"] = float(p[0]), odds
        gap, off = out.get("log_odds_deployed", out["log_odds"]) - out["log_odds"], out["log_odds"] - out["log_odds_reference"]
        if abs(gap) > max(1e-3, 0.1 * abs(off)):  # P(yes) near 1 hides this from the rel L2 below
            notes.append(f"as an app runs it ({deployed[0]}) the log-odds are {out['log_odds_deployed']:.4g}, against "
                         f"{out['log_odds']:.4g} in the tapped run and {out['log_odds_reference']:.4g} from the fp32 "
                         "reference: the taps describe a run the app does not make, and the two differ by a comparable amount"
                         + (f"; q3ref's simulation of the app's run gives {out['log_odds_deployed_simulated']:.4g}"
                            if "log_odds_deployed_simulated" in out else ""))
    lap("compare")
    head = fp16_headroom(ref, names)
    out_row = next((r for r in rows if r["name"] == g.output_tap and r.get("aligned")), None)
    # (for a score, the log-odds note above says it: P(yes) near 1 hides the gap from a rel L2)
    if untapped and out_row and not yes_no and untapped["rel_l2"] > max(FP32_FLOOR, 0.1 * out_row["rel_l2"]):
        notes.append(f"the graph as an app runs it ({untapped['how']}) is {untapped['rel_l2']:.2g} (rel L2) from the "
                     f"tapped run at {g.output_tap}, against {out_row['rel_l2']:.2g} from the fp32 reference: the "
                     "taps describe a run the app does not make, and the two differ by a comparable amount"
                     + (f"; q3ref's simulation of the app's run is {untapped['sim_rel_l2']:.2g} from it"
                        if "sim_rel_l2" in untapped else ""))
    probe = g.runtime_note(kernels, bool(sim))  # are the simulated float ops bit-exact on this runtime here?
    if probe and not probe["emulated"]:
        notes.append(f"{kernels} kernels on {probe['cpu']} ({probe['runtime']}) differ from q3ref's emulation "
                     f"({', '.join(op for op, ok in probe['ops'].items() if not ok)}): the simulation is "
                     "approximate here, not bit-exact")
    return {"graph": str(g.path), "format": g.format, "weights": str(model.path), "precision": precision,
            "kernels": kernels,
            "fp16": {k: head[k] for k in ("first_overflow", "tightest", "min_headroom")},
            "expected": f"simulation of {sim} ({kernels} runtime)" if sim else "fp32 reference",
            "read_by": g.read_by(kernels),
            "padding": padding, "tokens": int(real.sum()), "seq_len": S,
            "limits": {"quantized stages": max(limit_of.values()), "other stages": min(limit_of.values())},
            "taps": rows, "first_divergence": first,
            "output": {k: v for k, v in out.items() if k != "max_abs" and k != "worst_token"},
            "unaligned": [r["name"] for r in rows if not r.get("aligned")], "notes": notes,
            "untapped": untapped, "runtime_kernels": probe, "seconds": seconds}
