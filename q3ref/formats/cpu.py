"""This machine's CPU as the runtime probes name it: runtimes pick kernels by CPU, so a probe's
verdict holds for the CPU it ran on (and is cached under its name)."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path


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
