"""Format-neutral pieces of tap alignment: where a tap's tensor is, how its layout becomes the
tap's [T, ...] layout, and the numeric fallback for files whose names and wiring q3ref does not know."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tokenizer import EOS_ID

# A reranker's export ends in its score: llama.cpp's rank pooling ("score"), or a CausalLM's logits
# over the vocabulary ("logits"), of which the bridge takes the yes and no columns.
SCORING_OUTPUTS = ("score", "logits")


@dataclass
class Aligned:
    tensor: int  # graph tensor index
    how: str  # "structure" (names and wiring) or "numeric" (best match to q3ref's tap)
    layout: str = "rows"  # how [1, ...] becomes the tap: rows [1,S,..], heads_first [1,A,S,B], flat [1,S,A*B]


def to_tap(value, real, layout="rows", shape=None):
    """A graph tensor [1, S, ...] (or [1, D]) -> the tap's layout [T, ...] (or [D]); `shape` is
    the tap's, needed to unflatten the "flat" layout [1, S, A*B] -> [T, A, B]."""
    v = np.asarray(value)[0]
    if layout == "heads_first":
        v = v.transpose(1, 0, 2)
    if v.ndim >= 2 and v.shape[0] == real.shape[0]:
        v = v[real]
    return v.reshape(shape) if layout == "flat" else v


def numeric_align(values: dict, ref: dict, real, missing, taken) -> dict[str, Aligned]:
    """For graphs whose names and wiring q3ref does not know: each missing tap gets the float
    activation tensor, in any of the layouts above, closest to q3ref's tap (relative L2), if
    one is closer than 0.5. A best match, reported as such: never as sure as `align`."""
    out, taken = {}, set(taken)
    for name in missing:
        want = ref[name].shape
        best = None
        for t, v in values.items():
            if t in taken or np.asarray(v).dtype != np.float32 or np.asarray(v).ndim < 2:
                continue
            for layout in ("rows", "heads_first", "flat"):
                if layout == "heads_first" and np.asarray(v).ndim != 4:
                    continue
                a = to_tap(v, real, "rows" if layout == "flat" else layout)
                if layout == "flat":
                    if a.ndim != 2 or len(want) != 3 or a.shape != (want[0], want[1] * want[2]):
                        continue
                    a = a.reshape(want)
                if a.shape != want:
                    continue
                err = float(np.linalg.norm(a - ref[name]) / max(np.linalg.norm(ref[name]), 1e-30))
                if best is None or err < best[0]:
                    best = (err, t, layout)
        if best is not None and best[0] < 0.5:
            out[name] = Aligned(best[1], "numeric", best[2])
            taken.add(best[1])
    return out


def config_problems(d: dict, cfg, layer_word="decoder layers") -> list[str]:
    """Plain statements of where a described export disagrees with the checkpoint's config.json
    (describe()'s hidden_size, vocab_size and layers, the same keys in every format)."""
    problems = []
    if d["hidden_size"] and d["hidden_size"] != cfg.hidden_size:
        problems.append(f"graph output has {d['hidden_size']} dims, config.json says hidden_size {cfg.hidden_size}")
    if d["vocab_size"] is not None and d["vocab_size"] != cfg.vocab_size:
        problems.append(f"graph embedding table has {d['vocab_size']} rows, config.json says vocab_size {cfg.vocab_size}")
    if d["layers"] and d["layers"] != cfg.num_hidden_layers:
        problems.append(f"graph has {d['layers']} {layer_word}, config.json says {cfg.num_hidden_layers} layers")
    return problems


def config_line(d) -> list[str]:
    """inspect's config.json verdict, when a checkpoint was given."""
    if "config_check" not in d:
        return []
    return ["  config.json: " + ("agrees" if not d["config_check"] else "DISAGREES: " + "; ".join(d["config_check"]))]


def graph_summary(d) -> list[str]:
    """inspect's lines for a graph format (LiteRT, ONNX): describe() and, with a checkpoint, the
    config and quantized-weight checks."""
    lines = [f"{d['graph']}: {d['size_mb']} MB, precision {d['precision']}, seq_len {d['seq_len']}, "
             f"{d['layers']} layers, hidden {d['hidden_size']}, vocab {d['vocab_size']}"]
    lines += io_lines(d)
    lines.append(f"  fully-connected weights: {d['fully_connected_weights']} "
                 f"({d['per_channel_quantized_fc']} quantized per channel)")
    lines += table_and_ops(d)
    return lines + config_line(d) + weight_lines(d, "int8 per channel, int4 per block")


def io_lines(d) -> list[str]:
    return ([f"  input  {i['name']}: {i['dtype']} {i['shape']}" + (f" ({i['role']})" if "role" in i else "")
             for i in d["inputs"]]
            + [f"  output {o['name']}: {o['dtype']} {o['shape']}" for o in d["outputs"]])


def table_and_ops(d, most=None) -> list[str]:
    """The embedding table's type, if the graph holds one, and the op counts (the `most` commonest)."""
    table = d.get("embedding_table")
    return ([f"  embedding table: {table['dtype']} {table['shape']}"] if table else []) + [
        "  ops: " + ", ".join(f"{k} {v}" for k, v in list(d["ops"].items())[:most])]


def weight_lines(d, recipe) -> list[str]:
    """inspect's verdict on the quantized weights (check_weights rows), when a checkpoint was given."""
    rows = d.get("quantized_weights") or []
    if not rows:
        return []
    same = [r for r in rows if r["equal"]]
    kinds = "/".join(sorted({r["dtype"] for r in rows}))
    return ([f"  {kinds} weights: {len(same)}/{len(rows)} bit-identical to q3ref's quantization of the checkpoint "
             f"({recipe})"]
            + [f"    {r['weight']}: " + (f"{r['differing_values']} values and scales up to {r['max_scale_rel_diff']:.2g} "
                                         "(relative) differ" if r["max_scale_rel_diff"] is not None
                                         else "the payload or the scales have another shape")
               + ": another recipe, other weights, or a re-quantized file" for r in rows if r not in same])


def place_fixed(ids, seq_len, padding="right", pad_id=EOS_ID, truncate=False):
    """ids -> (input_ids [1, S], mask [1, S] bool) padded on one side to a graph's fixed seq_len
    (a LiteRT graph's, a static-shape ONNX graph's)."""
    from ..api import pad
    from ..errors import Q3RefError

    ids = list(ids)
    if len(ids) > seq_len:
        if not truncate:
            raise Q3RefError(f"input has {len(ids)} tokens, the graph takes {seq_len} (seq_len is baked into "
                             "the graph); shorten it, or pass --truncate to keep the first tokens and the last")
        ids = ids[: seq_len - 1] + ids[-1:]  # keep the input's last token (its EOS) last
    if padding not in ("left", "right"):
        raise Q3RefError(f"--padding must be left or right, got {padding!r}")
    return pad([ids], padding, pad_id, seq_len)  # [1, S] each


class GraphExport:
    """What the two graph formats' Exports (LiteRT, ONNX) share: describe and check the file their
    `graph` parsed, and no bridge checks of its own (check.py runs the bridge instead)."""

    def describe(self):
        return self.graph.describe()

    def check_config(self, cfg):
        return self.graph.check_config(cfg)

    def bridge_checks(self, cfg=None, kind=None):
        return []

    def padding_note(self) -> str | None:
        return None  # both sides of padding are the bridge's choice

    def untapped(self, input_ids, mask, runtime):
        return None  # LiteRT: the taps are read from the run an app makes

    def simulate_untapped(self, simulated):
        return None  # ONNX's optimized run: its fusions are not simulated

    def per_tensor_activations(self) -> bool:
        """Whether the graph quantizes activations with one scale per tensor (so padding rows and
        batch-mates move a text's embedding): ONNX Runtime's int8/uint8; LiteRT's are per row."""
        return False
