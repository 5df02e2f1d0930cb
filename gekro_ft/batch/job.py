"""A job's output and errors files: appended in whole chunks, read back to resume.

Answers arrive one by one but reach the disk a chunk at a time: one ``write`` of complete
lines, then ``fsync``. A kill between chunks loses only the answers not yet written, which
a rerun asks again. A kill (or a power cut) in the middle of a write can leave a torn last
line; opening the job cuts the file back to its last newline, so no torn line survives a
resume, and every line in the output is a whole answer that is never asked again.

The errors file holds the rows that failed in the latest run. Every row not in the output
is tried again on a rerun (an upstream error may have passed), so the errors file starts
empty with each run instead of piling up answers to questions that were retried.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from gekro_ft.atomic import check_output
from gekro_ft.errors import OutputError


def errors_path(output: str | Path) -> Path:
    """Where a job's errors go: ``OUT.errors.jsonl`` beside ``OUT.jsonl``."""
    output = Path(output)
    stem = output.name.removesuffix(".jsonl")
    return output.with_name(f"{stem}.errors.jsonl")


def answer_key(record: dict[str, Any]) -> str | None:
    """The key an output line is filed by: ``custom_id`` (OpenAI batch output) or ``id``."""
    key = record.get("custom_id", record.get("id"))
    return None if key is None else str(key)


def read_lines(path: str | Path) -> Iterator[dict[str, Any]]:
    """The whole JSON lines of a job file (a torn last line is not one)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue


class JobFiles:
    """The output (resumed) and errors (restarted) files of one run of a job."""

    def __init__(self, output: str | Path, inputs: tuple[str | Path, ...] = (), flush_rows: int = 16,
                 flush_s: float = 2.0):
        self.output = check_output(output, inputs)
        self.errors = check_output(errors_path(self.output), inputs)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self.torn_bytes = _cut_torn_tail(self.output)
        self.done: set[str] = {k for k in map(answer_key, read_lines(self.output)) if k is not None}
        self.done_before = len(self.done)
        self._pending: list[bytes] = []
        self._pending_errors: list[bytes] = []
        self._last_flush = time.monotonic()
        self.written = self.failed = 0
        self._out: BinaryIO | None = None
        self._err: BinaryIO | None = None

    def __enter__(self) -> JobFiles:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._out = open(self.output, "ab")
            self._err = open(self.errors, "wb")
        except OSError as e:
            raise OutputError(f"{e.filename}: cannot open for writing: {e.strerror}") from e
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.flush()
        finally:
            for f in (self._out, self._err):
                if f is not None:
                    f.close()

    def answer(self, key: str, record: dict[str, Any]) -> None:
        self.done.add(key)
        self._pending.append(orjson.dumps(record) + b"\n")
        self._maybe_flush()

    def error(self, record: dict[str, Any]) -> None:
        self._pending_errors.append(orjson.dumps(record) + b"\n")
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if (len(self._pending) + len(self._pending_errors) >= self.flush_rows
                or time.monotonic() - self._last_flush >= self.flush_s):
            self.flush()

    def flush(self) -> None:
        """Write what is pending as one chunk per file, and make it durable."""
        for f, pending, counter in ((self._out, self._pending, "written"), (self._err, self._pending_errors, "failed")):
            if not pending or f is None:
                continue
            try:
                f.write(b"".join(pending))  # one write of whole lines: a kill tears at most the last
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise OutputError(f"{f.name}: write failed: {e.strerror or e}") from e
            setattr(self, counter, getattr(self, counter) + len(pending))
            pending.clear()
        self._last_flush = time.monotonic()


def _cut_torn_tail(path: Path) -> int:
    """Cut ``path`` back to its last newline; the bytes removed (0 when it ends whole)."""
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        pos, keep = size, 0
        while pos > 0:  # look back in blocks: a torn answer can be longer than one
            start = max(0, pos - 65536)
            f.seek(start)
            block = f.read(pos - start)
            nl = block.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        if keep == size:
            return 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep
