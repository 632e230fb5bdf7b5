"""quant-report: the error budget splits into weight and activation rounding, per matmul."""

import json
import subprocess
import sys

import numpy as np
import pytest
import q3ref
from q3ref.quant_report import MATMULS, quant_report
from conftest import FIXTURES, STRESS

IDS = list(range(1, 30))


@pytest.fixture(scope="module")
def model():
    return q3ref.Model(STRESS)


@pytest.mark.parametrize("quant", ["int8", "int8-weight-only", "fp16"])
def test_budget_splits(model, quant):
    r = quant_report(model, IDS, quant)
    L = model.cfg.num_hidden_layers
    assert len(r["matmuls"]) == len(MATMULS) * L and len(r["layers"]) == L
    for m in r["matmuls"]:
        # the total is what the recipe's product does; its two parts bound it (triangle inequality)
        assert m["total_error"] <= m["weight_error"] + m["activation_error"] + 1e-7, m
        if quant == "int8":
            assert m["weight_error"] > 1e-3 and m["activation_error"] > 1e-3, m
        else:  # the activations stay fp32: nothing to add
            assert m["activation_error"] < 1e-6, m
    if quant == "fp16":  # a bf16 checkpoint is exact in fp16: only BLAS's summation order differs
        assert max(m["weight_error"] for m in r["matmuls"]) < 1e-7
    else:
        assert 0.99 < r["output_cosine"] < 0.99999
    # the chain's error grows along the layers of a random model
    g = [x["global_error"] for x in r["layers"]]
    assert g[-1] > g[0] > 0 if quant != "fp16" else g[-1] < 1e-5


def test_scale_outlier_is_the_largest_row(model):
    r = quant_report(model, IDS, "int8")
    for m in r["matmuls"][:7]:
        w = model.weights[m["weight"]]
        peak = np.abs(w).max(axis=1)  # per output channel, straight from the checkpoint
        assert m["scale_outlier_channel"] == int(np.argmax(peak))
        assert m["scale_spread"] == pytest.approx(peak.max() / np.median(peak), rel=1e-5)


def test_int4_budget_is_larger_and_block32_beats_block128():
    m = q3ref.Model(FIXTURES / "int4-checkpoint")
    ids = list(range(5, 40))
    e = {q: quant_report(m, ids, q)["layers"][-1]["global_error"] for q in ("int8", "int4-block32", "int4-block128")}
    assert e["int8"] < e["int4-block32"] < e["int4-block128"], e


def test_cli(tmp_path):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    p = subprocess.run([sys.executable, "-m", "q3ref", "quant-report", "--ids", ",".join(map(str, IDS)),
                        "--weights", str(STRESS), "--json", str(out), "--plot", str(png)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "activation rounding" in p.stdout and "largest weight-rounding error" in p.stdout
    assert json.loads(out.read_text())["quant"] == "int8" and png.read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([sys.executable, "-m", "q3ref", "quant-report", "--ids", "1,2", "--weights", str(STRESS),
                          "--quant", "int3"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
