"""A batch job's rows: what each one asks, under the key its answer is filed by.

Three kinds of input, told apart by the first row (``--input-kind`` overrides):

- ``openai-batch``: OpenAI's Batch API input file, one request per line
  (``custom_id``, ``method``, ``url``, ``body``); the key is ``custom_id``. Only
  ``POST /v1/chat/completions`` is served; ``body.model`` names the API's model and is
  replaced by the model this job runs on.
- ``prompts``: JSONL rows ``{"prompt": "...", "id": ...}``, or a ``.txt`` file with one
  prompt a line.
- ``dataset``: any schema the data stage reads; the prompt is the conversation up to its
  last assistant turn (:meth:`Conversation.prompt_messages`), the key the row's ``id``
  field, else its row number (as eval numbers its examples).

A row that cannot be asked (a malformed line, a missing or duplicate key, an unsupported
URL) comes back with ``error`` set and its line, for the errors file; it never stops the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from gekro_ft.errors import BatchError

KINDS = ("openai-batch", "prompts", "dataset")
CHAT_URL = "/v1/chat/completions"


@dataclass(slots=True)
class BatchRow:
    index: int  # 0-based row number
    line: int | None  # 1-based line number (JSONL and text files)
    id: str | None  # the key its answer is filed by; None when the row has none
    body: dict[str, Any] | None  # the chat request, less ``model``; None when it cannot be sent
    error: tuple[str, str] | None = None  # (code, message)

    @property
    def where(self) -> str:
        return f"line {self.line}" if self.line is not None else f"row {self.index + 1}"


def detect_kind(path: str | Path) -> str:
    """The kind of input ``path`` holds, from its first readable row."""
    from gekro_ft.data.schemas import match_schema
    from gekro_ft.data.source import iter_rows

    path = Path(path)
    if path.suffix.lower() == ".txt":
        return "prompts"
    for raw in islice(iter_rows(path), 50):
        if isinstance(raw.value, dict):
            if "custom_id" in raw.value and "body" in raw.value:
                return "openai-batch"
            if isinstance(raw.value.get("prompt"), str) and match_schema(raw.value) is None:
                return "prompts"
            return "dataset"
    return "dataset"


def read_batch_rows(path: str | Path, kind: str | None = None, schema: str | None = None) -> Iterator[BatchRow]:
    """Every row of ``path`` in file order, streamed; a key seen before marks the row an error."""
    path = Path(path)
    kind = kind or detect_kind(path)
    if kind not in KINDS:
        raise BatchError(f"unknown input kind {kind!r}; choose one of {', '.join(KINDS)}")
    rows = {"openai-batch": _openai_batch, "prompts": _prompts, "dataset": _dataset}[kind](path, schema)
    first_seen: dict[str, str] = {}
    for row in rows:
        if row.id is not None and row.error is None:
            if row.id in first_seen:
                row.body, row.error = None, ("duplicate_id", f"duplicate id {row.id!r} (first on {first_seen[row.id]})")
            else:
                first_seen[row.id] = row.where
        yield row


def _openai_batch(path: Path, schema: str | None) -> Iterator[BatchRow]:
    from gekro_ft.data.source import iter_rows

    for raw in iter_rows(path):
        row = BatchRow(raw.index, raw.line, None, None)
        v = raw.value
        if raw.error is not None:
            row.error = ("invalid_json", raw.error)
        elif not isinstance(v, dict):
            row.error = ("invalid_request", "the line is not a JSON object")
        elif not isinstance(v.get("custom_id"), str) or not v["custom_id"]:
            row.error = ("missing_custom_id", "custom_id must be a non-empty string")
        else:
            row.id = v["custom_id"]
            body = v.get("body")
            if v.get("method", "POST") != "POST" or v.get("url") != CHAT_URL:
                row.error = ("unsupported_url", f"only POST {CHAT_URL} is served here, not "
                                                f"{v.get('method')} {v.get('url')}")
            elif not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
                row.error = ("invalid_body", "body must be an object with a non-empty 'messages' list")
            else:
                row.body = {k: x for k, x in body.items() if k != "model"}
        yield row


def _prompts(path: Path, schema: str | None) -> Iterator[BatchRow]:
    if path.suffix.lower() == ".txt":
        yield from _text_prompts(path)
        return
    from gekro_ft.data.source import iter_rows

    for raw in iter_rows(path):
        v = raw.value
        row = BatchRow(raw.index, raw.line, str(raw.index), None)
        if raw.error is not None:
            row.error = ("invalid_json", raw.error)
        elif not isinstance(v, dict) or not isinstance(v.get("prompt"), str) or not v["prompt"].strip():
            row.error = ("no_prompt", "the row has no non-empty 'prompt' string")
        else:
            row.id = str(v.get("id", raw.index))
            row.body = {"messages": [{"role": "user", "content": v["prompt"]}]}
        yield row


def _text_prompts(path: Path) -> Iterator[BatchRow]:
    index = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, text in enumerate(f, 1):
                if text.strip():
                    yield BatchRow(index, lineno, str(index), {"messages": [{"role": "user", "content": text.rstrip("\n")}]})
                    index += 1
    except OSError as e:
        from gekro_ft.errors import InputFileError

        raise InputFileError(path, f"cannot read: {e.strerror or e}") from e


def _dataset(path: Path, schema: str | None) -> Iterator[BatchRow]:
    from gekro_ft.data.detect import resolve_schema
    from gekro_ft.data.rows import read_rows

    schema, _ = resolve_schema(path, schema)
    for r in read_rows(path, schema):
        row = BatchRow(r.index, r.line, None, None)
        if not r.readable:
            first = next(f for f in r.findings if f.severity.value == "error")
            row.error = (first.code.replace("-", "_"), first.message)
            yield row
            continue
        messages = r.conv.prompt_messages()
        row.id = str(r.conv.extra.get("id", r.index))
        if not any(m["role"] in ("user", "tool") for m in messages):
            row.error = ("no_prompt", "no user turn before the last assistant turn")
        else:
            row.body = {"messages": messages, **({"tools": r.conv.tools} if r.conv.tools else {})}
        yield row


def count_rows(path: str | Path, kind: str | None = None, schema: str | None = None) -> int:
    """How many rows ``path`` holds (every line, the bad ones too): the corpus an estimate scales to."""
    return sum(1 for _ in read_batch_rows(path, kind, schema))
