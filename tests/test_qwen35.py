"""Qwen3.5's text decoder (q3ref/qwen35) against transformers' own Qwen3_5ForCausalLM (fp32, eager;
prefill with the chunked delta rule) on a tiny random checkpoint whose every parameter is random
(tests/fixtures/qwen35, scripts/make_qwen35_fixtures.py): 4 layers alternating GatedDeltaNet and
gated full attention, more value heads than key heads, sequences crossing the 64-token chunk."""

import numpy as np
import pytest

from conftest import FIXTURES
from q3ref.qwen35 import delta
from q3ref.qwen35.config import Qwen35Config
from q3ref.qwen35.model import PLAIN, attention, forward, gated_delta_net, mlp
from q3ref.qwen35.weights import Qwen35Weights

CKPT = FIXTURES / "qwen35/checkpoint"
Z = np.load(FIXTURES / "qwen35/taps.npz")
LENGTHS = (5, 70, 130)


@pytest.fixture(scope="module")
def model():
    cfg = Qwen35Config.from_json(CKPT / "config.json")
    return cfg, Qwen35Weights(CKPT, cfg)


def run(model, n, form, kernels="numba"):
    cfg, w = model
    taps = {}
    forward(w, cfg, Z[f"len{n}/input_ids"], taps, form, kernels)
    return taps


def worst(taps, n):
    """The largest |q3ref - transformers| / max|transformers| over every recorded tap, and where."""
    errs = {k.split("/", 1)[1]: float(np.abs(taps[k.split("/", 1)[1]] - Z[k]).max() / np.abs(Z[k]).max())
            for k in Z.files if k.startswith(f"len{n}/") and not k.endswith("/input_ids") and "/decode/" not in k}
    name = max(errs, key=errs.get)
    return name, errs[name], len(errs)


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
@pytest.mark.parametrize("n", LENGTHS)
def test_each_stage_fed_transformers_input_is_within_1e_5(model, n, kernels):
    """Each layer's mixer and MLP fed transformers' own input (its input_norm and post_norm taps):
    q3ref's error at that stage alone, nothing carried from earlier layers. Measured worst 5.7e-6
    (layers.2.mixer, 130 tokens) with OpenBLAS's SkylakeX and Haswell kernels alike."""
    cfg, w = model
    K = {**PLAIN, "delta": delta.FORMS["chunked", kernels]}
    z = {k.split("/", 1)[1]: Z[k] for k in Z.files if k.startswith(f"len{n}/")}
    errs = {}
    for i, kind in enumerate(cfg.layer_types):
        p = f"layers.{i}."
        mixer = gated_delta_net if kind == "linear_attention" else attention
        for stage, got in (("mixer", mixer(z[p + "input_norm"], w, cfg, p, lambda name, x: x, K)),
                           ("mlp", mlp(z[p + "post_norm"], w, p, K))):
            errs[p + stage] = float(np.abs(got - z[p + stage]).max() / np.abs(z[p + stage]).max())
    assert len(errs) == 8 and max(errs.values()) <= 1e-5, errs


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
@pytest.mark.parametrize("n", LENGTHS)
def test_chunked_form_matches_transformers_end_to_end(model, n, kernels):
    """Every tap of the whole forward. The stage errors above (<= 5.7e-6) carry through the random
    layers and grow: at 130 tokens layers.2.mixer lands 0.91-1.04e-5 from transformers, and where
    in that range follows the summation order alone: OpenBLAS's SkylakeX kernels (AVX-512 CPUs) or
    Haswell kernels (AVX2 CPUs; OPENBLAS_CORETYPE), Numba's code for this Zen 4 or for Sapphire
    Rapids (NUMBA_CPU_NAME). So 2e-5 here, and 1e-5 per stage above."""
    name, err, count = worst(run(model, n, "chunked", kernels), n)
    assert count == 6 * 4 + 2 + 4 and err <= 2e-5, (name, err)  # 6 taps per layer, norm, logits, 2 x 2 states


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
@pytest.mark.parametrize("n", LENGTHS)
def test_recurrent_form_matches_transformers_within_1e_4(model, n, kernels):
    name, err, _ = worst(run(model, n, "recurrent", kernels), n)
    assert err <= 1e-4, (name, err)


@pytest.mark.parametrize("form", ["recurrent", "chunked"])
@pytest.mark.parametrize("n", LENGTHS)
def test_both_forms_match_transformers_decode_path(model, n, form):
    """transformers' decode path (the ids one at a time with the cache) runs its recurrent form; the
    logits and final states it reaches (len{n}/decode/ in taps.npz) are q3ref's, either form, to 1e-5."""
    taps = run(model, n, form)
    keys = [k for k in Z.files if k.startswith(f"len{n}/decode/")]
    assert len(keys) == 5
    for k in keys:
        name = k.split("/decode/")[1]
        assert np.abs(taps[name] - Z[k]).max() <= 1e-5 * np.abs(Z[k]).max(), name


def test_the_two_forms_differ_only_by_ordering(model):
    """Equal in exact arithmetic: their gap at fp32 is of the order of fp32 rounding, not of a defect."""
    a, b = run(model, 130, "chunked"), run(model, 130, "recurrent")
    gaps = {k: float(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()) for k in ("layers.0.core", "layers.2.core", "logits")}
    assert 0 < max(gaps.values()) < 1e-5, gaps


@pytest.mark.parametrize("form", ["chunked", "recurrent"])
@pytest.mark.parametrize("T", [1, 63, 64, 65, 200])
def test_numba_kernels_match_their_numpy_twins(form, T):
    """At the 0.8B's head sizes (dk = dv = 128), with a decay strong enough to matter, across chunk edges."""
    rng = np.random.default_rng(T)
    Hv, dk, dv = 3, 128, 128
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    q, k = unit(rng.standard_normal((T, Hv, dk))), unit(rng.standard_normal((T, Hv, dk)))
    v = rng.standard_normal((T, Hv, dv)).astype(np.float32)
    g, beta = (-rng.exponential(0.3, (T, Hv))).astype(np.float32), rng.random((T, Hv)).astype(np.float32)
    twin, kernel = delta.FORMS[form, "numpy"](q, k, v, g, beta), delta.FORMS[form, "numba"](q, k, v, g, beta)
    for a, b in zip(twin, kernel):  # the output, then the final state
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        assert np.abs(a - b).max() <= 2e-6 * np.abs(a).max()
    if T > 1:  # the decay is read (a kernel that dropped it would differ from the twin by more than rounding)
        assert np.abs(delta.FORMS[form, "numba"](q, k, v, 0 * g, beta)[1] - twin[1]).max() > 1e-2 * np.abs(twin[1]).max()


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
    # flags that would promise numbers this trace does not compute are refused, not dropped
    r = subprocess.run([sys.executable, "-m", "q3ref", "trace", "--ids", "1,2", "--weights", CKPT, "--out", out,
                        "--quant", "int8"], capture_output=True, text=True)
    assert r.returncode == 2 and "--quant: not used by the trace of a Qwen3.5 checkpoint" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "q3ref", "trace", "--ids", "1,2", "--weights", FIXTURES / "stress-checkpoint",
                        "--out", out, "--delta-rule", "recurrent"], capture_output=True, text=True)
    assert r.returncode == 2 and "--delta-rule is Qwen3.5's" in r.stderr, r.stderr


def test_preset_has_the_shapes_of_transformers_model():
    """The qwen3.5-0.8b preset's tensors are those of transformers' Qwen3_5ForCausalLM built from
    the same config (shapes-0.8b.json, scripts/make_qwen35_fixtures.py --shapes); tied head."""
    import json

    from q3ref.qwen35.checkpoint import PRESET_0_8B, expected_shapes

    theirs = {n: tuple(s) for n, s in json.loads((FIXTURES / "qwen35/shapes-0.8b.json").read_text()).items()}
    ours = {"model." + n: s for n, s in expected_shapes(Qwen35Config.from_dict(PRESET_0_8B)).items()}
    assert theirs.pop("lm_head.weight") == theirs["model.embed_tokens.weight"]  # tied: not stored
    assert ours == theirs


def test_make_checkpoint_and_the_wrong_config(tmp_path):
    """A random checkpoint made by q3ref reads back and runs; a config.json that does not match the
    tensors is one line, not a traceback."""
    import json
    import subprocess
    import sys

    from q3ref.errors import Q3RefError
    from q3ref.qwen35.checkpoint import make_checkpoint

    config = json.loads((CKPT / "config.json").read_text())
    cfg = Qwen35Config.from_dict(config)
    make_checkpoint(tmp_path / "r", cfg, seed=1, config=config)
    w = Qwen35Weights(tmp_path / "r", cfg)
    logits = forward(w, cfg, [1, 2, 3, 4, 5])
    assert np.isfinite(logits).all() and logits.std() > 0.1
    assert np.abs(w["layers.0.input_layernorm.weight"]).max() < 1  # zero-centred: stored w of (1 + w)
    decay = np.exp(-np.exp(w["layers.0.linear_attn.A_log"]) * np.log1p(np.exp(w["layers.0.linear_attn.dt_bias"])))
    assert ((0.5 < decay) & (decay < 0.99)).all()

    config["intermediate_size"] = 128
    (tmp_path / "r/config.json").write_text(json.dumps(config))
    with pytest.raises(Q3RefError, match="mlp.gate_proj.weight has shape"):
        Qwen35Weights(tmp_path / "r", Qwen35Config.from_json(tmp_path / "r/config.json"))
    r = subprocess.run([sys.executable, "-m", "q3ref", "trace", "--ids", "1,2", "--weights", tmp_path / "r",
                        "--out", tmp_path / "t.npz"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "t.npz").exists()
