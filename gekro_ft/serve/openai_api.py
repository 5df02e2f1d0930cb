"""The OpenAI-compatible HTTP layer over the CPU engine (FastAPI).

The contract is vLLM's: ``/v1/models`` lists the base and every adapter, the request's
``model`` field picks the adapter, ``/v1/chat/completions`` and ``/v1/completions``
stream with server-sent events or answer whole, ``usage`` counts tokens, a bearer key
guards everything but ``/health``, and errors come back as OpenAI error bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gekro_ft.serve.cpu_engine import BASE, CPUEngine, GenRequest, Overloaded

OWNED_BY = "gekro-ft-cpu"  # bench reads the engine from /v1/models' owned_by


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def _error_body(status: int, message: str, type_: str, param: str | None = None, code: str | None = None):
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


class _Sampling(BaseModel):
    # Unknown OpenAI parameters (logprobs, user, ...) are accepted and ignored, as vLLM does.
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class ChatRequest(_Sampling):
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]


def create_app(engine: CPUEngine, base_name: str, api_key: str | None = None,
               max_tokens_limit: int = 512, on_ready: Callable[[], None] | None = None) -> FastAPI:
    """The app; ``base_name`` is the model id the base answers to; ``on_ready`` runs once it serves."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        if on_ready is not None:
            on_ready()
        yield

    app = FastAPI(title="gekro-ft CPU engine", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    created = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError):
        return _error_body(e.status, e.message, e.type, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return _error_body(400, f"{param or 'body'}: {first.get('msg', 'invalid request')}",
                           "invalid_request_error", param)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if api_key and request.url.path != "/health":
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return _error_body(401, "missing or wrong API key (send Authorization: Bearer KEY)",
                                   "authentication_error", code="invalid_api_key")
        return await call_next(request)

    @app.get("/health")
    async def health():
        s = engine.stats
        return {"status": "ok", "running": s.running, "waiting": engine.waiting(),
                "requests": s.requests, "output_tokens": s.output_tokens, "batches": s.batches,
                "largest_batch": s.largest_batch,
                "busy_fraction": round(s.busy_s / max(time.time() - s.started, 1e-9), 4)}

    @app.get("/v1/models")
    async def models():
        def card(mid: str, parent: str | None):
            return {"id": mid, "object": "model", "created": created, "owned_by": OWNED_BY,
                    "root": mid, "parent": parent, "max_model_len": engine.max_context}

        return {"object": "list", "data": [card(base_name, None)] + [card(a, base_name) for a in engine.adapters]}

    def adapter_for(model: str) -> str:
        if model == base_name:
            return BASE
        if model in engine.adapters:
            return model
        known = ", ".join([base_name, *engine.adapters])
        raise APIError(404, f"The model `{model}` does not exist. Served here: {known}.",
                       param="model", code="model_not_found")

    def gen_request(body: _Sampling, prompt_ids: list[int], adapter: str) -> GenRequest:
        if body.n != 1:
            raise APIError(400, "only n=1 is supported", param="n")
        max_tokens = body.max_completion_tokens or body.max_tokens or min(256, max_tokens_limit)
        if max_tokens > max_tokens_limit:
            raise APIError(400, f"max_tokens {max_tokens} is over this server's limit of {max_tokens_limit}",
                           param="max_tokens")
        if len(prompt_ids) + max_tokens > engine.max_context:
            raise APIError(400, f"the prompt ({len(prompt_ids)} tokens) plus max_tokens ({max_tokens}) is over "
                                f"the model's context of {engine.max_context} tokens", param="messages")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        return GenRequest(prompt_ids, adapter, max_tokens, body.temperature, body.top_p, stop, body.seed)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        adapter = adapter_for(body.model)
        try:
            prompt_ids = engine.chat_prompt_ids(body.messages, adapter, body.tools)
        except Exception as e:  # the chat template rejects the conversation (roles out of order...)
            raise APIError(400, f"messages cannot be rendered with the chat template: {e}", param="messages")
        req = gen_request(body, prompt_ids, adapter)
        return await _respond(engine, req, body, request, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        adapter = adapter_for(body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise APIError(400, "send one prompt per request", param="prompt")
        req = gen_request(body, engine.text_prompt_ids(prompts[0]), adapter)
        return await _respond(engine, req, body, request, chat=False)

    return app


async def _respond(engine: CPUEngine, req: GenRequest, body: _Sampling, request: Request, chat: bool):
    req.loop, req.events = asyncio.get_running_loop(), asyncio.Queue()
    try:
        engine.submit(req)
    except Overloaded as e:
        raise APIError(503, f"server overloaded: {e}; retry later", "server_error", code="overloaded")
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())

    def usage() -> dict[str, int]:
        n_in = len(req.prompt_ids)
        return {"prompt_tokens": n_in, "completion_tokens": req.output_tokens,
                "total_tokens": n_in + req.output_tokens}

    if not body.stream:
        parts, reason = [], None
        try:
            while True:
                kind, value = await req.events.get()
                if kind == "delta":
                    parts.append(value)
                elif kind == "done":
                    reason = value
                    break
                else:
                    raise APIError(500, value, "server_error")
        finally:
            req.cancelled = reason is None
        text = "".join(parts)
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
                  if chat else {"index": 0, "text": text, "logprobs": None, "finish_reason": reason})
        return Response(orjson.dumps({"id": rid, "object": "chat.completion" if chat else "text_completion",
                                      "created": created, "model": body.model, "choices": [choice],
                                      "usage": usage()}), media_type="application/json")

    include_usage = bool((body.stream_options or {}).get("include_usage"))
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(delta: str | None, reason: str | None, first: bool = False) -> bytes:
        if chat:
            d = {"role": "assistant", "content": ""} if first else ({"content": delta} if delta else {})
            choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": reason}
        return b"data: " + orjson.dumps({"id": rid, "object": obj, "created": created, "model": body.model,
                                         "choices": [choice]}) + b"\n\n"

    async def events():
        finished = False
        try:
            if chat:
                yield chunk(None, None, first=True)
            while True:
                kind, value = await req.events.get()
                if kind == "delta":
                    yield chunk(value, None)
                elif kind == "done":
                    finished = True
                    yield chunk(None, value)
                    break
                else:  # headers are gone; report in-band as vLLM does, then end the stream
                    finished = True
                    yield b"data: " + orjson.dumps({"error": {"message": value, "type": "server_error"}}) + b"\n\n"
                    break
            if include_usage:
                yield b"data: " + orjson.dumps({"id": rid, "object": obj, "created": created, "model": body.model,
                                                 "choices": [], "usage": usage()}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            req.cancelled = not finished  # the client went away: free its batch slot

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
