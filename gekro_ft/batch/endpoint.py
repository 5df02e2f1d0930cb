"""The endpoint engine: rows sent to an OpenAI-compatible server, a bounded number at once.

Requests go through the ``openai`` client, as the eval's endpoint provider sends them: its
retries with backoff on 429, 5xx and lost connections are the "after retries" of a failed
row. Each row's request body is sent as the input gave it (an OpenAI batch line's ``body``),
with ``model`` set to the served model and the job's defaults for what the row leaves out.

Rows are pulled from the input as slots free up, so a corpus of millions never sits in
memory. SIGINT and SIGTERM stop the job: no new request starts, the ones in flight are
cancelled (their rows are asked again on the rerun), and :meth:`EndpointEngine.run`
returns the signal for the caller to finish writing and exit 130.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from gekro_ft.batch.inputs import BatchRow
from gekro_ft.batch.records import Result

_MESSAGE_CHARS = 500


class EndpointEngine:
    kind = "endpoint"

    def __init__(self, base_url: str, model: str, *, api_key: str | None, defaults: dict[str, Any],
                 concurrency: int = 8, timeout_s: float = 600.0, max_retries: int = 3):
        self.base_url, self.model, self.defaults = base_url.rstrip("/"), model, defaults
        self._key = api_key
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        import openai  # noqa: F401 - half a second, paid here rather than on the job's clock

    def describe(self) -> dict[str, Any]:
        from gekro_ft.keys import public_url

        return {"engine": self.kind, "base_url": public_url(self.base_url), "model": self.model,
                "concurrency": self.concurrency, "max_retries": self.max_retries}

    def run(self, rows: Iterator[BatchRow], on_result: Callable[[Result], None]) -> int | None:
        """Answer every row, handing each result to ``on_result`` as it arrives; the signal that
        stopped the job, or None when every row was answered."""
        return asyncio.run(self._run(rows, on_result))

    async def _run(self, rows: Iterator[BatchRow], on_result: Callable[[Result], None]) -> int | None:
        import openai

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
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._key or "not-needed",
                                    timeout=self.timeout_s, max_retries=self.max_retries)
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

    async def _ask(self, client: Any, row: BatchRow) -> Result:
        import openai

        body = self.request(row)
        rest = {k: v for k, v in body.items() if k not in ("model", "messages")}
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=body["model"], messages=body["messages"], extra_body=rest)
        except openai.APIStatusError as e:  # after the client's retries on 429 and 5xx
            code = getattr(e, "code", None) or f"http_{e.status_code}"
            return Result(row, status=e.status_code, request_id=e.response.headers.get("x-request-id"),
                          error=(str(code), self._scrub(e.message)))
        except openai.APITimeoutError:
            return Result(row, error=("timeout", f"no answer within {self.timeout_s:g} s "
                                                 f"({self.max_retries} retries)"))
        except openai.APIConnectionError as e:
            return Result(row, error=("connection", self._scrub(str(e.__cause__ or e))))
        completion = raw.http_response.json()
        try:
            choice = completion["choices"][0]
            usage = completion.get("usage") or {}
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            return Result(row, status=raw.status_code, error=("bad_response", "the answer is not a chat completion"))
        return Result(row, text=text, body=completion, input_tokens=usage.get("prompt_tokens"),
                      output_tokens=usage.get("completion_tokens"), finish_reason=choice.get("finish_reason"),
                      request_id=raw.headers.get("x-request-id"), status=raw.status_code)

    def _scrub(self, text: str) -> str:
        """A careless server may echo the Authorization header: never let the key through."""
        text = " ".join(str(text).split())[:_MESSAGE_CHARS]
        return text.replace(self._key, "***") if self._key else text
