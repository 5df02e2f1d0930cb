"""What one answered (or failed) row becomes on disk.

An OpenAI batch input gets OpenAI's batch output lines back (``id``, ``custom_id``,
``response: {status_code, request_id, body}``, ``error``), so whatever read OpenAI's
results reads ours; the body is the chat completion the engine returned. Other inputs get
a flat line: the row's key, line, answer text, finish reason and token counts.

Errors, for every kind of input, are lines of OpenAI's error file shape: ``custom_id``,
``response`` (the upstream status when there was one) and ``error`` with ``code``,
``message`` and ``line`` as in OpenAI's ``BatchError``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from gekro_ft.batch.inputs import BatchRow


@dataclass
class Result:
    row: BatchRow
    text: str | None = None
    body: dict[str, Any] | None = None  # the chat.completion object
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    request_id: str | None = None
    status: int | None = None  # the upstream HTTP status, when a request was made
    error: tuple[str, str] | None = None  # (code, message)

    @property
    def ok(self) -> bool:
        return self.error is None


def completion_body(model: str, text: str, finish_reason: str | None, input_tokens: int,
                    output_tokens: int) -> dict[str, Any]:
    """A chat.completion object for an answer that did not come over HTTP (the offline engine)."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "finish_reason": finish_reason or "stop", "logprobs": None,
                                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens}}


def answer_record(result: Result, openai_batch: bool) -> dict[str, Any]:
    row = result.row
    if openai_batch:
        return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": row.id,
                "response": {"status_code": 200, "request_id": result.request_id or uuid.uuid4().hex,
                             "body": result.body},
                "error": None}
    return {"id": row.id, "line": row.line, "index": row.index, "text": result.text,
            "finish_reason": result.finish_reason, "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens}


def error_record(result: Result) -> dict[str, Any]:
    row = result.row
    code, message = result.error or ("error", "unknown")
    response = ({"status_code": result.status, "request_id": result.request_id, "body": None}
                if result.status is not None else None)
    return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": row.id, "response": response,
            "error": {"code": code, "message": message, "line": row.line, "param": None}}
