from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests/fixtures"
TINY = ROOT / "weights/q3ref-tiny"
STRESS = FIXTURES / "stress-checkpoint"


def cli(*args):
    """`python -m q3ref ARGS` in its own process: (returncode, stdout, stderr) as a CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "q3ref", *map(str, args)], capture_output=True, text=True)


def one_line_exit_2(r, match):
    """Bad input: one line on stderr naming `match`, exit 2, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert match in lines[0], lines[0]


def close_report(name, got, ref, rel=0.0, atol=0.0):
    """None when |got - ref| <= atol + rel * max|ref| everywhere, else a readable failure:
    the worst index with both values side by side, like llm.c's test_gpt2."""
    got, ref = np.asarray(got), np.asarray(ref)
    if got.shape != ref.shape:
        return f"{name}: shape {list(got.shape)} != reference {list(ref.shape)}"
    if not np.isfinite(got).all():
        return f"{name}: non-finite values at {np.argwhere(~np.isfinite(got))[:3].tolist()}"
    err = np.abs(got.astype(np.float64) - ref)
    limit = atol + rel * float(np.abs(ref).max(initial=0.0))
    if err.max(initial=0.0) <= limit:
        return None
    idx = np.unravel_index(np.argmax(err), err.shape)
    return (f"{name}: max abs error {err.max():.3g} > {limit:.3g} (atol {atol} + {rel} x max|ref|) "
            f"at {list(map(int, idx))}: q3ref {got[idx]:+.8g} vs reference {ref[idx]:+.8g}")


def assert_close(name, got, ref, rel=0.0, atol=0.0):
    msg = close_report(name, got, ref, rel, atol)
    assert msg is None, msg


@pytest.fixture(scope="session")
def tiny_model():
    import q3ref

    return q3ref.Model(TINY)
