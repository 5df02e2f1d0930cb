"""What one benchmark request measured: the unit every figure is computed from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gekro_ft.bench.stats import tpot


@dataclass(slots=True)
class RequestRecord:
    """One request. Times are ``time.perf_counter()`` seconds; latencies in seconds.

    ``ok`` means the stream ended with ``[DONE]`` and no error: only such requests
    enter the latency figures, the others are counted by ``error`` (their kind).
    """

    index: int  # position in its level, 0-based
    prompt: int = 0  # which prompt it sent (its number across the whole run)
    start: float = 0.0  # when the request was sent
    end: float = 0.0  # when its response ended (or failed)
    ok: bool = False
    status: int | None = None  # HTTP status, None when no response came
    error: str | None = None  # http_500, http_429, timeout, connect, transport, stream_error, incomplete_stream...
    detail: str | None = None  # a short, key-free description of the error
    ttft: float | None = None  # request sent -> first content chunk
    e2el: float | None = None  # request sent -> last content chunk
    itl: list[float] = field(default_factory=list)  # gaps between consecutive content chunks
    chunks: int = 0  # content chunks received
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_from: str | None = None  # "usage" (the server said) or "tokenizer" (we counted)
    text: list[str] | None = None  # generated text, kept only until tokens are counted

    @property
    def tpot(self) -> float | None:
        return tpot(self.e2el, self.ttft, self.output_tokens)

    def to_json(self, level: int, level_start: float) -> dict[str, Any]:
        ms = (lambda s: None if s is None else round(s * 1000, 3))
        tp = self.tpot
        return {"level": level, "index": self.index, "prompt": self.prompt,
                "sent_s": round(self.start - level_start, 6),
                "ok": self.ok, "status": self.status, "error": self.error, "detail": self.detail,
                "ttft_ms": ms(self.ttft), "tpot_ms": ms(tp), "e2el_ms": ms(self.e2el),
                "itl_ms": [round(g * 1000, 3) for g in self.itl], "chunks": self.chunks,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "tokens_from": self.tokens_from}
