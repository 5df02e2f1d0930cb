"""The OpenAI-compatible HTTP layer over the CPU engine (FastAPI).

The contract is vLLM's: ``/v1/models`` lists the base and every adapter, the request's
``model`` field picks the adapter, ``/v1/chat/completions`` and ``/v1/completions``
stream with server-sent events or answer whole, ``usage`` counts tokens, a bearer key
guards everything but ``/health``, and errors come back as OpenAI error bodies
(``{"error": {"message", "type", "param", "code"}}``), 404 and 405 included.

Hostile input stays cheap: a body over ``max_body_bytes`` is refused with 413 before it is
read (by its Content-Length, else as it streams in); parsing, validation (typed as OpenAI
types requests, :mod:`gekro_ft.serve.openai_requests`), the chat template and tokenization
run in worker threads and generation on the engine's thread, so the event loop, and with it
``/health``, keeps answering; a client that goes away has its generation cancelled,
streamed or not. Every response carries ``X-Request-Id`` (the client's, when it sends a
sane one), and every 5xx is logged with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gekro_ft.serve.cpu_engine import BASE, CPUEngine, GenRequest, Overloaded
from gekro_ft.serve.openai_requests import ChatRequest, CompletionRequest, Sampling

OWNED_BY = "gekro-ft-cpu"  # bench reads the engine from /v1/models' owned_by
MAX_BODY_BYTES = 4 * 2**20  # a full 128k-token context is ~0.5 MB of text, ~3 MB JSON-escaped at worst
REQUEST_ID = "x-request-id"

log = logging.getLogger(__name__)

_ID_KEY, _ERROR_KEY = "gekro_ft.request_id", "gekro_ft.error"  # ASGI scope keys
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # a client's id goes into logs: nothing else
_M = TypeVar("_M", bound=BaseModel)


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def error_body(status: int, message: str, type_: str = "invalid_request_error",
               param: str | None = None, code: str | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
    """An error as OpenAI answers it: ``{"error": {"message", "type", "param", "code"}}``."""
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status, headers=headers)


def api_error_body(e: APIError) -> JSONResponse:
    return error_body(e.status, e.message, e.type, e.param, e.code)


class RequestGuard:
    """Outermost layer: a request id on every request and response, the API key, and no 5xx
    (an unexpected exception included) that goes unlogged."""

    def __init__(self, app: ASGIApp, api_key: str | None):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        given = headers.get(REQUEST_ID, "")
        rid = scope[_ID_KEY] = given if _SANE_ID.match(given) else uuid.uuid4().hex
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(REQUEST_ID.encode(), rid.encode())]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if self.api_key and scope["path"] != "/health":
            sent = headers.get("authorization", "").encode()
            if not hmac.compare_digest(sent, f"Bearer {self.api_key}".encode()):
                why = "missing or wrong API key (send Authorization: Bearer KEY)"
                response = error_body(401, why, "authentication_error", code="invalid_api_key")
                return await response(scope, receive, send_with_id)
        path = scope["path"][:200].encode("unicode_escape").decode("ascii")  # no newlines from a client
        where = f"request {rid} ({scope['method']} {path})"
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:  # the client went away; there is no one to answer
            log.debug("%s: the client went away", where)
            return
        except Exception:
            log.exception("%s failed", where)
            if status is None:
                await error_body(500, f"internal server error (request id {rid})", "server_error")(
                    scope, receive, send_with_id)
            return
        if status is not None and status >= 500:
            log.error("%s answered %d: %s", where, status, scope.get(_ERROR_KEY, "(no message)"))


def add_error_handlers(app: FastAPI) -> None:
    """Every error the app raises in OpenAI's shape: an :class:`APIError` as it says, a wrong
    path or method (404, 405) named, instead of FastAPI's ``{"detail": ...}``."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        request.scope[_ERROR_KEY] = e.message
        return api_error_body(e)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException):
        what = f"{request.method} {request.url.path}"
        if e.status_code == 404:
            message = f"Invalid URL ({what})"
        elif e.status_code == 405:
            allow = (e.headers or {}).get("Allow", "another method")
            message = f"Method not allowed ({what}); use {allow}"
        else:
            message = str(e.detail)
        return error_body(e.status_code, message, "invalid_request_error", headers=e.headers)


def create_app(engine: CPUEngine, base_name: str, api_key: str | None = None,
               max_tokens_limit: int = 512, on_ready: Callable[[], None] | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The app; ``base_name`` is the model id the base answers to; ``on_ready`` runs once it serves;
    a request body over ``max_body_bytes`` is refused with 413."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        if on_ready is not None:
            on_ready()
        yield

    app = FastAPI(title="gekro-ft CPU engine", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.add_middleware(RequestGuard, api_key=api_key)
    add_error_handlers(app)
    created = int(time.time())

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

        cards = [card(base_name, None)] + [card(a, base_name) for a in engine.adapters]
        return {"object": "list", "data": cards}

    def adapter_for(model: str) -> str:
        if model == base_name:
            return BASE
        if model in engine.adapters:
            return model
        known = ", ".join([base_name, *engine.adapters])
        raise APIError(404, f"The model `{model}` does not exist. Served here: {known}.",
                       param="model", code="model_not_found")

    def gen_request(body: Sampling, prompt_ids: list[int], adapter: str, prompt_param: str) -> GenRequest:
        if (body.n or 1) != 1:
            raise APIError(400, "n: only n=1 is supported", param="n", code="invalid_value")
        if not prompt_ids:
            raise APIError(400, "the prompt is empty", param=prompt_param, code="invalid_value")
        max_tokens = body.max_completion_tokens or body.max_tokens or min(256, max_tokens_limit)
        if max_tokens > max_tokens_limit:
            raise APIError(400, f"max_tokens {max_tokens} is over this server's limit of {max_tokens_limit}",
                           param="max_tokens", code="invalid_value")
        if len(prompt_ids) + max_tokens > engine.max_context:
            raise APIError(400, f"the prompt ({len(prompt_ids)} tokens) plus max_tokens ({max_tokens}) "
                                f"is over the model's context of {engine.max_context} tokens",
                           param=prompt_param, code="context_length_exceeded")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        temperature = 1.0 if body.temperature is None else body.temperature
        top_p = 1.0 if body.top_p is None else body.top_p
        logprobs = bool(getattr(body, "logprobs", None))  # chat only: completions' legacy logprobs is ignored
        return GenRequest(prompt_ids, adapter, max_tokens, temperature, top_p, stop, body.seed,
                          logprobs=logprobs, top_logprobs=(getattr(body, "top_logprobs", None) or 0) if logprobs else 0)

    def tokenize(text: str, param: str) -> list[int]:
        if len(text) > engine.max_prompt_chars:  # cannot fit: not worth seconds of tokenizing
            raise APIError(400, f"the prompt ({len(text)} characters) is longer than the model's context of "
                                f"{engine.max_context} tokens can hold", param=param,
                           code="context_length_exceeded")
        return engine.text_prompt_ids(text)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await _parse(request, ChatRequest, max_body_bytes)
        adapter = adapter_for(body.model)

        def render_and_tokenize() -> list[int]:
            from jinja2 import TemplateError

            try:
                text = engine.chat_text(body.template_messages(), adapter, body.template_tools())
            except (TemplateError, ValueError) as e:  # the template refuses the conversation (roles...)
                raise APIError(400, f"messages cannot be rendered with the chat template: {e}",
                               param="messages")
            return tokenize(text, "messages")

        req = gen_request(body, await asyncio.to_thread(render_and_tokenize), adapter, "messages")
        return await _respond(engine, req, body, request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await _parse(request, CompletionRequest, max_body_bytes)
        adapter = adapter_for(body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise APIError(400, "send one prompt per request", param="prompt", code="invalid_value")
        if not prompts[0]:
            raise APIError(400, "the prompt is empty", param="prompt", code="invalid_value")
        ids = await asyncio.to_thread(tokenize, prompts[0], "prompt")
        return await _respond(engine, gen_request(body, ids, adapter, "prompt"), body, request, chat=False)

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it is known to be over ``limit``: by its Content-Length
    before a byte is read, else as soon as what arrived passes the limit."""
    def too_large() -> APIError:
        return APIError(413, f"the request body is over this server's limit of {limit} bytes "
                             f"({limit / 2**20:g} MiB)", code="request_too_large")

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse(request: Request, model: type[_M], limit: int) -> _M:
    return await parse_body(await read_body(request, limit), model)


async def parse_body(body: bytes, model: type[_M]) -> _M:
    """``body`` validated as ``model``; an :class:`APIError` (400) naming the parameter if not."""
    try:  # in a thread: a body of a few MB takes the loop's time otherwise
        return await asyncio.to_thread(model.model_validate_json, body)
    except ValidationError as e:
        raise invalid(e) from None


def invalid(e: ValidationError) -> APIError:
    """One 400 for a body that does not validate: the most specific problem, named by its
    place in the body the way OpenAI names it (``messages[0].role``)."""
    errors = e.errors(include_url=False)
    # The deepest place wins; at one depth a wrong value beats a wrong type, which is only a union
    # member that did not fit (["a", ..., "e"] for stop: too many, not "should be a string").
    first = max(errors, key=lambda err: (len(err["loc"]), not err["type"].endswith("_type")))
    if first["type"] == "json_invalid":
        why = (first.get("ctx") or {}).get("error", first["msg"])
        return APIError(400, f"the request body is not valid JSON: {why}", code="invalid_json")
    param = param_of(first["loc"])
    kind = first["type"]
    code = ("missing_required_parameter" if kind == "missing"
            else "invalid_type" if kind.endswith("_type") else "invalid_value")
    message = str(first["msg"]).removeprefix("Value error, ")
    return APIError(400, f"{param}: {message}" if param else message, param=param, code=code)


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict"}


def param_of(loc: tuple[Any, ...]) -> str | None:
    """``("messages", 0, "content", "list[TextPart]", 0, "type")`` -> ``messages[0].content[0].type``:
    pydantic puts the name of the union member it tried into the path; the body has no such key."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[a-z_]+", part) and part not in _UNION_TAGS:
            out += f".{part}" if out else part
    return out or None


async def _when_gone(request: Request, req: GenRequest) -> None:
    """Tell the waiting handler once the client has gone (the body is read: ``receive`` now
    answers only that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    if req.events is not None:
        req.events.put_nowait(("gone", None))


async def _respond(engine: CPUEngine, req: GenRequest, body: Sampling, request: Request, chat: bool):
    req.loop, req.events = asyncio.get_running_loop(), asyncio.Queue()
    try:
        engine.submit(req)
    except Overloaded as e:
        raise APIError(503, f"server overloaded: {e}; retry later", "server_error", code="overloaded")
    request_id = request.scope.get(_ID_KEY) or uuid.uuid4().hex
    rid = ("chatcmpl-" if chat else "cmpl-") + request_id
    created = int(time.time())

    def usage() -> dict[str, int]:
        n_in = len(req.prompt_ids)
        return {"prompt_tokens": n_in, "completion_tokens": req.output_tokens,
                "total_tokens": n_in + req.output_tokens}

    if not body.stream:
        parts, reason, logprobs = [], None, []
        watcher = asyncio.create_task(_when_gone(request, req))
        try:
            while True:
                kind, value = await req.events.get()
                if kind == "delta":
                    parts.append(value)
                elif kind == "logprob":
                    logprobs.append(value)
                elif kind == "done":
                    reason = value
                    break
                elif kind == "gone":
                    raise ClientDisconnect()
                else:
                    raise APIError(500, value, "server_error")
        finally:
            watcher.cancel()
            req.cancelled = reason is None  # gone, failed or cancelled: free its batch slot
        text = "".join(parts)
        choice = ({"index": 0, "message": {"role": "assistant", "content": text},
                   "logprobs": {"content": logprobs} if req.logprobs else None, "finish_reason": reason}
                  if chat else {"index": 0, "text": text, "logprobs": None, "finish_reason": reason})
        return Response(orjson.dumps({"id": rid, "object": "chat.completion" if chat else "text_completion",
                                      "created": created, "model": body.model, "choices": [choice],
                                      "usage": usage()}), media_type="application/json")

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    obj = "chat.completion.chunk" if chat else "text_completion"

    pending: list[dict] = []  # token log-probabilities not yet sent, for the next chunk

    def chunk(delta: str | None, reason: str | None, first: bool = False) -> bytes:
        if chat:
            d = {"role": "assistant", "content": ""} if first else ({"content": delta} if delta else {})
            # each chunk carries the entries of the tokens whose text it sends, as vLLM's chunks do
            lp = {"content": pending[:]} if req.logprobs and not first else None
            pending.clear()
            choice = {"index": 0, "delta": d, "logprobs": lp, "finish_reason": reason}
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
                if kind == "logprob":
                    pending.append(value)
                elif kind == "delta":
                    yield chunk(value, None)
                elif kind == "done":
                    finished = True
                    yield chunk(None, value)
                    break
                else:  # headers are gone; report in-band as vLLM does, then end the stream
                    finished = True
                    log.error("request %s failed while streaming: %s", request_id, value)
                    error = {"error": {"message": value, "type": "server_error"}}
                    yield b"data: " + orjson.dumps(error) + b"\n\n"
                    break
            if include_usage:
                yield b"data: " + orjson.dumps({"id": rid, "object": obj, "created": created,
                                                 "model": body.model, "choices": [],
                                                 "usage": usage()}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            req.cancelled = not finished  # the client went away: free its batch slot

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
