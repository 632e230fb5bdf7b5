"""This machine's CPU as the runtime probes name it: runtimes pick kernels by CPU, so a probe's
verdict holds for the CPU it ran on (and is cached under its name)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

CACHE = Path(os.environ.get("Q3REF_CACHE", Path.home() / ".cache" / "q3ref"))  # one JSON file of verdicts per format


def cpu_name() -> str:
    """/proc/cpuinfo's model name ("AMD EPYC", "Intel(R) Xeon(R) ...")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_id() -> str:
    """The CPU's model name and its ISA flags, hashed: the kernels a runtime picks depend on both."""
    flags = ""
    try:
        flags = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        pass
    return f"{cpu_name()} [{hashlib.sha1(flags.encode()).hexdigest()[:8]}]"


def cached(file: str, key: str, probe):
    """probe()'s verdict (JSON-able), kept in CACHE / file under `key`: the key names the runtime's
    version, this CPU (cpu_id) and the probe set, so any of them changing probes again."""
    path = CACHE / file
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):  # a cache file some other writer left: probe again
        cache = {}
    if key not in cache:
        cache[key] = probe()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.partial")
            tmp.write_text(json.dumps(cache, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache only costs a probe next time
    return cache[key]
