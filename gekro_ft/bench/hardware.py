"""A description of the machine a bench ran on, for the report and the cost model."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def describe_host(gpu: str | None = None) -> dict[str, Any]:
    """CPU, memory and GPUs of this machine. ``gpu`` names the server's GPU when the server
    runs elsewhere (the bench client's machine then says nothing about it)."""
    gpus = _nvidia_gpus()
    return {
        "described": "the machine the bench ran on" + ("" if gpu is None else "; GPU from --gpu"),
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "memory_gib": _memory_gib(),
        "gpu": gpu or (gpus[0] if gpus else None),
        "gpu_count": (1 if gpu else len(gpus)),
        "gpus": gpus,
        "platform": platform.platform(), "python": platform.python_version(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _nvidia_gpus() -> list[str]:
    """``NAME (MEMORY)`` per GPU from nvidia-smi; empty without it (torch is not imported for this)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        res = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if res.returncode != 0:
        return []
    return [" ".join(f"{name.strip()} ({mem.strip()})".split()) for name, mem in
            (line.split(",", 1) for line in res.stdout.splitlines() if "," in line)]
