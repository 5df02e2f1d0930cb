"""The router: an OpenAI-compatible server (FastAPI) in front of the local upstream and the
frontier, deciding per request as the route profile says (:mod:`gekro_ft.route.policy`).

- ``/v1/chat/completions``, streamed and not. When the decision needs the whole local answer
  (checks, confidence), the local answer is generated whole and the stream is sent after the
  decision (one content chunk): that costs time to first token, measured in the README. When
  it does not (a rule, capacity or the prompt classifier decided, or no checks and no
  confidence), the chosen upstream's stream is passed through as it comes.
- Every answer says who answered: the ``X-Gekro-Upstream`` and ``X-Gekro-Route-Reason``
  headers, and a ``gekro_route`` field in the body (the ``openai`` client keeps unknown fields
  on the response object; streamed, it rides on the first chunk).
- Nothing is lost: every request is answered or gets an error status, and is counted in
  ``/metrics`` by upstream, reason and tenant, with the dollars it cost.
- ``/v1/models`` lists the local upstream's models; ``/health`` says the router is up and
  what the budget has left.
- A client's mistake is a 4xx in OpenAI's error shape, checked before anything is routed: the
  body is bounded (413 by its Content-Length, else once it streams past the limit) and typed as
  the CPU engine types it (:class:`ChatRequest`), then forwarded as the client sent it, unknown
  fields included. ``model`` may be left out when both upstreams name theirs in the profile
  (they replace it anyway); else it is required. An upstream's answer that is too large or not
  a chat completion is a 502 naming the upstream (or the profile's fallback); in a stream, an
  in-band error event, and the stream ends as valid server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gekro_ft.route.checks import build_checks
from gekro_ft.route.costs import Ledger, frontier_price, local_usd_per_output_token
from gekro_ft.route.escalations import EscalationLog, escalation_row
from gekro_ft.route.metrics import RouteMetrics
from gekro_ft.route.policy import FRONTIER, LOCAL, Decision, after_answer, before_generation, task_of
from gekro_ft.route.profile import RouteProfile
from gekro_ft.route.upstreams import (BAD_ANSWER, ChatChunk, UpstreamClient, UpstreamFailure,
                                      malformed, resolve, sse_lines)
from gekro_ft.serve.openai_api import (MAX_BODY_BYTES, APIError, RequestGuard, add_error_handlers,
                                       api_error_body, error_body, parse_body, read_body)
from gekro_ft.serve.openai_requests import ChatRequest

log = logging.getLogger(__name__)
UPSTREAM_HEADER, REASON_HEADER = "X-Gekro-Upstream", "X-Gekro-Route-Reason"
_TENANT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # a tenant becomes a metrics label: nothing else


_UNUSABLE = (BAD_ANSWER, "too_large")  # upstream failures that are the answer's fault: a 502


class RoutedChatRequest(ChatRequest):
    """A chat request as the router takes it: the CPU engine's, ``model`` optional (see the
    module's doc; :meth:`Router.model_missing`)."""

    model: str | None = None


def _error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return error_body(status, message, type_, None, code, headers)


def _text(answer: dict[str, Any]) -> str:
    return answer["choices"][0]["message"].get("content") or ""


def _usage(answer: dict[str, Any]) -> tuple[int, int]:
    u = answer.get("usage") or {}
    return int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)


class Router:
    """The state one router process shares between requests."""

    def __init__(self, profile: RouteProfile, prices_path: str | None = None,
                 count_tokens: Any = None):
        self.profile = profile
        self.local = UpstreamClient(resolve("local", profile.local), profile.local)
        self.frontier = UpstreamClient(resolve("frontier", profile.frontier), profile.frontier)
        base_dir = Path(profile.source).parent if Path(profile.source).is_file() else Path.cwd()
        self.checks = build_checks(profile.checks, base_dir)
        self.escalations = EscalationLog(profile.log_path())
        self.ledger = Ledger(profile.summary_path(), frontier_price(profile, prices_path),
                             local_usd_per_output_token(profile, prices_path))
        self.metrics = RouteMetrics()
        self.count_tokens = count_tokens  # messages -> prompt tokens, for the capacity part
        from gekro_ft.route.prompt_classifier import load_prompt_classifier  # sklearn, if used

        # loaded once: a bad artifact stops the router at start, not on its first request
        self.prompt_classifier = (load_prompt_classifier(profile.prompt_classifier.model)
                                  if profile.prompt_classifier else None)

    def model_missing(self, request: RoutedChatRequest) -> APIError | None:
        """A request without ``model`` is whole only when both upstreams name theirs."""
        if request.model is None and None in (self.local.target.model, self.frontier.target.model):
            return APIError(400, "model: Field required (an upstream of this router takes the "
                                 "request's model)", param="model",
                            code="missing_required_parameter")
        return None

    def budget_left(self) -> float | None:
        if self.profile.budget is None:
            return None
        return self.profile.budget.usd_per_day - self.ledger.frontier_spent_today()

    # -- one request ----------------------------------------------------------------------

    async def handle(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        tenant = headers.get(self.profile.tenant_header.lower(), "default")
        tenant = tenant if _TENANT.match(tenant) else "other"
        task = task_of(self.profile, headers, body)
        prompt_tokens = None
        if self.profile.capacity is not None:
            prompt_tokens = await asyncio.to_thread(self.count_tokens, body["messages"])
        p_escalate = None
        if self.prompt_classifier is not None:
            p_escalate = await asyncio.to_thread(self.prompt_classifier.probability,
                                                 body["messages"])
        decision = before_generation(self.profile, task, prompt_tokens, p_escalate)
        streaming = bool(body.get("stream"))
        if streaming and decision is None and not self.profile.needs_local_answer:
            decision = Decision(LOCAL, "passed", task)
        if streaming and decision is not None and not (decision.upstream == FRONTIER and self._over_budget()):
            return await self._pass_through(body, decision, tenant)

        # not streamed, a classifier's "local" still waits for the answer the checks judge
        predicted_local = decision if decision is not None and decision.upstream == LOCAL else None
        decision = None if predicted_local else decision
        local_answer, local_failure = None, None
        if decision is None:
            try:
                local_answer = await self.local.chat(self._local_body(body))
            except UpstreamFailure as e:
                local_failure = e
            if local_failure is not None:
                decision = self._after_local_failure(local_failure, task)
                if decision is None:
                    return self._failed(local_failure, "local", tenant)
            elif self.profile.needs_local_answer:
                choice = local_answer["choices"][0]
                decision = after_answer(self.profile, self.checks, _text(local_answer),
                                        (choice.get("logprobs") or {}).get("content"), task)
            else:
                decision = predicted_local or Decision(LOCAL, "passed", task)

        if decision.upstream == LOCAL:
            return self._answer(local_answer, decision, tenant, body, frontier_answer=None)
        if self._over_budget():
            local_answer = local_answer or await self._local_or_none(body)
            if local_answer is None:
                return self._record(_error(503, "the frontier budget for today is spent and the local upstream "
                                                "is unavailable", "server_error", "budget_exhausted"),
                                    "none", "budget", tenant)
            marked = Decision(LOCAL, "budget", task, decision.failed_checks, decision.scores)
            return self._answer(local_answer, marked, tenant, body, None, flags={"budget_exhausted": True,
                                                                                 "wanted": decision.reason})
        try:
            frontier_answer = await self.frontier.chat(self._frontier_body(body))
        except UpstreamFailure as e:
            self.metrics.upstream_error("frontier", e.kind)
            if e.client_error:
                return self._failed(e, "frontier", tenant)
            if self.profile.frontier.on_error == "open":
                local_answer = local_answer or await self._local_or_none(body)
                if local_answer is not None:
                    fell = Decision(LOCAL, "frontier_error", task, decision.failed_checks, decision.scores)
                    return self._answer(local_answer, fell, tenant, body, None,
                                        flags={"fallback": True, "wanted": decision.reason, "frontier_error": e.kind})
            return self._frontier_closed(e, tenant)
        row = escalation_row(body["messages"], _text(frontier_answer),
                             _text(local_answer) if local_answer else None, decision.public(),
                             self.frontier.target.model)
        await asyncio.to_thread(self.escalations.append, row)
        return self._answer(frontier_answer, decision, tenant, body, frontier_answer, local_answer=local_answer)

    def _over_budget(self) -> bool:
        left = self.budget_left()
        return left is not None and left <= 0

    def _after_local_failure(self, e: UpstreamFailure, task: str | None) -> Decision | None:
        """The local upstream failed: a prompt too long for it is a capacity escalation; the
        upstream down escalates or fails as the profile says (None: fail)."""
        self.metrics.upstream_error("local", e.kind)
        if e.client_error:
            if b"context_length_exceeded" in (e.body or b""):
                return Decision(FRONTIER, "capacity", task)
            return None
        return Decision(FRONTIER, "local_error", task) if self.profile.local.on_error == "escalate" else None

    async def _local_or_none(self, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return await self.local.chat(self._local_body(body))
        except UpstreamFailure as e:
            self.metrics.upstream_error("local", e.kind)
            return None

    def _local_body(self, body: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "metadata")}
        if self.profile.confidence is not None:
            out["logprobs"] = True
        return out

    def _frontier_body(self, body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k not in ("stream", "stream_options")}

    # -- answers --------------------------------------------------------------------------

    def _answer(self, answer: dict[str, Any], decision: Decision, tenant: str, body: dict[str, Any],
                frontier_answer: dict[str, Any] | None, local_answer: dict[str, Any] | None = None,
                flags: dict[str, Any] | None = None) -> Response:
        local_answer = local_answer if local_answer is not None else (answer if frontier_answer is None else None)
        cost = 0.0
        if local_answer is not None:
            cost += self._bill(tenant, LOCAL, local_answer)
        if frontier_answer is not None:
            cost += self._bill(tenant, FRONTIER, frontier_answer)
        answer = dict(answer)
        if not body.get("logprobs") and frontier_answer is None:  # the router asked for them, not the client
            answer["choices"] = [{**c, "logprobs": None} for c in answer["choices"]]
        route = {**decision.public(), "usd": cost, **(flags or {})}
        answer["gekro_route"] = route
        headers = {UPSTREAM_HEADER: decision.upstream, REASON_HEADER: decision.reason}
        if body.get("stream"):
            response: Response = StreamingResponse(_as_stream(answer, body), media_type="text/event-stream",
                                                   headers={"Cache-Control": "no-cache", **headers})
        else:
            response = Response(orjson.dumps(answer), media_type="application/json", headers=headers)
        return self._record(response, decision.upstream, decision.reason, tenant)

    def _bill(self, tenant: str, upstream: str, answer: dict[str, Any]) -> float:
        n_in, n_out = _usage(answer)
        usd = self.ledger.frontier_usd(n_in, n_out) if upstream == FRONTIER else self.ledger.local_usd(n_out)
        self.ledger.add(tenant, upstream, usd, n_in, n_out)
        self.metrics.cost(upstream, tenant, usd, n_in, n_out)
        return usd

    def _failed(self, e: UpstreamFailure, upstream: str, tenant: str) -> Response:
        """An upstream's refusal of the request itself, passed back (in OpenAI's shape); its
        answer unusable a 502; anything else a 503."""
        if e.client_error and e.body:
            status = e.status or 400
            response: Response = Response(_openai_shaped(e.body, status, upstream),
                                          status_code=status, media_type="application/json",
                                          headers={UPSTREAM_HEADER: upstream})
            return self._record(response, "none", "client_error", tenant)
        if e.kind in _UNUSABLE:
            return self._record(_error(502, e.message, "server_error", "bad_upstream_answer"),
                                "none", f"{upstream}_error", tenant)
        return self._record(_error(503, f"the {upstream} upstream is unavailable ({e.kind})", "server_error",
                                   f"{upstream}_unavailable"), "none", f"{upstream}_error", tenant)

    def _frontier_closed(self, e: UpstreamFailure, tenant: str) -> Response:
        if e.kind in _UNUSABLE:
            response = _error(502, f"{e.message}; the profile fails closed", "server_error",
                              "bad_upstream_answer")
        else:
            response = _error(503, f"the frontier is unavailable ({e.kind}) and the profile fails "
                                   "closed", "server_error", "frontier_unavailable")
        return self._record(response, "none", "frontier_error", tenant)

    def _record(self, response: Response, upstream: str, reason: str, tenant: str) -> Response:
        self.metrics.request(upstream, reason, tenant, response.status_code)
        return response

    async def _pass_through(self, body: dict[str, Any], decision: Decision, tenant: str) -> Response:
        """Stream the chosen upstream's answer as it comes (no local answer to judge)."""
        client = self.local if decision.upstream == LOCAL else self.frontier
        sent = body if decision.upstream == FRONTIER else self._local_body(body) | {
            "stream": True, **({"stream_options": body["stream_options"]} if "stream_options" in body else {})}
        if decision.upstream == LOCAL and not body.get("logprobs"):
            sent.pop("logprobs", None)
        try:
            upstream = await client.open_stream(sent)
        except UpstreamFailure as e:
            self.metrics.upstream_error(decision.upstream, e.kind)
            return self._failed(e, decision.upstream, tenant)
        route = decision.public()

        async def relay():
            first, text, done = True, [], False
            try:
                async for line in sse_lines(upstream):
                    chunk = _relayed(line)
                    if isinstance(chunk, str):  # the stream is broken: say so in-band and end it
                        self.metrics.upstream_error(decision.upstream, BAD_ANSWER)
                        said = f"the {decision.upstream} upstream sent a malformed chunk: {chunk}"
                        yield _in_band(client.scrub(said), route if first else None)
                        return
                    if isinstance(chunk, dict):
                        if chunk.get("usage"):
                            self._bill(tenant, decision.upstream, chunk)
                        text += [(c.get("delta") or {}).get("content") or ""
                                 for c in chunk.get("choices") or []]
                        if first:  # the route rides on the first chunk
                            line = "data: " + orjson.dumps({**chunk, "gekro_route": route}).decode()
                            first = False
                    done = done or (chunk is True and line.startswith("data:"))  # [DONE] only
                    if chunk is not None:
                        yield (line + "\n").encode()
            except (UpstreamFailure, httpx.HTTPError) as e:  # cut off, too large: say so, in-band
                kind = e.kind if isinstance(e, UpstreamFailure) else "connection"
                self.metrics.upstream_error(decision.upstream, kind)
                log.warning("the %s upstream's stream broke off: %s", decision.upstream, _why(e))
                yield _in_band(f"the {decision.upstream} upstream's stream broke off ({kind})",
                               route if first else None, "upstream_stream_broken")
                return
            finally:
                await upstream.aclose()
            if done and decision.upstream == FRONTIER:  # a whole streamed escalation is logged like any other
                row = escalation_row(body["messages"], "".join(text), None, decision.public(),
                                     self.frontier.target.model)
                await asyncio.to_thread(self.escalations.append, row)

        headers = {"Cache-Control": "no-cache", UPSTREAM_HEADER: decision.upstream, REASON_HEADER: decision.reason}
        return self._record(StreamingResponse(relay(), media_type="text/event-stream", headers=headers),
                            decision.upstream, decision.reason, tenant)

    async def close(self) -> None:
        await self.local.close()
        await self.frontier.close()


_SSE_FIELDS = ("event:", "id:", "retry:", ":")  # passed on as they are (":" is a comment)


def _relayed(line: str) -> dict[str, Any] | str | bool | None:
    """What an upstream's stream line is: a chunk (its JSON), True for a line passed on as it is
    (a blank line, ``[DONE]``, another SSE field), None for noise that is no SSE field (left
    out), or what is wrong with a data line that is no chunk (then the stream is broken)."""
    if not line.startswith("data:"):
        return True if not line or line.startswith(_SSE_FIELDS) else None
    data = line[5:].strip()
    if data == "[DONE]":
        return True
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return f"not JSON ({data[:80]!r})"
    wrong = malformed(chunk, ChatChunk)
    return chunk if wrong is None else wrong


def _in_band(message: str, route: dict[str, Any] | None,
             code: str = "bad_upstream_answer") -> bytes:
    """An error event as vLLM sends one once headers are gone, then the stream's end; the blank
    line first ends an event the upstream left open, so the error is an event of its own."""
    error = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    if route is not None:
        error["gekro_route"] = route
    return b"\ndata: " + orjson.dumps(error) + b"\n\ndata: [DONE]\n\n"


def _why(e: Exception) -> str:
    return e.message if isinstance(e, UpstreamFailure) else type(e).__name__


def _openai_shaped(body: bytes, status: int, upstream: str) -> bytes:
    """An upstream's 4xx body as it is when it is OpenAI's error shape, else quoted in it."""
    with contextlib.suppress(orjson.JSONDecodeError):
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return body
    text = body[:300].decode("utf-8", "replace")
    return orjson.dumps({"error": {"message": f"the {upstream} upstream refused the request "
                                              f"(HTTP {status}): {text}",
                                   "type": "invalid_request_error", "param": None, "code": None}})


def _as_stream(answer: dict[str, Any], body: dict[str, Any]):
    """A whole answer as OpenAI's chunks: role and content, the finish, usage when asked, [DONE]."""
    base = {"id": answer.get("id", "chatcmpl-routed"), "object": "chat.completion.chunk",
            "created": answer.get("created", int(time.time())), "model": answer.get("model")}
    choice = answer["choices"][0]
    logprobs = choice.get("logprobs")

    async def chunks():
        first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": _text(answer)},
                                      "logprobs": logprobs, "finish_reason": None}],
                 "gekro_route": answer["gekro_route"]}
        yield b"data: " + orjson.dumps(first) + b"\n\n"
        last = {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                     "finish_reason": choice.get("finish_reason") or "stop"}]}
        yield b"data: " + orjson.dumps(last) + b"\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            yield b"data: " + orjson.dumps({**base, "choices": [], "usage": answer.get("usage")}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    return chunks()


async def _checked_body(request: Request, router: Router, limit: int) -> dict[str, Any]:
    """The request's body as the client sent it (to forward it whole), once it is known to be
    within ``limit`` and a chat request (:class:`RoutedChatRequest`); else an APIError."""
    raw = await read_body(request, limit)
    typed = await parse_body(raw, RoutedChatRequest)
    if (missing := router.model_missing(typed)) is not None:
        raise missing
    try:
        return orjson.loads(raw)  # an object: it validated above
    except orjson.JSONDecodeError as e:  # pydantic reads what orjson does not: an int past 64 bits
        raise APIError(400, f"the request body is not valid JSON here: {e}",
                       code="invalid_json") from None


def create_router_app(router: Router, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await router.close()

    app = FastAPI(title="gekro-ft router", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(RequestGuard, api_key=api_key)
    add_error_handlers(app)

    @app.get("/health")
    async def health():
        return {"status": "ok", "budget_left_usd": router.budget_left()}

    @app.get("/metrics")
    async def metrics():
        return Response(router.metrics.render(), media_type=router.metrics.content_type)

    @app.get("/v1/models")
    async def models():
        try:
            r = await router.local.client.get("/models")
            return Response(r.content, status_code=r.status_code, media_type="application/json")
        except Exception:  # noqa: BLE001 - the local upstream down is an answer, not a crash
            return _error(503, "the local upstream is unavailable", "server_error", "local_unavailable")

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await _checked_body(request, router, max_body_bytes)
        except APIError as e:
            return router._record(api_error_body(e), "none", "invalid", "default")
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            response = await router.handle(body, headers)
        except Exception as e:  # noqa: BLE001 - counted and answered, never lost
            log.exception("routing failed")
            response = router._record(_error(500, f"routing failed: {type(e).__name__}", "server_error"),
                                      "none", "router_error", "default")
        await asyncio.to_thread(router.ledger.save)
        return response

    return app
