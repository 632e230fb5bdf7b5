"""Full-size check (slow: `pytest -m slow`, ~1 min, ~5 GB): real 0.6B shapes, random weights.

weights/random-0.6b is re-made by q3ref's deterministic generator (preset 0.6b, seed 0) and must
hash to what transformers read when scripts/make_fullsize_fixture.py saved its embeddings.
"""

import hashlib
import json

import numpy as np
import pytest

import q3ref
from q3ref.checkpoint import make_checkpoint, preset_config
from conftest import FIXTURES, ROOT, assert_close

pytestmark = pytest.mark.slow
CKPT = ROOT / "weights/random-0.6b"
FX = FIXTURES / "transformers/fullsize-0.6b.npz"


@pytest.fixture(scope="module")
def model():
    meta = json.loads(FX.with_suffix(".json").read_text())
    if not (CKPT / "model.safetensors").is_file():
        make_checkpoint(CKPT, preset_config("0.6b"), seed=0, preset="0.6b")
    h = hashlib.sha256()
    with open(CKPT / "model.safetensors", "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    assert h.hexdigest() == meta["model.safetensors sha256"], (
        "the random 0.6b checkpoint differs from the one transformers ran: the generator changed "
        "(NumPy version?); re-run scripts/make_fullsize_fixture.py")
    return q3ref.Model(CKPT)


@pytest.mark.parametrize("case", ["query0", "doc1", "random300"])
def test_fullsize_matches_transformers(model, case):
    z = np.load(FX)
    ids = z[f"{case}/input_ids"]
    taps = model.trace(ids)
    # Layer by layer first, so a failure names the first layer that departs.
    for i in range(28):
        assert_close(f"{case}/layers.{i}.out[last]", taps[f"layers.{i}.out"][-1], z[f"{case}/layers_out_last"][i], rel=1e-5)
    assert_close(f"{case}/pooled", taps["pooled"], z[f"{case}/pooled"], rel=1e-5)
    assert_close(f"{case}/embedding", taps["embedding"], z[f"{case}/embedding"], rel=1e-5)
    emb256 = model.encode_ids([ids], dim=256)[0]
    assert_close(f"{case}/embedding_dim256", emb256, z[f"{case}/embedding_dim256"], rel=1e-5)
