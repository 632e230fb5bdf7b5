"""Rendering a diff report: what the table and the plot name as each layer's worst stage."""

from q3ref.report import layer_rows, plot, worst_label


def tap(name, layer, local):
    return {"name": name, "layer": layer, "stage": name.split(".")[-1], "aligned": True, "cos": 1.0,
            "rel_l2": 1e-3, "max_abs": 1e-3, "local_rel_l2": local, "limit": 1e-4, "diverged": local > 1e-4}


def report(locals_by_layer):
    taps = [tap("embed", None, 0.0)]
    for i, locals_ in enumerate(locals_by_layer):
        taps += [tap(f"layers.{i}.{stage}", i, x) for stage, x in zip(("input_norm", "q", "out"), locals_)]
    return {"graph": "g.tflite", "precision": "dynamic_int8", "taps": taps, "first_divergence": None,
            "output": {"cos": 1.0}}


def test_a_layer_exact_to_the_bit_is_named_so_not_by_its_first_stage():
    rows = {layer: worst_label(layer, worst) for layer, worst, _, _ in layer_rows(report([(0, 0, 0), (0, 3e-8, 0)]))}
    assert rows == {None: "embed", 0: "(all exact)", 1: "q"}


def test_the_plot_labels_what_the_table_does():
    fig = plot(report([(0, 0, 0), (0, 3e-8, 0)]))
    labels = [t.get_text() for t in fig.axes[1].texts]
    assert labels == ["(all exact)", "q"]
