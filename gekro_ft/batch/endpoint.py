"""The endpoint engine: rows sent to an OpenAI-compatible server, a bounded number at once.

Requests go over one aiohttp session with orjson bodies, as the bench's client sends them.
The ``openai`` client did this first and cost about 18 ms of CPU a request (request models
built and validated); against the CPU engine, which starts a batch with whatever has
arrived within a few milliseconds, that spread the job's requests over more, smaller
batches: 0.83× the bench's output tokens/s at concurrency 8 (benchmarks/batch_throughput.py).
Retries follow the openai client's rules: 408, 409, 429, 5xx, lost connections and timeouts
are asked again up to ``max_retries`` times, with exponential backoff and jitter, or after
the server's ``Retry-After``; what still fails is the "after retries" of a failed row.
Each row's request body is sent as the input gave it (an OpenAI batch line's ``body``),
with ``model`` set to the served model and the job's defaults for what the row leaves out.

Rows are pulled from the input as slots free up, so a corpus of millions never sits in
memory. SIGINT and SIGTERM stop the job: no new request starts, the ones in flight are
cancelled (their rows are asked again on the rerun), and :meth:`EndpointEngine.run`
returns the signal for the caller to finish writing and exit 130.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import orjson

from gekro_ft.batch.inputs import BatchRow
from gekro_ft.batch.records import Result

_MESSAGE_CHARS = 500
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx: what the openai client retries
BACKOFF_S, BACKOFF_MAX_S, RETRY_AFTER_MAX_S = 0.5, 8.0, 60.0


class EndpointEngine:
    kind = "endpoint"

    def __init__(self, base_url: str, model: str, *, api_key: str | None, defaults: dict[str, Any],
                 concurrency: int = 8, timeout_s: float = 600.0, max_retries: int = 3):
        self.base_url, self.model, self.defaults = base_url.rstrip("/"), model, defaults
        self._key = api_key
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def describe(self) -> dict[str, Any]:
        from gekro_ft.keys import public_url

        return {"engine": self.kind, "base_url": public_url(self.base_url), "model": self.model,
                "concurrency": self.concurrency, "max_retries": self.max_retries}

    def run(self, rows: Iterator[BatchRow], on_result: Callable[[Result], None]) -> int | None:
        """Answer every row, handing each result to ``on_result`` as it arrives; the signal that
        stopped the job, or None when every row was answered."""
        return asyncio.run(self._run(rows, on_result))

    async def _run(self, rows: Iterator[BatchRow], on_result: Callable[[Result], None]) -> int | None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        stopped: list[int] = []

        def on_signal(signum: int) -> None:
            stopped.append(signum)
            stop.set()

        handled: dict[int, Any] = {}  # signal -> the handler it had, put back afterwards
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                handled[s] = signal.getsignal(s)
                loop.add_signal_handler(s, on_signal, s)
        client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                       timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        slots = asyncio.Semaphore(self.concurrency)
        in_flight: set[asyncio.Task] = set()

        failures: list[BaseException] = []

        async def one(row: BatchRow) -> None:
            try:
                on_result(await self._ask(client, row))
            except Exception as e:  # writing the answer failed (a full disk): stop, and say so
                failures.append(e)
                stop.set()
            finally:
                slots.release()

        try:
            for row in rows:
                waiter = asyncio.ensure_future(slots.acquire())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if stop.is_set():
                    if waiter.done():
                        slots.release()
                    else:
                        waiter.cancel()
                    break
                task = asyncio.create_task(one(row))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight and not stop.is_set():
                stopper = asyncio.ensure_future(stop.wait())
                while in_flight and not stop.is_set():
                    await asyncio.wait({stopper, *in_flight}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
            for task in list(in_flight):  # stopped: what is in flight is asked again on the rerun
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            for s, previous in handled.items():
                loop.remove_signal_handler(s)
                signal.signal(s, previous)
            await client.close()
        if failures:
            raise failures[0]
        return stopped[0] if stopped else None

    def request(self, row: BatchRow) -> dict[str, Any]:
        """The body sent for ``row``: the row's own fields win over the job's defaults."""
        body = {**self.defaults, **(row.body or {}), "model": self.model}
        for key in ("stream", "stream_options"):  # one whole answer per row, as OpenAI's batch API gives
            body.pop(key, None)
        return body

    async def _ask(self, client: aiohttp.ClientSession, row: BatchRow) -> Result:
        content = orjson.dumps(self.request(row))
        url = self.base_url + "/chat/completions"
        for attempt in range(self.max_retries + 1):
            last, retry_after = attempt == self.max_retries, None
            try:
                async with client.post(url, data=content, headers=self.headers, allow_redirects=False) as resp:
                    raw, status = await resp.read(), resp.status
                    request_id, retry_after = resp.headers.get("x-request-id"), resp.headers.get("retry-after")
            except asyncio.TimeoutError:
                if last:
                    return Result(row, error=("timeout", f"no answer within {self.timeout_s:g} s "
                                                         f"({self.max_retries} retries)"))
            except (aiohttp.ClientError, OSError) as e:
                if last:
                    return Result(row, error=("connection", self._scrub(f"{type(e).__name__}: {e}")))
            else:
                if status == 200:
                    return self._answer(row, raw, request_id)
                if last or not (status in RETRY_STATUSES or status >= 500):
                    code, message = _error_of(raw, status)
                    return Result(row, status=status, request_id=request_id, error=(code, self._scrub(message)))
            await asyncio.sleep(_backoff(attempt, retry_after))
        raise AssertionError("unreachable: the last attempt returns")

    def _answer(self, row: BatchRow, raw: bytes, request_id: str | None) -> Result:
        try:
            completion = orjson.loads(raw)
            choice = completion["choices"][0]
            usage = completion.get("usage") or {}
            text = choice["message"].get("content") or ""
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
            return Result(row, status=200, request_id=request_id,
                          error=("bad_response", "the answer is not a chat completion"))
        return Result(row, text=text, body=completion, input_tokens=usage.get("prompt_tokens"),
                      output_tokens=usage.get("completion_tokens"), finish_reason=choice.get("finish_reason"),
                      request_id=request_id, status=200)

    def _scrub(self, text: str) -> str:
        """A careless server may echo the Authorization header: never let the key through."""
        text = " ".join(str(text).split())[:_MESSAGE_CHARS]
        return text.replace(self._key, "***") if self._key else text


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Seconds before the next try: the server's ``Retry-After`` (in seconds) when it gives a
    sane one, else 0.5 s doubling to 8 s, less up to a quarter at random so that rows failed
    together do not come back together."""
    try:
        asked = float(retry_after) if retry_after is not None else None
    except ValueError:  # an HTTP date: rare from model servers, the backoff serves
        asked = None
    if asked is not None and 0 <= asked <= RETRY_AFTER_MAX_S:
        return asked
    return min(BACKOFF_MAX_S, BACKOFF_S * 2 ** attempt) * (1 - 0.25 * random.random())


def _error_of(raw: bytes, status: int) -> tuple[str, str]:
    """(code, message) of an error response: OpenAI's ``{"error": {"code", "message"}}``, else
    ``http_STATUS`` and whatever the body says."""
    from gekro_ft.bench.client import error_message

    try:
        error = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code or f"http_{status}"), error_message(raw)
