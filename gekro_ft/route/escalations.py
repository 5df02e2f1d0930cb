"""The escalation log: one JSON line per escalated request, in the OpenAI chat schema.

A line is the request's messages with the frontier's answer as the last (assistant) turn, so
``gekro-ft data validate`` reads the file as it is and a recipe can train on it. Beside the
messages, under one key the data stage keeps as row metadata (``gekro_route``): the local
answer, the reason, the failed checks, the confidence scores, the task and the time.

Each line is written with one ``write`` on a file opened for appending, then fsynced: POSIX
appends land whole at the end of the file, so concurrent requests (and concurrent routers on
one file) never interleave lines, and a crash leaves at most a torn last line, which a reader
skips. A whole-file rewrite (``gekro_ft.atomic``) would not scale with the log.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.errors import OutputError

KEY = "gekro_route"  # the row-metadata key; the data stage keeps unknown top-level keys as extras


def escalation_row(messages: list[dict[str, Any]], frontier_answer: str, local_answer: str | None,
                   decision: dict[str, Any], model: str | None) -> dict[str, Any]:
    # only the keys the OpenAI chat schema knows, so the row validates without findings
    keep = ("role", "content", "name", "tool_calls", "tool_call_id")
    turns = [{k: m[k] for k in keep if k in m} for m in messages]
    return {"messages": [*turns, {"role": "assistant", "content": frontier_answer}],
            KEY: {"local_answer": local_answer, "reason": decision.get("reason"),
                  "failed_checks": decision.get("failed_checks", []), "scores": decision.get("scores", {}),
                  "task": decision.get("task"), "frontier_model": model,
                  "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}}


class EscalationLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"{self.path.parent}: cannot create the escalation log's folder "
                              f"({e.strerror or e})") from None

    def append(self, row: dict[str, Any]) -> None:
        line = orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
