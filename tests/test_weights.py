"""Checkpoint and config loading: storage dtypes, shards, prefixes, and one-line errors."""

import json
import shutil

import numpy as np
import pytest

import q3ref
from q3ref import safetensors_io as st
from q3ref.config import Config
from q3ref.errors import Q3RefError
from conftest import STRESS, TINY


def copy_ckpt(tmp_path, src=STRESS):
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def rewrite(ckpt, fn, files=None):
    """Re-save the checkpoint's tensors through fn(name, dtype, fp32 array) -> (dtype, array) or None."""
    tensors = st.open_tensors(ckpt / "model.safetensors")
    out = {}
    for name, (dtype, raw) in tensors.items():
        r = fn(name, dtype, st.upcast(dtype, raw))
        if r is not None:
            out[name] = (r[0], r[1].shape, lambda a=r[1]: a)
    (ckpt / "model.safetensors").unlink()
    st.write(ckpt / "model.safetensors", out)


def test_bf16_widening_kernel_matches_its_numpy_twin():
    every = np.arange(2**16, dtype=np.uint16).reshape(256, 256)  # NaNs, infinities and subnormals too
    got, want = st.widen_bf16_numba(every), st.widen_bf16(every)
    assert got.shape == want.shape and (got.view(np.uint32) == want.view(np.uint32)).all()
    assert (st.widen_bf16_numba(every[::3, ::2]).view(np.uint32) == st.widen_bf16(every[::3, ::2]).view(np.uint32)).all()


def test_bf16_upcast_is_exact():
    x = np.array([1.0, -2.5, 3.140625, 2.0**-100, 65280.0], np.float32)  # all bf16-representable
    assert (st.upcast("BF16", st.bf16_bits(x)) == x).all()


@pytest.mark.parametrize("dtype", ["F32", "F16"])
def test_other_storage_dtypes_load(tmp_path, dtype):
    ckpt = copy_ckpt(tmp_path)
    np_dtype = {"F32": np.float32, "F16": np.float16}[dtype]
    rewrite(ckpt, lambda n, d, a: (dtype, a.astype(np_dtype)))
    ids = np.arange(1, 12)
    ref = q3ref.Model(STRESS).encode_ids([ids])
    got = q3ref.Model(ckpt).encode_ids([ids])
    # bf16 values are exact in fp32 and in fp16 when in range: the same weights, the same result.
    assert np.abs(got - ref).max() < 1e-6


def test_model_prefix_and_shards(tmp_path):
    ckpt = copy_ckpt(tmp_path)
    tensors = st.open_tensors(ckpt / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for fname, part in shards.items():
        st.write(ckpt / fname, {"model." + n: (tensors[n][0], tensors[n][1].shape,
                                               lambda a=tensors[n][1]: np.array(a)) for n in part})
    (ckpt / "model.safetensors").unlink()
    index = {"weight_map": {"model." + n: f for f, part in shards.items() for n in part}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    ids = np.arange(3, 20)
    assert np.abs(q3ref.Model(ckpt).encode_ids([ids]) - q3ref.Model(STRESS).encode_ids([ids])).max() < 1e-7


def test_missing_tensor_is_named(tmp_path):
    ckpt = copy_ckpt(tmp_path)
    rewrite(ckpt, lambda n, d, a: None if n == "layers.1.self_attn.k_norm.weight" else (d, st.bf16_bits(a)))
    with pytest.raises(Q3RefError, match=r"layers\.1\.self_attn\.k_norm\.weight is missing"):
        q3ref.Model(ckpt)


def test_wrong_shape_is_named(tmp_path):
    ckpt = copy_ckpt(tmp_path)
    rewrite(ckpt, lambda n, d, a: (d, st.bf16_bits(a[:, :-1] if n == "layers.2.mlp.up_proj.weight" else a)))
    with pytest.raises(Q3RefError, match=r"layers\.2\.mlp\.up_proj\.weight has shape \[80, 47\], config.json implies \[80, 48\]"):
        q3ref.Model(ckpt)


def test_unknown_dtype_is_named(tmp_path):
    ckpt = copy_ckpt(tmp_path)
    path = ckpt / "model.safetensors"
    header, start = st.read_header(path)
    data = path.read_bytes()[start:]
    header["norm.weight"]["dtype"] = "I8"  # same bytes... wrong count, but dtype is checked first
    header["norm.weight"]["shape"] = [header["norm.weight"]["shape"][0] * 2]
    blob = json.dumps(header).encode()
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + data)
    with pytest.raises(Q3RefError, match="norm.weight has dtype I8"):
        q3ref.Model(ckpt)


def test_truncated_file(tmp_path):
    ckpt = copy_ckpt(tmp_path)
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(Q3RefError, match="truncated"):
        q3ref.Model(ckpt)


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"not a safetensors file at all"])
def test_corrupt_file(tmp_path, content):
    ckpt = copy_ckpt(tmp_path)
    (ckpt / "model.safetensors").write_bytes(content)
    with pytest.raises(Q3RefError, match="safetensors"):
        q3ref.Model(ckpt)


def test_nan_weights_are_refused(tmp_path):
    ckpt = copy_ckpt(tmp_path)
    rewrite(ckpt, lambda n, d, a: (d, st.bf16_bits(np.where(n == "norm.weight", np.nan, a))))
    with pytest.raises(Q3RefError, match="norm.weight holds NaN"):
        q3ref.Model(ckpt).encode_ids([[1, 2]])


def test_config_dialects_and_unknown_keys():
    published = json.loads((TINY / "config.json").read_text())
    assert "rope_theta" in published
    v5 = json.loads((STRESS / "config.json").read_text())
    assert "rope_theta" not in v5 and v5["rope_parameters"]["rope_theta"] == 1e4
    assert Config.from_dict(v5).rope_theta == 1e4
    assert Config.from_dict({**published, "some_future_key": 1}).hidden_size == 16


def test_config_missing_key():
    d = json.loads((TINY / "config.json").read_text())
    del d["head_dim"]
    with pytest.raises(Q3RefError, match="missing required key.*head_dim"):
        Config.from_dict(d)


def test_config_bad_values():
    d = json.loads((TINY / "config.json").read_text())
    with pytest.raises(Q3RefError, match="not a multiple"):
        Config.from_dict({**d, "num_key_value_heads": 3})
