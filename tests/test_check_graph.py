"""q3ref check MODEL.tflite: clean graphs pass every check; a graph exported with first-token
pooling (scripts/export_tflite.py --defect first_token_pool) fails exactly the pooling checks."""

import subprocess
import sys

import pytest

import q3ref
from q3ref.check import check_graph
from q3ref.formats import open_export
from conftest import FIXTURES, STRESS

GRAPHS = FIXTURES / "graphs"


@pytest.mark.parametrize("name", ["stress_fp32", "stress_dynamic_int8", "stress_fp16"])
def test_clean_graphs_pass(name):
    results = check_graph(open_export(GRAPHS / f"{name}.tflite"), q3ref.Model(STRESS).cfg)
    assert len(results) == 7 and all(ok for _, ok, _, _ in results), [r for r in results if not r[1]]


def test_first_token_pooling_is_caught():
    results = check_graph(open_export(GRAPHS / "defect_first_token_pool.tflite"), q3ref.Model(STRESS).cfg)
    failed = sorted(name for name, ok, _, _ in results if not ok)
    assert failed == ["left vs right padding agree", "the pooled token is the last real token"]


def test_cli_exit_status():
    r = subprocess.run([sys.executable, "-m", "q3ref", "check", str(GRAPHS / "defect_first_token_pool.tflite"),
                        "--weights", str(STRESS)], capture_output=True, text=True)
    assert r.returncode == 1 and "5 passed, 2 failed" in r.stdout and "fix:" in r.stdout
