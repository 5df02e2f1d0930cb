"""A real CPU engine server process under load, with hostile clients beside it: 200 chat requests
at once and, at the same time, bodies over the size limit (announced and chunked), prompts too
long for the context, malformed requests, and clients that leave mid-answer. Every well-formed
request is answered, every bad one is a 4xx, /health answers throughout, and the server's memory
comes back near where it started."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from serving import free_port, server_process

pytestmark = pytest.mark.slow

BASE = "smollm2-135m-instruct"
N_GOOD = 200
LIVENESS_S = 10  # each /health probe must answer within this: a liveness bound, not a speed assertion
MIB = 2**20


def _chat(i: int, **fields) -> dict:
    return {"model": BASE, "messages": [{"role": "user", "content": f"Write the number {i} in words."}],
            "max_tokens": 4, "temperature": 0, **fields}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class _Prober(threading.Thread):
    """GET /health every quarter second from a thread of its own (so the load's event loop cannot
    delay it), recording each answer's status or "timeout"."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.results, self.stop = url, [], threading.Event()

    def run(self):
        with httpx.Client(timeout=LIVENESS_S) as client:
            while not self.stop.is_set():
                try:
                    self.results.append(client.get(f"{self.url}/health").status_code)
                except httpx.TimeoutException:
                    self.results.append("timeout")
                self.stop.wait(0.25)


def _bad_requests() -> list[tuple[str, str, dict]]:
    """(name, method and path, httpx request arguments), each answered with a 4xx."""
    rng = random.Random(0)
    words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(200_000))  # ~1.1 MB
    deep = json.dumps(_chat(0)).replace('"temperature": 0', '"temperature": ' + "[" * 100_000 + "]" * 100_000)
    huge = json.dumps(_chat(0, messages=[{"role": "user", "content": "x" * (8 * MIB)}])).encode()
    long = [{"role": "user", "content": "z " * (3 * MIB // 2)}]  # under the body limit, over any context

    async def chunked():  # no Content-Length: the server has to count
        yield b'{"model": "' + BASE.encode() + b'", "messages": [{"role": "user", "content": "'
        for _ in range(8):
            yield b"y" * MIB
        yield b'"}]}'

    post = "POST /v1/chat/completions"
    return [
        *[(f"8 MiB body {i}", post, {"content": huge, "headers": {"Content-Type": "application/json"}})
          for i in range(3)],
        ("8 MiB chunked body", post, {"content": chunked()}),
        ("3 MiB prompt", post, {"json": _chat(0, messages=long)}),
        ("1.1 MB prompt, tokenized", "POST /v1/completions", {"json": {"model": BASE, "prompt": words}}),
        ("nested 100k deep", post, {"content": deep, "headers": {"Content-Type": "application/json"}}),
        ("stream: yes", post, {"json": _chat(0, stream="yes")}),
        ("max_tokens: '8'", post, {"json": _chat(0, max_tokens="8")}),
        ("seed 2**70", post, {"json": _chat(0, seed=2**70)}),
        ("unknown role", post, {"json": _chat(0, messages=[{"role": "wizard", "content": "hi"}])}),
        ("junk tools", post, {"json": _chat(0, tools=[{"type": "function", "function": "f"}])}),
        ("empty prompt", "POST /v1/completions", {"json": {"model": BASE, "prompt": ""}}),
        ("GET on chat", "GET /v1/chat/completions", {}),
        ("unknown path", "POST /v1/nope", {"json": {}}),
    ]


async def _load(url: str) -> dict:
    bad_requests = _bad_requests()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(600), limits=limits) as client:
        async def good(i: int):
            r = await client.post("/v1/chat/completions", json=_chat(i))
            return r.status_code, r.json()

        async def bad(name: str, what: str, kwargs: dict):
            await asyncio.sleep(1)  # into the thick of the load
            method, path = what.split()
            r = await client.request(method, path, **kwargs)
            return name, r.status_code, r.json()

        async def abandon_stream(i: int):
            await asyncio.sleep(0.5)
            async with client.stream("POST", "/v1/chat/completions",
                                     json=_chat(1000 + i, stream=True, max_tokens=64)) as r:
                async for _ in r.aiter_lines():
                    break  # the first event, then gone

        async def abandon_whole(i: int):
            await asyncio.sleep(0.5)
            with pytest.raises(httpx.TimeoutException):
                await client.post("/v1/chat/completions", json=_chat(2000 + i, max_tokens=64), timeout=0.5)

        results = await asyncio.gather(*[good(i) for i in range(N_GOOD)],
                                       *[bad(*b) for b in bad_requests],
                                       *[abandon_stream(i) for i in range(5)],
                                       *[abandon_whole(i) for i in range(3)])
    n_bad = len(bad_requests)
    return {"good": results[:N_GOOD], "bad": results[N_GOOD:N_GOOD + n_bad]}


def test_200_requests_with_hostile_clients_beside_them(tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with server_process(["serve", "--engine", "cpu", "--port", str(port)], port, log=log) as proc:
        url = f"http://127.0.0.1:{port}"
        warm = httpx.post(f"{url}/v1/chat/completions", json=_chat(0), timeout=120)
        assert warm.status_code == 200, warm.text
        baseline = _rss_mib(proc.pid)

        prober = _Prober(url)
        prober.start()
        started = time.monotonic()
        outcome = asyncio.run(_load(url))
        took = time.monotonic() - started
        prober.stop.set()
        prober.join(LIVENESS_S + 5)

        deadline = time.monotonic() + 120
        while (h := httpx.get(f"{url}/health", timeout=LIVENESS_S).json())["running"] or h["waiting"]:
            assert time.monotonic() < deadline, f"the engine never went idle: {h}"
            time.sleep(0.5)
        after = _rss_mib(proc.pid)
        stats = httpx.get(f"{url}/health").json()

    for status, body in outcome["good"]:
        assert status == 200 and body["choices"][0]["message"]["content"], body
        assert 1 <= body["usage"]["completion_tokens"] <= 4
    for name, status, body in outcome["bad"]:
        assert 400 <= status < 500, (name, status, body)
        assert set(body["error"]) == {"message", "type", "param", "code"}, (name, body)
    assert {name: status for name, status, _ in outcome["bad"]}["8 MiB chunked body"] == 413
    assert prober.results and set(prober.results) == {200}, prober.results
    assert after < baseline + 500, f"RSS {baseline:.0f} MiB before, {after:.0f} MiB after"
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text[-3000:]
    print(f"\n{N_GOOD} answered in {took:.0f} s; {len(prober.results)} /health probes, all 200; "
          f"RSS {baseline:.0f} -> {after:.0f} MiB; engine: {stats}")
