"""Recorded endpoint answers: pay an API once per eval set, replay it for free afterwards.

A recording is a JSONL file, one answer per line, keyed by a hash of what decides the
answer: the model, the messages and the generation settings. Lines are appended and
flushed as answers arrive, so an interrupted run keeps what it paid for; a torn last
line (a killed process) is skipped on load. The file is meant to be committed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson


def request_key(model: str, messages: list[dict], settings: dict[str, Any]) -> str:
    canonical = orjson.dumps({"model": model, "messages": messages, "settings": settings},
                             option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class Recording:
    """Answers by key, loaded from and appended to ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.answers: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        if self.path.exists():
            for line in self.path.read_bytes().splitlines():
                if not line.strip():
                    continue
                try:
                    rec = orjson.loads(line)
                    self.answers[rec["key"]] = rec
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    self.torn_lines += 1

    def get(self, key: str) -> dict[str, Any] | None:
        return self.answers.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Append one successful answer (failures are never recorded: a rerun retries them)."""
        rec = {"key": key, **record}
        self.answers[key] = rec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(orjson.dumps(rec) + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def __len__(self) -> int:
        return len(self.answers)
