"""The machine a benchmark ran on, recorded beside its results (one function for every script)."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path


def machine_info() -> dict:
    """Host, core count, CPU model, memory, load average now, Python and platform."""
    model = platform.processor() or platform.machine()
    mem_gib = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    return {"host": platform.node(), "cores": os.cpu_count(), "cpu_model": model,
            "memory_gib": mem_gib,
            "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "platform": platform.platform()}
