"""One streamed request to an OpenAI-compatible endpoint, timed chunk by chunk.

The HTTP client is aiohttp (its C HTTP parser), as vLLM's own benchmark uses: against
httpx on the same server and load it took 0.8 instead of 2.2 CPU-milliseconds a
16-token streamed request, and a load generator must never be what limits the load.

The response is read as server-sent events (``data:`` lines, a blank line ends an
event, ``[DONE]`` ends the stream) straight from the byte stream; each event is stamped
with the time its bytes arrived. A content chunk is one whose delta carries text
(``content``, ``reasoning_content``) or tool calls: vLLM and the CPU engine send a
role-only chunk first, which is not a token and does not stop the TTFT clock.

Every failure ends as a record with an error kind, never as an exception: HTTP
statuses (``http_500``...), ``connect``, ``timeout`` (the whole request, ``--timeout``),
``transport`` (connection lost mid-stream), ``stream_error`` (an error event in the
stream), ``bad_event`` (unparseable JSON), ``incomplete_stream`` (no ``[DONE]``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from gekro_ft.bench.record import RequestRecord

_DETAIL_CHARS = 300


class StreamClient:
    """Sends bench requests over one aiohttp session (a pooled connection per request in flight)."""

    def __init__(self, base_url: str, endpoint: str, model: str, *, api_key: str | None,
                 max_tokens: int, timeout: float, extra_body: dict[str, Any] | None = None):
        self.chat = endpoint == "chat"
        self.base_url = base_url
        self.url = base_url + ("/chat/completions" if self.chat else "/completions")
        self.model, self.max_tokens, self.timeout = model, max_tokens, timeout
        self.extra_body = extra_body or {}
        self._key = api_key
        # identity: a compressing proxy would otherwise buffer the stream and hide the timing
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream",
                        "Accept-Encoding": "identity"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made inside the running event loop, as aiohttp wants
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.timeout), auto_decompress=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def body(self, prompt: dict[str, Any]) -> bytes:
        return orjson.dumps({"model": self.model, **prompt, "max_tokens": self.max_tokens, "stream": True,
                             "stream_options": {"include_usage": True}, **self.extra_body})

    async def get(self, path: str, timeout: float) -> tuple[int, bytes]:
        """A plain GET beside the load (``/models``) with the same key: (status, body)."""
        auth = {k: v for k, v in self.headers.items() if k == "Authorization"}
        async with self.session.get(self.base_url + path, headers=auth, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            return resp.status, await resp.read()

    async def send(self, index: int, prompt: dict[str, Any]) -> RequestRecord:
        """Send one request and time it; failures come back as records with ``error`` set."""
        rec = RequestRecord(index)
        content = self.body(prompt)
        rec.start = time.perf_counter()
        try:
            await self._stream(rec, content)
        except asyncio.TimeoutError:  # the session's total timeout: connect, send and the whole stream
            self._fail(rec, "timeout", f"no complete answer within {self.timeout:g} s")
        except aiohttp.ClientConnectorError as e:
            self._fail(rec, "connect", str(e) or type(e).__name__)
        except (aiohttp.ClientError, OSError) as e:  # connection lost or refused mid-request
            self._fail(rec, "transport", f"{type(e).__name__}: {e}")
        rec.end = time.perf_counter()
        return rec

    def _fail(self, rec: RequestRecord, kind: str, detail: str) -> None:
        rec.ok, rec.error = False, kind
        if self._key:
            detail = detail.replace(self._key, "***")
        rec.detail = detail[:_DETAIL_CHARS]

    async def _stream(self, rec: RequestRecord, content: bytes) -> None:
        async with self.session.post(self.url, data=content, headers=self.headers, allow_redirects=False) as resp:
            rec.status = resp.status
            if resp.status != 200:
                return self._fail(rec, f"http_{resp.status}", error_message(await resp.content.read(4096)))
            events = EventStream(rec, self.chat)
            async for raw in resp.content.iter_any():
                events.feed(raw, time.perf_counter())
        events.end(time.perf_counter())
        if events.error:
            self._fail(rec, *events.error)


class EventStream:
    """One response's server-sent events, fed as bytes arrive, timing ``rec``'s content chunks."""

    __slots__ = ("rec", "chat", "tail", "data", "last", "parts", "done", "error")

    def __init__(self, rec: RequestRecord, chat: bool):
        self.rec, self.chat = rec, chat
        self.tail = b""  # an unfinished line
        self.data: list[bytes] = []  # data lines of the unfinished event
        self.last: float | None = None
        self.parts: list[str] = []
        self.done = False
        self.error: tuple[str, str] | None = None

    def feed(self, raw: bytes, now: float) -> None:
        lines = (self.tail + raw).split(b"\n")
        self.tail = lines.pop()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:  # a blank line ends the event
                if self.data:
                    self.event(b"\n".join(self.data), now)
                    self.data = []
            elif line.startswith(b"data:"):
                self.data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            # event:, id:, retry: and ':' comments carry nothing an OpenAI stream uses

    def end(self, now: float) -> None:
        """The stream closed: dispatch a last event that lacked its blank line, then judge."""
        self.feed(b"\n\n" if self.tail else b"\n", now)
        rec = self.rec
        if self.error is None and not self.done:
            self.error = ("incomplete_stream", f"the stream ended without [DONE] after {rec.chunks} content chunks")
        if self.error is not None:
            return
        rec.ok = True
        rec.e2el = (self.last if self.last is not None else now) - rec.start
        if rec.output_tokens is None or rec.input_tokens is None:
            rec.text = self.parts  # counted with the tokenizer once the level is over

    def event(self, payload: bytes, now: float) -> None:
        if self.done or self.error:
            return
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.error = ("bad_event", f"not JSON: {payload[:100]!r}")
            return
        choices = obj.get("choices")
        if choices:
            c = choices[0]
            if self.chat:
                delta = c.get("delta") or {}
                piece = delta.get("content") or delta.get("reasoning_content") or ""
                token = piece or delta.get("tool_calls")
            else:
                piece = c.get("text") or ""
                token = piece
            if token:
                rec = self.rec
                if self.last is None:
                    rec.ttft = now - rec.start
                else:
                    rec.itl.append(now - self.last)
                self.last = now
                rec.chunks += 1
                self.parts.append(piece)
        elif obj.get("error"):
            self.error = ("stream_error", error_message(payload))
            return
        usage = obj.get("usage")
        if usage:
            if usage.get("completion_tokens") is not None:
                self.rec.output_tokens = int(usage["completion_tokens"])
                self.rec.tokens_from = "usage"
            if usage.get("prompt_tokens") is not None:
                self.rec.input_tokens = int(usage["prompt_tokens"])


def error_message(raw: bytes) -> str:
    """The message of an OpenAI error body (``{"error": {"message"}}``), FastAPI's
    ``{"detail"}``, or the start of whatever came back."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:_DETAIL_CHARS].decode("utf-8", "replace").strip() or "empty body"
    if isinstance(obj, dict):
        inner = obj.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if obj.get("detail"):
            return str(obj["detail"])
    return raw[:_DETAIL_CHARS].decode("utf-8", "replace")
