"""The router's two upstreams over HTTP (httpx): bounded retries with exponential backoff on
what a retry can fix (429, 5xx, timeouts, refused connections), a timeout per attempt, and
keys read from the environment at start and sent only where :mod:`gekro_ft.keys` allows.

A failure that survives its retries is an :class:`UpstreamFailure` saying whether the request
itself was wrong (``client_error``: a 4xx other than 408/429, passed back to the client as
it is) or the upstream is unusable now (the router's fallback applies). Messages never carry a
key: a careless server may echo the Authorization header, so it is scrubbed out.

An upstream is not trusted either: a whole answer is read a chunk at a time and given up past
``max_answer_bytes`` (``too_large``), and one that is not a chat completion as the router reads
it (:class:`ChatAnswer`: choices, message, content, usage, logprobs) is a ``bad_answer`` saying
what was wrong. A streamed answer's lines are bounded the same way (:func:`sse_lines`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gekro_ft.errors import RouteError
from gekro_ft.keys import check_transport, may_send, public_url
from gekro_ft.route.profile import Upstream
from gekro_ft.serve.openai_api import param_of

RETRYABLE = {408, 429, 500, 502, 503, 504}
OPENAI_URL = "https://api.openai.com/v1"
REFERENCE_URL = "http://reference.invalid/v1"  # never resolved: requests go to the in-process app
# A whole answer: 32k tokens with their log-probabilities are ~3 MB; an error body is only quoted
MAX_ANSWER_BYTES = 32 * 2**20
MAX_ERROR_BYTES = 64 * 2**10
MAX_LINE_BYTES = 2**20  # one streamed chunk: a token's text and its top log-probabilities
BAD_ANSWER = "bad_answer"  # the kind of an answer that is not what the router reads


class _Lax(BaseModel):
    model_config = ConfigDict(extra="allow")  # only what the router reads is checked


class _Entry(_Lax):
    token: str
    logprob: float


class _Logprobs(_Lax):
    content: list[_Entry] | None = None


class _Message(_Lax):
    content: str | None = None


class _Choice(_Lax):
    message: _Message
    logprobs: _Logprobs | None = None
    finish_reason: str | None = None


class _Usage(_Lax):
    # negative tokens would be negative dollars, and a Prometheus counter refuses to go down
    prompt_tokens: int | None = Field(None, ge=0)
    completion_tokens: int | None = Field(None, ge=0)


class ChatAnswer(_Lax):
    """A non-streamed chat completion, as far as the router reads it."""

    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _Delta(_Lax):
    content: str | None = None


class _ChunkChoice(_Lax):
    delta: _Delta | None = None


class ChatChunk(_Lax):
    """One streamed chunk, as far as the relay reads it (an in-band error has no choices)."""

    choices: list[_ChunkChoice] | None = None
    usage: _Usage | None = None


def malformed(data: Any, model: type[BaseModel]) -> str | None:
    """What is wrong with ``data`` (parsed JSON) as ``model``, the place named as OpenAI names
    parameters (``choices[0].message.content: ...``), or None when nothing is."""
    if not isinstance(data, dict):
        return "not a JSON object"
    try:
        model.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = param_of(first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return None


class UpstreamFailure(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None, body: bytes | None = None):
        """``kind``: timeout, connection, http_NNN, too_large or :data:`BAD_ANSWER`."""
        super().__init__(message)
        self.kind, self.message, self.status, self.body = kind, message, status, body

    @property
    def client_error(self) -> bool:
        return self.status is not None and 400 <= self.status < 500 and self.status not in RETRYABLE


@dataclass
class Target:
    name: str  # "local" or "frontier"
    url: str
    model: str | None
    key_env: str | None


def resolve(name: str, up: Upstream, environ: dict[str, str] | None = None) -> Target:
    """Where an upstream is and which key goes to it; a RouteError when a named key is missing
    or may not be sent there."""
    env = os.environ if environ is None else environ
    if up.url.startswith("reference:"):  # the simulated frontier, served in this process: no key
        return Target(name, REFERENCE_URL, up.model or up.url, None)
    if up.url.startswith("openai:"):
        url, key_env = env.get("OPENAI_BASE_URL", OPENAI_URL).rstrip("/"), up.api_key_env or "OPENAI_API_KEY"
        explicit = True  # openai: names OpenAI, OPENAI_BASE_URL is where the user put it
    else:
        url, key_env, explicit = up.url, up.api_key_env, True  # named in the profile for this upstream
    if key_env and not may_send(key_env, url, explicit):
        key_env = None
    if key_env:
        if not env.get(key_env):
            raise RouteError(f"{name}: the environment variable {key_env} (its API key) is not set")
        check_transport(url, key_env)
    return Target(name, url, up.model_name, key_env)


class UpstreamClient:
    def __init__(self, target: Target, settings: Upstream):
        self.target, self.settings = target, settings
        headers = {}
        if target.key_env:
            headers["Authorization"] = f"Bearer {os.environ[target.key_env]}"
        self._key = os.environ.get(target.key_env) if target.key_env else None
        self.max_answer_bytes = MAX_ANSWER_BYTES
        self.client = httpx.AsyncClient(base_url=target.url, headers=headers, transport=_transport(settings),
                                        timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 5)),
                                        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    def scrub(self, text: str) -> str:
        """``text`` without this upstream's key (a careless server echoes it back)."""
        return text.replace(self._key, "***") if self._key else text

    def body_for(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "model": self.target.model} if self.target.model else body

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed chat completion, retried as the profile says."""
        raw = await self._send(self.body_for(body), whole=True)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._bad(f"not JSON ({raw[:80].decode('utf-8', 'replace')!r})")
        if (wrong := malformed(data, ChatAnswer)) is not None:
            self._bad(wrong)
        return data

    def _bad(self, wrong: str):
        raise UpstreamFailure(BAD_ANSWER, self.scrub(
            f"the {self.target.name} upstream answered something that is not a chat completion: "
            f"{wrong}"))

    @staticmethod
    async def _read(response: httpx.Response, limit: int) -> bytes | None:
        """The body, read a chunk at a time (decompressed: a gzip bomb counts as what it
        inflates to), or None once it passes ``limit``; the response is closed either way."""
        chunks, size = [], 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
        finally:
            await response.aclose()
        return b"".join(chunks)

    async def _whole(self, response: httpx.Response) -> bytes:
        raw = await self._read(response, self.max_answer_bytes)
        if raw is None:
            limit = self.max_answer_bytes
            raise UpstreamFailure("too_large", f"the {self.target.name} upstream answered with a "
                                               f"body over the limit of {limit} bytes")
        return raw

    async def open_stream(self, body: dict[str, Any]) -> httpx.Response:
        """A streamed completion, retried until its headers arrive; the caller reads and closes it."""
        return await self._send(self.body_for(body), whole=False)

    async def _send(self, body: dict[str, Any], whole: bool) -> Any:
        """``whole``: the answer's body (bytes), read within the attempt, so a timeout while
        reading it is retried as one before its headers; else the open response."""
        content = orjson.dumps(body)
        wait = self.settings.backoff_s
        for attempt in range(self.settings.max_retries + 1):
            last = attempt == self.settings.max_retries
            try:
                request = self.client.build_request("POST", "/chat/completions", content=content,
                                                    headers={"Content-Type": "application/json"})
                response = await self.client.send(request, stream=True)
                if whole and response.status_code < 400:
                    return await self._whole(response)
            except httpx.TimeoutException:
                failure = UpstreamFailure("timeout", f"{self.target.name} timed out after {self.settings.timeout_s:g} s")
            except httpx.TransportError as e:
                failure = UpstreamFailure("connection", self.scrub(
                    f"cannot reach {self.target.name} at {public_url(self.target.url)}: {type(e).__name__}"))
            except httpx.DecodingError:  # a Content-Encoding its body does not decode with
                self._bad("a body that does not decode as its Content-Encoding says")
            else:
                if response.status_code < 400:
                    return response
                raw = await self._read_error(response)
                failure = UpstreamFailure(f"http_{response.status_code}", self.scrub(
                    f"{self.target.name} answered HTTP {response.status_code}: {raw[:300].decode('utf-8', 'replace')}"),
                    response.status_code, self.scrub(raw.decode("utf-8", "replace")).encode())
                if failure.client_error:
                    raise failure
            if last:
                raise failure
            await asyncio.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")

    async def _read_error(self, response: httpx.Response) -> bytes:
        """An error's body, cut at :data:`MAX_ERROR_BYTES` (it is quoted and passed back)."""
        try:
            raw = await self._read(response, MAX_ERROR_BYTES)
        except httpx.HTTPError:  # the body broke off: the status says enough
            return b""
        if raw is None:
            return b'{"error": {"message": "the error body was too large to pass on"}}'
        return raw

    async def close(self) -> None:
        await self.client.aclose()


async def sse_lines(response: httpx.Response, limit: int = MAX_LINE_BYTES) -> AsyncIterator[str]:
    """A streamed answer's lines (CR, LF or CRLF ended, as ``aiter_lines``), with a line that
    grows past ``limit`` before it ends raising ``too_large``: an upstream that never sends a
    newline must not fill memory."""
    pending = ""
    async for text in response.aiter_text():
        pending += text
        if "\n" in text or "\r" in text:  # else the line goes on: nothing to split again
            # a CR that ends what came may be half a CRLF: it waits for the next piece
            cut = len(pending) - pending.endswith("\r")
            *lines, rest = pending[:cut].replace("\r\n", "\n").replace("\r", "\n").split("\n")
            pending = rest + pending[cut:]
            for line in lines:
                yield line
        if len(pending) > limit:
            raise UpstreamFailure("too_large", f"a streamed line over the limit of {limit} bytes")
    if pending:
        yield pending


def _transport(settings: Upstream) -> httpx.AsyncBaseTransport | None:
    """The in-process app of a ``reference:`` upstream; None (the network) for any other."""
    if not settings.url.startswith("reference:"):
        return None
    from gekro_ft.eval.reference import reference_frontier
    from gekro_ft.route.reference_app import create_reference_app

    return httpx.ASGITransport(create_reference_app(reference_frontier(settings.url)))
