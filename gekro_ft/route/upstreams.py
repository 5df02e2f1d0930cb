"""The router's two upstreams over HTTP (httpx): bounded retries with exponential backoff on
what a retry can fix (429, 5xx, timeouts, refused connections), a timeout per attempt, and
keys read from the environment at start and sent only where :mod:`gekro_ft.keys` allows.

A failure that survives its retries is an :class:`UpstreamFailure` saying whether the request
itself was wrong (``client_error``: a 4xx other than 408/429, passed back to the client as
it is) or the upstream is unusable now (the router's fallback applies). Messages never carry a
key: a careless server may echo the Authorization header, so it is scrubbed out.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gekro_ft.errors import RouteError
from gekro_ft.keys import check_transport, may_send, public_url
from gekro_ft.route.profile import Upstream

RETRYABLE = {408, 429, 500, 502, 503, 504}
OPENAI_URL = "https://api.openai.com/v1"


class UpstreamFailure(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None, body: bytes | None = None):
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
        self.client = httpx.AsyncClient(base_url=target.url, headers=headers,
                                        timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 5)),
                                        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def body_for(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "model": self.target.model} if self.target.model else body

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """One non-streamed chat completion, retried as the profile says."""
        response = await self._send(self.body_for(body), stream=False)
        try:
            data = orjson.loads(response.content)
            data["choices"][0]["message"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise UpstreamFailure("bad_answer", f"{self.target.name} answered something that is not a chat "
                                                "completion") from None
        return data

    async def open_stream(self, body: dict[str, Any]) -> httpx.Response:
        """A streamed completion, retried until its headers arrive; the caller reads and closes it."""
        return await self._send(self.body_for(body), stream=True)

    async def _send(self, body: dict[str, Any], stream: bool) -> httpx.Response:
        content = orjson.dumps(body)
        wait = self.settings.backoff_s
        for attempt in range(self.settings.max_retries + 1):
            last = attempt == self.settings.max_retries
            try:
                request = self.client.build_request("POST", "/chat/completions", content=content,
                                                    headers={"Content-Type": "application/json"})
                response = await self.client.send(request, stream=stream)
            except httpx.TimeoutException:
                failure = UpstreamFailure("timeout", f"{self.target.name} timed out after {self.settings.timeout_s:g} s")
            except httpx.TransportError as e:
                failure = UpstreamFailure("connection", self._scrub(
                    f"cannot reach {self.target.name} at {public_url(self.target.url)}: {type(e).__name__}"))
            else:
                if response.status_code < 400:
                    return response
                raw = await response.aread()
                await response.aclose()
                failure = UpstreamFailure(f"http_{response.status_code}", self._scrub(
                    f"{self.target.name} answered HTTP {response.status_code}: {raw[:300].decode('utf-8', 'replace')}"),
                    response.status_code, self._scrub(raw.decode("utf-8", "replace")).encode())
                if failure.client_error:
                    raise failure
            if last:
                raise failure
            await asyncio.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.client.aclose()
