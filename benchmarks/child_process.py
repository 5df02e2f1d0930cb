"""Run a benchmark script again in a fresh interpreter and collect what it measured.

Each side of a comparison runs in its own process so that neither inherits the other's
imports, caches or allocator state, and so that its peak RSS is its own. Standard
library only: a parent that imports little keeps the children's ``ru_maxrss`` honest
(Linux carries a process's peak RSS across ``exec``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def run_python(script: str, args: list[str], env: dict | None = None) -> tuple[dict, float, os.struct_rusage]:
    """Run ``script`` with ``args``: the last line it prints (JSON), wall seconds, its rusage."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE, env=env)
    stdout = proc.stdout.read()
    proc.stdout.close()
    # wait4 reaps this one child and returns its own rusage (ru_maxrss in KiB on Linux);
    # RUSAGE_CHILDREN would be the largest of all children so far
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait again
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed with exit code {proc.returncode}")
    return json.loads(stdout.decode().strip().splitlines()[-1]), seconds, usage
