"""One JSONL file on every free core: byte ranges cut at line starts, each handled by a worker
process, the results handed back in file order.

The data checks and conversions run in Python (with numpy per block of lines), so one process
uses one core; a large file is cut into ranges that shrink towards its end (:func:`steps`), so
that the workers finish together and progress moves as each range is done. A worker's rows
and lines count from its range's start: :func:`lines_in` says how many lines a range holds,
so the caller can offset the next range's numbers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

from gekro_ft.data.source import line_spans

# Below this a range is not worth a worker: a spawned one (a fresh interpreter importing numpy,
# where forking is not safe) costs about 0.5 s of CPU, and the block path checks a 32 MiB range
# (about 40,000 rows) in well under a second; so a file under 64 MiB is handled in the calling
# process
MIN_CHUNK_BYTES = 32 << 20
# The largest range: a Ctrl-C waits for the ranges being worked on (a worker is not stopped
# part way), and progress moves as each one ends; 256 MiB is about 2 s of work
MAX_CHUNK_BYTES = 256 << 20

Span = tuple[int, int]


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def free_cores() -> int:
    """The usable cores that other work is not already using. A worker on a busy core only
    adds its start: on 2 cores with a load of 3, 200k rows took 4.6 s in workers against 2.7 s
    in one process.

    Measured, not sampled: the idle time of the usable cores over :data:`IDLE_WINDOW_S`
    (Linux's ``/proc/stat``; this process sleeps meanwhile, so it is not counted). Two
    readings were dropped: the one-minute load average (``make -l``'s) still counts the
    command that ran just before (a validate before a convert) for a minute after it ended;
    ``/proc/loadavg``'s runnable count is one instant, and a kernel thread writing back the
    last job's output at that instant kept a 1M-row convert in one process twice in a row."""
    cores = usable_cores()
    idle = _idle_cores(IDLE_WINDOW_S)
    if idle is None:
        try:
            idle = cores - os.getloadavg()[0]
        except OSError:  # no load average on this platform
            return cores
    return max(1, min(cores, round(idle)))


IDLE_WINDOW_S = 0.1


def _idle_cores(window: float) -> float | None:
    """How many of the usable cores were idle over the next ``window`` seconds (Linux), or
    None where ``/proc/stat`` cannot be read."""
    import time

    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    before = _cpu_times(usable)
    if before is None:
        return None
    time.sleep(window)
    after = _cpu_times(usable)
    if after is None:
        return None
    idle = 0.0
    for cpu, (total, quiet) in after.items():
        if cpu in before and total > before[cpu][0]:
            idle += (quiet - before[cpu][1]) / (total - before[cpu][0])
    return idle


def _cpu_times(usable: set[int] | None) -> dict[int, tuple[int, int]] | None:
    """Per CPU: (all jiffies, idle + iowait jiffies) from ``/proc/stat``."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and (usable is None or int(name[3:]) in usable):
            values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
            out[int(name[3:])] = (sum(values), values[3] + values[4])
    return out or None


class Cut(NamedTuple):
    spans: list[Span]  # the byte ranges, in file order
    workers: int  # the free cores they were cut for


def spans_for(path: str | Path) -> Cut | None:
    """The byte ranges to handle ``path`` in and the workers for them, or None to handle it
    whole in this process (fewer than two free cores, a gzipped or non-JSONL file, or one too
    small to be worth the workers). Either way the results are the same; only the time differs."""
    size = _size(path)
    if usable_cores() < 2 or size < 2 * MIN_CHUNK_BYTES:  # before measuring the cores
        return None
    # no more workers than ranges worth one (a 100 MiB file: 3, however many cores are free)
    cores = min(free_cores(), size // MIN_CHUNK_BYTES)
    spans = line_spans(path, steps(size, cores)) if cores > 1 else None
    return Cut(spans, cores) if spans else None


def steps(size: int, workers: int) -> Iterator[int]:
    """The ranges' lengths: each a ``2 × workers``-th of what is left (as these lengths count
    it; a cut moves on to the next line's start), at most :data:`MAX_CHUNK_BYTES` and down to
    an eighth of :data:`MIN_CHUNK_BYTES` (4 MiB, a few thousand rows). Equal ranges (four per
    core) left one worker alone at the end for up to a range's time, about 0.5 s of a 5 s
    validate of 1M rows on 2 cores; shrinking ones end within a small range of each other."""
    smallest = max(MIN_CHUNK_BYTES // 8, 1)
    while size > 0:
        step = min(max(size // (2 * workers), smallest), MAX_CHUNK_BYTES)
        yield step
        size -= step


def _size(path: str | Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def in_workers(work: Callable[..., Any], path: str, cut: Cut,
               on_bytes: Callable[[int], None] | None, args: tuple = (), *,
               same_hash_seed: bool = False, on_result: Callable[[Any], None] | None = None) -> list[Any]:
    """``work(path, span, None, *args)`` for every span of ``cut`` in its worker processes; the
    results in span order. ``same_hash_seed``: the workers hash strings alike (their results are compared).
    ``on_result``: called with each result in span order as soon as it and those before it are
    in, while the workers go on with the later spans."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = start_method()
    context = multiprocessing.get_context(method)
    # forked workers hash as this process does; spawned ones are given one seed
    with _one_hash_seed() if same_hash_seed and method == "spawn" else nullcontext(), \
            ProcessPoolExecutor(min(cut.workers, len(cut.spans)), mp_context=context,
                                initializer=_leave_signals_to_the_parent) as pool:
        spans = cut.spans
        with warnings.catch_warnings():
            # Python 3.12+ warns at a fork whenever the process has another OS thread; numpy's
            # OpenBLAS keeps one, and stops it around a fork itself (pthread_atfork)
            warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
            futures = [pool.submit(work, path, span, None, *args) for span in spans]
        results = []
        try:
            for span, fut in zip(spans, futures):
                results.append(fut.result())
                if on_result is not None:
                    on_result(results[-1])
                if on_bytes is not None:
                    on_bytes(span[1] - span[0])
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return results


def start_method() -> str:
    """``fork`` where it is safe: on Linux, while this process runs no other Python thread (a
    lock that another thread held at the fork stays held in the child, and can hang it).
    Native threads are not counted: numpy's OpenBLAS thread stops itself around a fork, and
    the workers run no BLAS. A forked worker starts in milliseconds with this process's
    modules and hash seed; a spawned one starts an interpreter and imports numpy and the data
    modules first, 0.3 s of a 5 s validate of 1M rows on 2 cores. Elsewhere, ``spawn``."""
    import sys
    import threading

    return "fork" if sys.platform == "linux" and threading.active_count() == 1 else "spawn"


def _leave_signals_to_the_parent() -> None:
    """A Ctrl-C reaches the whole process group: the parent stops, cancels what has not
    started and says so once; a worker printing its own traceback would only add noise. A
    forked worker also inherits the CLI's SIGTERM and SIGHUP handlers (they raise in the
    parent to stop it cleanly); in a worker, the default (end) is what is wanted."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)


@contextmanager
def _one_hash_seed() -> Iterator[None]:
    """Workers started inside share one ``PYTHONHASHSEED`` (a fresh random one)."""
    import random

    before = os.environ.get("PYTHONHASHSEED")
    os.environ["PYTHONHASHSEED"] = str(random.SystemRandom().randrange(1, 2**32))
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONHASHSEED"]
        else:
            os.environ["PYTHONHASHSEED"] = before


def lines_in(path: str | Path, span: Span) -> int:
    """Lines in the span, blank ones included: what the next span's line numbers start after.
    (Every span but the file's last ends just after a newline; the last's count is not used.)"""
    n, left = 0, span[1] - span[0]
    with open(path, "rb") as f:
        f.seek(span[0])
        while left > 0 and (block := f.read(min(left, 1 << 20))):
            n += block.count(b"\n")
            left -= len(block)
    return n
