"""A trivial OpenAI-compatible server for the bench tests and the client-overhead benchmark.

Run as its own process; it prints ``PORT <n>`` on stdout once it listens::

    python tests/fake_openai_server.py --port 0 --tokens 20 --token-delay-ms 10

Every answer is ``tokens`` content chunks of " hello" (one token in the SmolLM2/Llama
BPE vocabularies), the first after ``ttft-ms``, each next one ``token-delay-ms`` later.
Token times are scheduled from the request's arrival (absolute, not slept one after
another), so timer slack does not pile up and the latencies a client sees are known:
TTFT ≈ ttft-ms, TPOT ≈ ITL ≈ token-delay-ms, E2EL ≈ ttft-ms + (tokens - 1) × token-delay-ms.

Behaviour can be changed while it runs, so one process serves a whole test session:
``POST /fake/config`` with any of the fields of :class:`Config` (the request counter
restarts), ``GET /fake/stats`` for what it has answered. Faults are deterministic:
with ``fail_every=K`` every K-th generation request (1-based, counted since the last
config) fails as ``fail_mode`` says: an HTTP ``fail_status``, an in-band error event
(``stream_error``) or a stream cut before ``[DONE]`` (``drop``). Like a careless real
server, an injected failure's message echoes the request's Authorization header, so
tests can check that the client keeps keys out of what it records.

To play a broken server, ``answer`` (raw text) replaces every non-streamed chat answer's
body (HTTP 200) and ``stream_lines`` every streamed one's lines; ``/fake/stats`` also gives
the last generation request's body (``last_body``), to check what a proxy forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import socket
import sys
import time
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODELS = ("fake-base", "fake-adapter")
TOKEN = " hello"


@dataclass
class Config:
    tokens: int = 20
    ttft_ms: float | None = None  # None: same as token_delay_ms
    token_delay_ms: float = 0.0
    usage: bool = True  # send usage when the client asks for it
    fail_every: int = 0
    fail_status: int = 500
    fail_mode: str = "status"  # status | stream_error | drop
    owned_by: str = "fake"
    api_key: str | None = None  # when set, /v1/* wants "Authorization: Bearer <api_key>"
    answer: str | None = None  # the raw body of every non-streamed chat answer, as it is
    stream_lines: list[str] | None = None  # the lines of every streamed chat answer, as they are


class State:
    def __init__(self, config: Config):
        self.config = config
        self.count = 0  # generation requests since the last config
        self.answered = 0
        self.failed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.last_body = None


def create_app(config: Config) -> Starlette:
    state = State(config)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "in_flight": state.in_flight})

    def unauthorized(request: Request) -> Response | None:
        want = state.config.api_key
        if want is not None and request.headers.get("authorization") != f"Bearer {want}":
            return JSONResponse({"error": {"message": "invalid API key", "type": "invalid_request_error"}},
                                status_code=401)
        return None

    async def models(request: Request) -> Response:
        if (denied := unauthorized(request)) is not None:
            return denied
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": state.config.owned_by} for m in MODELS]})

    async def set_config(request: Request) -> Response:
        fields = {f.name for f in dataclasses.fields(Config)}
        body = await request.json()
        unknown = set(body) - fields
        if unknown:
            return JSONResponse({"error": f"unknown fields {sorted(unknown)}"}, status_code=400)
        state.config = dataclasses.replace(Config(), **body)
        state.count = state.answered = state.failed = state.max_in_flight = 0
        return JSONResponse(dataclasses.asdict(state.config))

    async def stats(_: Request) -> Response:
        return JSONResponse({"count": state.count, "answered": state.answered, "failed": state.failed,
                             "in_flight": state.in_flight, "max_in_flight": state.max_in_flight,
                             "last_body": state.last_body})

    async def chat(request: Request) -> Response:
        return await generate(request, chat=True)

    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    async def generate(request: Request, chat: bool) -> Response:
        arrived = time.perf_counter()
        if (denied := unauthorized(request)) is not None:
            return denied
        body = json.loads(await request.body())
        cfg = state.config
        state.count += 1
        state.last_body = body
        if chat and (broken := _broken(cfg, bool(body.get("stream")))) is not None:
            return broken
        failing = cfg.fail_every > 0 and state.count % cfg.fail_every == 0
        if body.get("model") not in MODELS:
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found",
                                           "type": "invalid_request_error"}}, status_code=404)
        echo = f"injected failure (Authorization: {request.headers.get('authorization')})"
        if failing and cfg.fail_mode == "status":
            state.failed += 1
            return JSONResponse({"error": {"message": echo, "type": "server_error"}}, status_code=cfg.fail_status)
        n = min(cfg.tokens, int(body.get("max_tokens") or cfg.tokens))
        first = (cfg.token_delay_ms if cfg.ttft_ms is None else cfg.ttft_ms) / 1000
        step = cfg.token_delay_ms / 1000
        due = [arrived + first + i * step for i in range(n)]
        usage = {"prompt_tokens": _prompt_tokens(body), "completion_tokens": n,
                 "total_tokens": _prompt_tokens(body) + n}
        rid = "fake-" + str(state.count)
        obj = "chat.completion.chunk" if chat else "text_completion"

        async def wait(until: float) -> None:
            delay = until - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

        if not body.get("stream"):
            state.in_flight += 1
            try:
                if due:
                    await wait(due[-1])
            finally:
                state.in_flight -= 1
            text = TOKEN * n
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                      if chat else {"index": 0, "text": text, "finish_reason": "length"})
            state.answered += 1
            return JSONResponse({"id": rid, "object": obj.removesuffix(".chunk"), "created": int(time.time()),
                                 "model": body["model"],
                                 "choices": [choice], **({"usage": usage} if cfg.usage else {})})

        def event(payload) -> bytes:
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        def chunk(piece: str | None, reason: str | None = None, role: bool = False) -> bytes:
            if chat:
                delta = {"role": "assistant", "content": ""} if role else ({"content": piece} if piece else {})
                choice = {"index": 0, "delta": delta, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": piece or "", "finish_reason": reason}
            return event({"id": rid, "object": obj, "model": body["model"], "choices": [choice]})

        include_usage = cfg.usage and bool((body.get("stream_options") or {}).get("include_usage"))

        async def events():
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                if chat:
                    yield chunk(None, role=True)  # as vLLM: a role-only chunk first, no content
                for i, t in enumerate(due):
                    await wait(t)
                    if failing and i == n // 2:
                        state.failed += 1
                        if cfg.fail_mode == "stream_error":
                            yield event({"error": {"message": echo, "type": "server_error"}})
                            yield b"data: [DONE]\n\n"
                        return  # drop: the stream ends without [DONE]
                    yield chunk(TOKEN)
                yield chunk(None, reason="length")
                if include_usage:
                    yield event({"id": rid, "object": obj, "model": body["model"], "choices": [], "usage": usage})
                yield b"data: [DONE]\n\n"
                state.answered += 1
            finally:
                state.in_flight -= 1

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[
        Route("/health", health), Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/fake/config", set_config, methods=["POST"]), Route("/fake/stats", stats),
    ])


def _broken(cfg: Config, stream: bool) -> Response | None:
    """The configured broken answer for this request, if any."""
    if stream and cfg.stream_lines is not None:
        lines = [line.encode() + b"\n" for line in cfg.stream_lines]

        async def events():
            for line in lines:
                yield line

        return StreamingResponse(events(), media_type="text/event-stream")
    if not stream and cfg.answer is not None:
        return Response(cfg.answer.encode(), media_type="application/json")
    return None


def _prompt_tokens(body: dict) -> int:
    """Whitespace words: the fake has no tokenizer, and tests only need a stable count."""
    if "messages" in body:
        return sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    return len(str(body.get("prompt") or "").split())


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed as 'PORT n')")
    for f in dataclasses.fields(Config):
        kind = {"int": int, "float": float, "float | None": float, "str": str, "str | None": str}.get(str(f.type))
        if f.type == "bool":
            p.add_argument(f"--{f.name.replace('_', '-')}", type=lambda s: s.lower() in ("1", "true", "yes"),
                           default=f.default)
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    args = vars(p.parse_args(argv))
    config = Config(**{f.name: args[f.name] for f in dataclasses.fields(Config)})

    # proto IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # they are TCP, and with Nagle on, every response waits ~40 ms for the client's delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args["host"], args["port"]))
    sock.listen(2048)  # hundreds of clients connect at once in the load tests
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", access_log=False,
                                           backlog=2048, timeout_keep_alive=30))
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
