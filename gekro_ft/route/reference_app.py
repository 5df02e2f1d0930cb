"""The reference frontier (:mod:`gekro_ft.eval.reference`) behind OpenAI's chat API, so that a
route profile can name ``frontier.url: reference:SUITE@RATE`` and the router escalates to the
simulation in-process (no port, no key): the way to try a router end to end on a machine that
reaches no API. Every answer says it is a simulation (``gekro_reference`` in the body, the
``X-Gekro-Simulation`` header); a prompt that is not one of the suite's is a 400."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from gekro_ft.eval.reference import ReferenceFrontier
from gekro_ft.serve.openai_api import MAX_BODY_BYTES, APIError, add_error_handlers, parse_body, read_body
from gekro_ft.serve.openai_requests import ChatRequest

SIMULATION_HEADER = "X-Gekro-Simulation"


def create_reference_app(frontier: ReferenceFrontier) -> FastAPI:
    app = FastAPI(title="gekro-ft reference frontier", docs_url=None, redoc_url=None, openapi_url=None)
    add_error_handlers(app)
    label = {"simulation": True, "spec": frontier.spec, "error_rate": frontier.error_rate}
    created = int(time.time())

    @app.get("/health")
    async def health():
        return {"status": "ok", **label}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": frontier.spec, "object": "model", "created": created,
                                            "owned_by": "gekro-ft-simulation"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await parse_body(await read_body(request, MAX_BODY_BYTES), ChatRequest)
        messages = body.template_messages()
        text = frontier.answer(messages)
        if text is None:
            raise APIError(400, f"not a prompt of the suite {frontier.suite.name}: a reference frontier answers "
                                "only its suite's prompts", param="messages", code="not_in_suite")
        n_in, n_out = frontier.tokens(messages, text)
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
        base = {"id": f"chatcmpl-ref-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": body.model}
        headers = {SIMULATION_HEADER: "reference"}
        if body.stream:
            return StreamingResponse(_chunks(base, text, usage, bool(body.stream_options and
                                                                     body.stream_options.include_usage), label),
                                     media_type="text/event-stream", headers=headers)
        answer = {**base, "object": "chat.completion", "gekro_reference": label, "usage": usage,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                               "logprobs": None, "finish_reason": "stop"}]}
        return Response(orjson.dumps(answer), media_type="application/json", headers=headers)

    return app


async def _chunks(base: dict[str, Any], text: str, usage: dict[str, int], include_usage: bool,
                  label: dict[str, Any]):
    chunk = {**base, "object": "chat.completion.chunk"}
    yield b"data: " + orjson.dumps({**chunk, "gekro_reference": label, "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": None}]}) + b"\n\n"
    yield b"data: " + orjson.dumps({**chunk, "choices": [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}) + b"\n\n"
    if include_usage:
        yield b"data: " + orjson.dumps({**chunk, "choices": [], "usage": usage}) + b"\n\n"
    yield b"data: [DONE]\n\n"
