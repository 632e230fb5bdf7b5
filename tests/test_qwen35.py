"""Qwen3.5's text decoder (q3ref/qwen35) against transformers' own Qwen3_5ForCausalLM (fp32, eager;
prefill with the chunked delta rule) on a tiny random checkpoint whose every parameter is random
(tests/fixtures/qwen35, scripts/make_qwen35_fixtures.py): 4 layers alternating GatedDeltaNet and
gated full attention, more value heads than key heads, sequences crossing the 64-token chunk."""

import numpy as np
import pytest

from conftest import FIXTURES
from q3ref.qwen35.config import Qwen35Config
from q3ref.qwen35.model import forward
from q3ref.qwen35.weights import Qwen35Weights

CKPT = FIXTURES / "qwen35/checkpoint"
Z = np.load(FIXTURES / "qwen35/taps.npz")
LENGTHS = (5, 70, 130)


@pytest.fixture(scope="module")
def model():
    cfg = Qwen35Config.from_json(CKPT / "config.json")
    return cfg, Qwen35Weights(CKPT, cfg)


def run(model, n, form):
    cfg, w = model
    taps = {}
    forward(w, cfg, Z[f"len{n}/input_ids"], taps, form)
    return taps


def worst(taps, n):
    """The largest |q3ref - transformers| / max|transformers| over every recorded tap, and where."""
    errs = {k.split("/", 1)[1]: float(np.abs(taps[k.split("/", 1)[1]] - Z[k]).max() / np.abs(Z[k]).max())
            for k in Z.files if k.startswith(f"len{n}/") and not k.endswith("/input_ids")}
    name = max(errs, key=errs.get)
    return name, errs[name], len(errs)


@pytest.mark.parametrize("n", LENGTHS)
def test_chunked_form_matches_transformers_within_1e_5(model, n):
    name, err, count = worst(run(model, n, "chunked"), n)
    assert count == 6 * 4 + 2 + 4 and err <= 1e-5, (name, err)  # 6 taps per layer, norm, logits, 2 x 2 states


@pytest.mark.parametrize("n", LENGTHS)
def test_recurrent_form_matches_transformers_within_1e_4(model, n):
    name, err, _ = worst(run(model, n, "recurrent"), n)
    assert err <= 1e-4, (name, err)


def test_the_two_forms_differ_only_by_ordering(model):
    """Equal in exact arithmetic: their gap at fp32 is of the order of fp32 rounding, not of a defect."""
    a, b = run(model, 130, "chunked"), run(model, 130, "recurrent")
    gaps = {k: float(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()) for k in ("layers.0.core", "layers.2.core", "logits")}
    assert 0 < max(gaps.values()) < 1e-5, gaps


def test_both_naming_schemes(tmp_path):
    """The published checkpoint is a VLM: the text decoder under model.language_model.*, a vision tower beside it."""
    from q3ref import safetensors_io as st

    tensors = st.open_tensors(CKPT / "model.safetensors")
    renamed = {n.replace("model.", "model.language_model.", 1): (d, a.shape, lambda a=a: [np.array(a)])
               for n, (d, a) in tensors.items()}
    renamed["model.visual.patch_embed.weight"] = ("F32", (2, 2), lambda: [np.zeros((2, 2), np.float32)])
    st.write(tmp_path / "model.safetensors", renamed, metadata={"format": "pt"})
    cfg = Qwen35Config.from_json(CKPT / "config.json")
    w = Qwen35Weights(tmp_path, cfg)
    assert w.skipped == 1
    taps = {}
    forward(w, cfg, Z["len5/input_ids"], taps)
    assert np.array_equal(taps["logits"], run((cfg, Qwen35Weights(CKPT, cfg)), 5, "chunked")["logits"])


def test_cli_trace(tmp_path):
    import subprocess
    import sys

    ids = Z["len70/input_ids"]
    out = tmp_path / "t.npz"
    r = subprocess.run([sys.executable, "-m", "q3ref", "trace", "--ids", ",".join(map(str, ids)), "--weights", CKPT,
                        "--out", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    t = np.load(out)
    for name in ("layers.3.out", "norm", "logits", "layers.2.recurrent_state"):
        assert np.abs(t[name] - Z[f"len70/{name}"]).max() <= 1e-5 * np.abs(Z[f"len70/{name}"]).max(), name
    r = subprocess.run([sys.executable, "-m", "q3ref", "trace", "--ids", "1,999", "--weights", CKPT, "--out", out],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "outside the vocabulary" in r.stderr
