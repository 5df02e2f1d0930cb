"""The load generator: ask the server what it serves, warm it up, then run each level.

Two modes, one level per value:

- concurrency: N workers, each sending its next request as soon as its last one ends,
  until the level has sent ``requests`` (in all) or ``duration_s`` has passed;
- rate (open loop): requests start on a schedule, constant or Poisson (seeded), whether
  or not earlier ones have finished; ``max_concurrency`` optionally caps those in flight
  (a request waiting for the cap is not yet sent, so its latency starts when it is).

A level's duration runs from its start to the end of its last response; requests
started within the duration all finish (or time out) and count. Token counting with the
tokenizer, when a server sends no ``usage``, happens after the last level, never while
requests are in flight.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gekro_ft.bench.client import StreamClient
from gekro_ft.bench.prompts import PromptSet, file_prompts, synthetic_prompts
from gekro_ft.bench.record import RequestRecord
from gekro_ft.bench.settings import BenchSettings, base_url, public_url
from gekro_ft.bench.stats import aggregate
from gekro_ft.bench.tokens import TokenCounter
from gekro_ft.errors import BenchError
from gekro_ft.process import ENGINE_OF_OWNER


# (label, requests done, requests in the level or None when it runs for a duration)
Progress = Callable[[str, int, "int | None"], None]


@dataclass
class ServerInfo:
    models: list[str] | None  # None: the server has no /v1/models
    response: Any
    engine: str
    engine_from: str  # "server", "--engine" or "unknown"


@dataclass
class Level:
    concurrency: int | None
    rate: float | None
    records: list[RequestRecord]
    start: float
    end: float
    launches: list[float] = field(default_factory=list)  # rate mode: when each request started
    schedule: list[float] = field(default_factory=list)  # rate mode: when each was due, s after the start
    max_in_flight: int = 0


@dataclass
class BenchRun:
    settings: BenchSettings
    server: ServerInfo
    prompts: PromptSet
    levels: list[Level]
    results: list[dict[str, Any]]
    warmup: dict[str, Any]
    started_at: str
    wall_s: float


def level_label(settings: BenchSettings, value: float) -> str:
    return f"rate {value:g}/s" if settings.mode == "rate" else f"concurrency {int(value)}"


def run_bench(settings: BenchSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Run the bench, write its outputs to ``settings.out_dir``, log it to MLflow when
    ``MLFLOW_TRACKING_URI`` is set; return the bench.json document."""
    from gekro_ft.bench import report, tracking

    run = measure(settings, progress)
    doc = report.build_doc(run)
    with tracking.maybe_run(doc) as log_artifacts:
        report.write_outputs(doc, run, settings.out_dir)
        log_artifacts(settings.out_dir)
    return doc


def measure(settings: BenchSettings, progress: Progress | None = None) -> BenchRun:
    """Everything but the outputs: the server probe, warmup, and each level's records and figures."""
    settings.check()
    key, _ = settings.api_key()
    counter = TokenCounter(settings.tokenizer)
    if settings.prompts is not None:
        levels = len(settings.rates or settings.concurrency)
        needed = settings.warmup + settings.requests * levels if settings.requests else None
        prompts = file_prompts(settings.prompts, settings.endpoint, settings.schema, limit=needed,
                               render=counter.render if settings.endpoint == "completions" else None)
    else:
        prompts = synthetic_prompts(settings.synthetic_input_tokens, settings.endpoint, settings.seed)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    server, warmup, levels = asyncio.run(_drive(settings, key, prompts, progress))
    results = []
    for level in levels:
        _count_tokens(level.records, prompts, counter)
        results.append(_level_result(settings, level))
    return BenchRun(settings, server, prompts, levels, results, warmup, started_at, time.perf_counter() - t0)


async def _drive(settings: BenchSettings, key: str | None, prompts: PromptSet,
                 progress: Progress | None) -> tuple[ServerInfo, dict[str, Any], list[Level]]:
    client = StreamClient(base_url(settings.url), settings.endpoint, settings.model, api_key=key,
                          max_tokens=settings.max_tokens, timeout=settings.timeout_s,
                          extra_body=_extra_body(settings))
    try:
        server = await _probe(client, settings)
        feed = _Feed(prompts)
        warmup = await _warmup(client, feed, settings)
        levels = []
        rng = random.Random(settings.seed)
        for value in settings.rates or settings.concurrency:
            label = level_label(settings, value)
            done = _counter(progress, label, settings.requests)
            if settings.mode == "rate":
                levels.append(await _open_loop(client, feed, value, settings, rng, done))
            else:
                levels.append(await _closed_loop(client, feed, value, settings.requests,
                                                 settings.duration_s, done))
        return server, warmup, levels
    finally:
        await client.aclose()


def _extra_body(settings: BenchSettings) -> dict[str, Any]:
    extra: dict[str, Any] = {"temperature": settings.temperature}
    if settings.ignore_eos:
        extra["ignore_eos"] = True
    return extra


class _Feed:
    """Hands out prompt numbers across the whole run, so no two requests repeat a prompt
    until the prompts run out (a prefix cache then sees real traffic, not repeats)."""

    def __init__(self, prompts: PromptSet):
        self.prompts = prompts
        self.n = 0

    def next(self) -> tuple[int, dict[str, Any]]:
        i = self.n
        self.n += 1
        return i, self.prompts.body(i)


def _counter(progress: Progress | None, label: str, total: int | None) -> Callable[[], None]:
    if progress is None:
        return lambda: None
    progress(label, 0, total)
    n = 0

    def done() -> None:
        nonlocal n
        n += 1
        progress(label, n, total)

    return done


async def _probe(client: StreamClient, settings: BenchSettings) -> ServerInfo:
    """GET /v1/models: fail early on a wrong URL, key or model, and learn the engine."""
    import aiohttp

    shown = public_url(base_url(settings.url) + "/models")
    try:
        status, raw = await client.get("/models", timeout=min(settings.timeout_s, 30.0))
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
        raise BenchError(f"cannot reach {shown}: {type(e).__name__}: {e}",
                         hint="is the server running and the --url right?") from None
    fallback_engine = (settings.engine, "--engine") if settings.engine else ("unknown", "unknown")
    if status == 404:  # some OpenAI-compatible servers have no model list
        return ServerInfo(None, None, *fallback_engine)
    if status in (401, 403):
        raise BenchError(f"{shown} answered {status}: the API key is missing or wrong",
                         hint="name the variable that holds it with --api-key-env VAR "
                              "(without it, OPENAI_API_KEY goes to api.openai.com only)")
    if status != 200:
        raise BenchError(f"{shown} answered HTTP {status}")
    try:
        answer = orjson.loads(raw)
        cards = answer["data"]
        models = [str(c["id"]) for c in cards]
    except (ValueError, KeyError, TypeError):
        raise BenchError(f"{shown} did not answer an OpenAI model list") from None
    if settings.model not in models:
        raise BenchError(f"model {settings.model!r} is not served at {public_url(settings.url)}",
                         hint="it serves: " + ", ".join(models))
    owners = {c.get("owned_by") for c in cards if isinstance(c, dict)}
    engines = {ENGINE_OF_OWNER[o] for o in owners if o in ENGINE_OF_OWNER}
    if len(engines) == 1:
        return ServerInfo(models, answer, engines.pop(), "server")
    return ServerInfo(models, answer, *fallback_engine)


async def _warmup(client: StreamClient, feed: _Feed, settings: BenchSettings) -> dict[str, Any]:
    """Send the warmup requests (results dropped); fail the run if not one of them succeeds."""
    k = settings.warmup
    if k == 0:
        return {"requests": 0, "errors": 0}
    first = settings.concurrency[0] if settings.mode == "concurrency" else settings.max_concurrency
    level = await _closed_loop(client, feed, min(k, first or k), k, None, lambda: None)
    failed = [r for r in level.records if not r.ok]
    if len(failed) == k:
        raise BenchError(f"every warmup request failed: {failed[0].error}: {failed[0].detail}",
                         hint="check --model, --endpoint and the server's log")
    return {"requests": k, "errors": len(failed)}


class _InFlight:
    def __init__(self):
        self.now = 0
        self.max = 0

    async def send(self, client: StreamClient, index: int, feed: _Feed) -> RequestRecord:
        prompt_no, body = feed.next()
        self.now += 1
        self.max = max(self.max, self.now)
        try:
            rec = await client.send(index, body)
        finally:
            self.now -= 1
        rec.prompt = prompt_no
        return rec


async def _closed_loop(client: StreamClient, feed: _Feed, concurrency: int, requests: int | None,
                       duration_s: float | None, done: Callable[[], None]) -> Level:
    records: list[RequestRecord] = []
    flight = _InFlight()
    start = time.perf_counter()
    deadline = None if duration_s is None else start + duration_s
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while (requests is None or issued < requests) and (deadline is None or time.perf_counter() < deadline):
            index = issued
            issued += 1
            records.append(await flight.send(client, index, feed))
            done()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    records.sort(key=lambda r: r.index)
    end = max((r.end for r in records), default=time.perf_counter())
    return Level(concurrency, None, records, start, end, max_in_flight=flight.max)


async def _open_loop(client: StreamClient, feed: _Feed, rate: float, settings: BenchSettings,
                     rng: random.Random, done: Callable[[], None]) -> Level:
    records: list[RequestRecord] = []
    flight = _InFlight()
    cap = asyncio.Semaphore(settings.max_concurrency) if settings.max_concurrency else None

    async def one(index: int) -> None:
        if cap is None:
            records.append(await flight.send(client, index, feed))
        else:
            async with cap:
                records.append(await flight.send(client, index, feed))
        done()

    start = time.perf_counter()
    offset = 0.0  # when the next request is due, seconds after the start
    launches: list[float] = []
    schedule: list[float] = []
    tasks = []
    while settings.requests is None or len(tasks) < settings.requests:
        if settings.duration_s is not None and offset >= settings.duration_s:
            break
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        launches.append(time.perf_counter())
        schedule.append(offset)
        tasks.append(asyncio.create_task(one(len(tasks))))
        # constant: i / rate, not a running sum, so a duration holds exactly rate x duration requests
        offset = len(tasks) / rate if settings.arrival == "constant" else offset + rng.expovariate(rate)
    await asyncio.gather(*tasks)
    records.sort(key=lambda r: r.index)
    end = max((r.end for r in records), default=time.perf_counter())
    return Level(settings.max_concurrency, rate, records, start, end, launches, schedule, flight.max)


def _count_tokens(records: list[RequestRecord], prompts: PromptSet, counter: TokenCounter) -> None:
    """Fill in token counts the server did not send, with the tokenizer."""
    for rec in records:
        if not rec.ok or rec.text is None:
            continue
        if rec.output_tokens is None:
            rec.output_tokens = counter.text("".join(rec.text))
            rec.tokens_from = "tokenizer"
        if rec.input_tokens is None:
            rec.input_tokens = counter.prompt(prompts.body(rec.prompt))
        rec.text = None


def _level_result(settings: BenchSettings, level: Level) -> dict[str, Any]:
    figures = aggregate(level.records, level.end - level.start, settings.goodput)
    result: dict[str, Any] = {"concurrency": level.concurrency, "rate": level.rate, **figures,
                              "max_in_flight": level.max_in_flight}
    if level.rate is not None:
        n = len(level.launches)
        span = level.launches[-1] - level.launches[0] if n > 1 else 0.0
        result["arrival"] = settings.arrival
        result["achieved_rate"] = round((n - 1) / span, 4) if span > 0 else None
    return result
