"""Rendering a diff report: a table by layer and stage (rich) and an error-growth plot."""

from __future__ import annotations

def layer_rows(report):
    """One row per layer: its worst stage by local error, and global error at its output."""
    groups = {}  # decoder layers by index; embed, norm, pooled, embedding each on their own
    for t in report["taps"]:
        if t.get("aligned"):
            groups.setdefault(t["name"] if t["layer"] is None else t["layer"], []).append(t)
    for taps in groups.values():
        worst = max(taps, key=lambda t: t["local_rel_l2"] / t["limit"])  # nearest its own limit
        end = taps[-1]  # last tap of the group in forward order (`out` for decoder layers)
        yield taps[0]["layer"], worst, end, any(t["diverged"] for t in taps)


def worst_label(layer, worst):
    """The worst stage's name; for a decoder layer whose every stage is the simulation's to the
    bit, "(all exact)": naming the first of seventeen zeros would point at nothing."""
    if layer is not None and worst["local_rel_l2"] == 0:
        return "(all exact)"
    return worst["name"].split(".")[-1]


def unaligned_lines(names):
    """One line per stage: "q_rope at layers 0-27" for a stage no layer has, names otherwise."""
    by_stage, lines = {}, []
    for name in names:
        if name.startswith("layers."):
            by_stage.setdefault(name.split(".")[2], []).append(int(name.split(".")[1]))
        else:
            lines.append(name)
    for stage, layers in by_stage.items():
        if len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1)):
            lines.append(f"{stage} at layers {layers[0]}-{layers[-1]}")
        else:
            lines += [f"layers.{i}.{stage}" for i in layers]
    return lines


def print_table(report, console):
    from rich.table import Table

    first = report["first_divergence"]
    t = Table(width=min(console.width, 130), title=f"{report['graph']}  ({report['precision']}, {report['kernels']}, {report['padding']} padding, "
                    f"{report['tokens']}/{report['seq_len']} tokens)")
    for col, just in (("layer", "left"), ("tap (end of layer)", "left"), ("cos", "right"), ("rel L2", "right"),
                      ("max |err|", "right"), ("worst local stage", "left"), ("local rel L2", "right"), ("/ allowed", "right"), ("", "left")):
        t.add_column(col, justify=just)
    for layer, worst, end, diverged in layer_rows(report):
        mark = ""
        if first and first["layer"] == layer and (layer is not None or first["name"] == end["name"]):
            mark = "[bold red]<- first divergence[/]"
        elif diverged:
            mark = "[yellow]diverged (inherits)[/]"
        t.add_row("-" if layer is None else str(layer), end["name"], f"{end['cos']:.6f}", f"{end['rel_l2']:.2e}",
                  f"{end['max_abs']:.2e}", worst_label(layer, worst), f"{worst['local_rel_l2']:.2e}",
                  f"{worst['local_rel_l2'] / worst['limit']:.2g}", mark)
    console.print(t)
    if first:
        console.print(f"[bold red]first divergence:[/] {first['name']} (layer {first['layer']}, stage {first['stage']}): "
                      f"this stage alone, run by q3ref on the graph's own inputs, is off by {first['local_rel_l2']:.3g} "
                      f"(rel L2); {first['limit']:g} is allowed there in this {report['precision']} graph")
    else:
        lim = report["limits"]
        where = (f"{lim['quantized stages']:g} where {report['precision']} weights are read, "
                 f"{lim['other stages']:g} elsewhere" if lim["quantized stages"] != lim["other stages"]
                 else f"{lim['other stages']:g} rel L2 everywhere")
        console.print(f"[green]no divergence[/]: every stage within its limit ({where})")
    out = report["output"]
    console.print(f"output cosine {out['cos']:.6f} against the fp32 reference; expected: {report['expected']}"
                  + (f", which the graph's output is {out['sim_rel_l2']:.2g} (rel L2) from, against {out['rel_l2']:.2g} "
                     "from the fp32 reference" if "sim_rel_l2" in out else "") + f"; taps read by {report['read_by']}")
    if "p_yes" in out:  # a reranker's export: the number its users read
        said = [(k, label) for k, label in (("", "from the graph"), ("_reference", "from the fp32 reference"),
                                            ("_deployed", "as an app runs it"),
                                            ("_deployed_simulated", "q3ref's simulation of that")) if f"p_yes{k}" in out]
        console.print("P(yes) (log-odds) " + ", ".join(f"{out['p_yes' + k]:.6f} ({out['log_odds' + k]:.4g}) {label}"
                                                       for k, label in said))
    run = report.get("untapped")
    if run:
        console.print(f"the graph as an app runs it ({run['how']}) is {run['rel_l2']:.2g} (rel L2; max |diff| "
                      f"{run['max_abs']:.2g}) from the tapped run"
                      + (f"; q3ref's simulation of that run is {run['sim_rel_l2']:.2g} from it" if "sim_rel_l2" in run else ""))
    probe = report.get("runtime_kernels")
    if probe:  # what the runtime computes here, found by running it (formats/*/probe.py)
        from rich.markup import escape

        max_kc = probe.get("params", {}).get("eigen_max_kc") if "FULLY_CONNECTED_FLOAT" in probe["ops"] else None
        console.print(escape(f"runtime kernels, probed: {probe['runtime']} on {probe['cpu']}: {probe['variant']} "
                             f"({', '.join(probe['ops'])}"
                             + (f"; Eigen's GEMM sums up to {max_kc} inputs a block" if max_kc else "") + "), which the simulation ")
                      + ("emulates" if probe["emulated"] else "[yellow]does not emulate[/]")
                      + escape(f"; {', '.join(probe['differ_unused'])} differ, which this graph does not run"
                               if probe.get("differ_unused") else ""))
    f16 = report["fp16"]
    console.print(f"fp16 headroom (reference taps): tightest at {f16['tightest']}, max|x| fits {f16['min_headroom']:.3g} "
                  "times under 65504" + (f"; [red]{f16['first_overflow']} would overflow fp16[/]" if f16["first_overflow"] else ""))
    for line in unaligned_lines(report["unaligned"]):
        console.print(f"[yellow]not aligned:[/] {line}")
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}")


def plot(report, path=None, fmt="png"):
    """Top: error growth (global rel L2 at each layer's output). Bottom: each layer's worst
    stage, its local error as a multiple of what its precision allows (1 = the limit).
    Returns the Figure (object API: no pyplot, no backend switch), saved to `path` if given."""
    from matplotlib.figure import Figure

    layers, grow, ratio, stage = [], [], [], []
    for layer, worst, end, _ in layer_rows(report):
        if layer is None:
            continue
        layers.append(layer)
        grow.append(max(end["rel_l2"], 1e-12))
        ratio.append(max(worst["local_rel_l2"] / worst["limit"], 1e-6))
        stage.append(worst_label(layer, worst))
    fig = Figure(figsize=(8, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.semilogy(layers, grow, "o-")
    top.set_ylabel("global rel L2\nat layers.i.out")
    top.set_title(f"{report['graph'].split('/')[-1]} ({report['precision']}): output cosine {report['output']['cos']:.5f}")
    bottom.semilogy(layers, ratio, "s-", color="tab:orange")
    bottom.axhline(1.0, color="grey", ls="--", lw=1)
    for x, y, name in zip(layers, ratio, stage):
        bottom.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    bottom.set_ylabel("worst local error\n/ allowed (1 = limit)")
    bottom.set_xlabel("layer")
    first = report["first_divergence"]
    if first and first["layer"] is not None:
        for ax in (top, bottom):
            ax.axvline(first["layer"], color="red", alpha=0.4)
        bottom.annotate(f"first divergence: {first['name']}", (first["layer"], 1.0), color="red",
                        textcoords="offset points", xytext=(6, -14), fontsize=8)
    bottom.set_xticks(layers)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110, format=fmt)
    return fig
