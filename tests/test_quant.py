"""q3ref's int8 quantization against the int8 payload and scales litert-torch wrote (array_equal)."""

import numpy as np
import pytest

import q3ref
from q3ref.litert_graph import Graph
from q3ref.quant import check_graph_int8, int8_per_channel
from conftest import FIXTURES, STRESS, TINY

INT8_GRAPHS = {"stress_dynamic_int8": STRESS, "stress_weight_only_int8": STRESS,
               "defect_gate_up_swap_2_int8": STRESS, "tiny_dynamic_int8": TINY}


@pytest.mark.parametrize("name", list(INT8_GRAPHS))
def test_int8_payload_is_bit_identical(name):
    model = q3ref.Model(INT8_GRAPHS[name])
    rows = check_graph_int8(Graph(FIXTURES / f"graphs/{name}.tflite"), model.weights, model.cfg)
    L = model.cfg.num_hidden_layers
    assert len(rows) == 1 + 5 * L  # the embedding table and every FULLY_CONNECTED weight
    off = [r for r in rows if not (r["payload_equal"] and r["scales_equal"])]
    if name.startswith("defect_gate_up_swap_2"):
        # the planted swap is visible in the weights too: exactly layer 2's gate and up differ
        assert sorted(r["weight"] for r in off) == ["layers.2.gate", "layers.2.up"]
    else:
        assert off == [], off


def test_int8_rounding_and_error():
    w = np.array([[1.0, -0.5, 0.25, 127.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    q, s, err = int8_per_channel(w)
    assert q.dtype == np.int8 and q[0].tolist() == [1, 0, 0, 127] and q[1].tolist() == [0, 0, 0, 0]
    assert s.tolist() == [1.0, 0.0] and err == 0.5  # -0.5 rounds half to even: 0, off by 0.5
