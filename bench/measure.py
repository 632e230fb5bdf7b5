"""Shared by the full-size benchmarks: one q3ref command in its own process, timed, with its own
peak RSS (q3ref.bench.peak_rss_gb: VmHWM; RUSAGE_CHILDREN would report the largest of all the
children so far, and even the child's own ru_maxrss starts at this process's peak); and the
results file."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = ("import sys; from q3ref.cli import main; from q3ref.bench import peak_rss_gb; rc = main(sys.argv[1:]); "
         "print('peak_rss_gb', peak_rss_gb(), file=sys.stderr); sys.exit(rc)")


def q3ref_child(args):
    """`python -m q3ref ARGS` as its own process -> (wall seconds, peak RSS in GB, stdout)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        sys.exit(f"q3ref {args[0]} failed: {r.stderr[-2000:]}")
    rss_gb = float(next(line.split()[1] for line in r.stderr.splitlines() if line.startswith("peak_rss_gb")))
    return seconds, rss_gb, r.stdout


def append_results(text):
    print(text)
    with open(ROOT / "bench/RESULTS.md", "a") as fh:
        fh.write(text)
