"""The router in front of hostile clients and broken upstreams: every client mistake is a 4xx in
OpenAI's error shape naming the parameter, every broken upstream answer a 502 (or the profile's
fallback) naming the upstream, never a 500 or a traceback; bodies are bounded before they are
read, the client's and the upstream's alike. The router app runs in this process (ASGI) in front
of fake OpenAI server processes (tests/fake_openai_server.py) told to misbehave."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import httpx
import pytest
import yaml

from gekro_ft.route.profile import route_profile_from
from serving import fake_openai, free_port, server_process

MESSAGES = [{"role": "user", "content": "Hi"}]
JSON = {"Content-Type": "application/json"}
KEY = "sk-hostile-0123456789"
ASK = {"messages": MESSAGES, "max_tokens": 3}  # no model: both upstreams name theirs


@pytest.fixture(scope="module")
def good():
    with fake_openai("--tokens", "3") as fake:
        yield fake


@pytest.fixture(scope="module")
def bad():
    """A fake upstream each test tells how to be broken (and resets)."""
    with fake_openai("--tokens", "3") as fake:
        yield fake


def _doc(tmp_path, local, frontier, **parts):
    return {"local": {"url": f"{local.url}/v1", "model": "fake-adapter", "max_retries": 0},
            "frontier": {"url": f"{frontier.url}/v1", "model": "fake-base", "price": "gpt-4.1-mini",
                         "max_retries": 0},
            "escalation_log": str(tmp_path / "esc.jsonl"), **parts}


def _send(profile, sends, setup=None):
    """Each of ``sends`` (an async function of the client) against a router app in this process;
    their responses and /metrics."""
    from gekro_ft.route.server import Router, create_router_app

    async def go():
        router = Router(profile)
        if setup is not None:
            setup(router)
        app = create_router_app(router)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://router",
                                     timeout=60) as c:
            out = [await send(c) for send in sends]
            metrics = (await c.get("/metrics")).text
        await router.close()
        return out, metrics

    return asyncio.run(go())


def _post(body=None, raw: bytes | None = None, method="POST", path="/v1/chat/completions"):
    async def send(c):
        if raw is not None:
            return await c.request(method, path, content=raw, headers=JSON)
        return await c.request(method, path, json=body)
    return send


@pytest.fixture
def no_tracebacks(caplog):
    caplog.set_level(logging.DEBUG)
    yield
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text


def _openai_error(r) -> dict:
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    return error


# --- hostile clients ---------------------------------------------------------------------------

M = {"role": "user", "content": "Hi"}
DEEP = "[" * 5000 + "]" * 5000
# (name, raw body or a JSON value, status, param)
CLIENT_CASES = [
    ("not JSON", b"{nope", 400, None),
    ("invalid UTF-8", b'{"messages": [{"role": "user", "content": "\xff"}]}', 400, None),
    ("empty body", b"", 400, None),
    ("a JSON array", [M], 400, None),
    ("a JSON string", "hi", 400, None),
    ("JSON null", None, 400, None),
    ("no messages", {}, 400, "messages"),
    ("messages empty", {"messages": []}, 400, "messages"),
    ("messages a string", {"messages": "hi"}, 400, "messages"),
    ("messages an object", {"messages": M}, 400, "messages"),
    ("messages null", {"messages": None}, 400, "messages"),
    ("a message an int", {"messages": [1]}, 400, "messages[0]"),
    ("a message a string", {"messages": ["hi"]}, 400, "messages[0]"),
    ("a message null", {"messages": [M, None]}, 400, "messages[1]"),
    ("no role", {"messages": [{"content": "x"}]}, 400, "messages[0].role"),
    ("role an int", {"messages": [{"role": 5, "content": "x"}]}, 400, "messages[0].role"),
    ("unknown role", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    ("no content", {"messages": [{"role": "user"}]}, 400, "messages[0]"),
    ("content an int", {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    ("content an object", {"messages": [{"role": "user", "content": {"a": 1}}]}, 400,
     "messages[0].content"),
    ("content part an int", {"messages": [{"role": "user", "content": [5]}]}, 400,
     "messages[0].content[0]"),
    ("content part without text", {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
     400, "messages[0].content[0].text"),
    ("tool_calls a string",
     {"messages": [{"role": "assistant", "content": "x", "tool_calls": "f"}]}, 400,
     "messages[0].tool_calls"),
    ("content nested 5000 deep",
     b'{"messages": [{"role": "user", "content": ' + DEEP.encode() + b"}]}", 400, None),
    ("a field nested 5000 deep", b'{"messages": [{"role": "user", "content": "x"}], "x": ' +
     DEEP.encode() + b"}", 400, None),
    ("model an int", {**ASK, "model": 5}, 400, "model"),
    ("stream a string", {**ASK, "stream": "yes"}, 400, "stream"),
    ("max_tokens a string", {**ASK, "max_tokens": "8"}, 400, "max_tokens"),
    ("max_tokens negative", {**ASK, "max_tokens": -1}, 400, "max_tokens"),
    ("temperature too high", {**ASK, "temperature": 9}, 400, "temperature"),
    ("seed too large", {**ASK, "seed": 2**70}, 400, "seed"),
    ("five stops", {**ASK, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("n zero", {**ASK, "n": 0}, 400, "n"),
    ("logprobs a string", {**ASK, "logprobs": "yes"}, 400, "logprobs"),
    ("top_logprobs without logprobs", {**ASK, "top_logprobs": 3}, 400, "top_logprobs"),
    ("stream_options without stream", {**ASK, "stream_options": {"include_usage": True}}, 400,
     "stream_options"),
    ("tools a string", {**ASK, "tools": "all"}, 400, "tools"),
    ("a tool without a name", {**ASK, "tools": [{"type": "function", "function": {}}]}, 400,
     "tools[0].function.name"),
]


def test_hostile_requests_are_4xx_in_openais_shape_naming_the_parameter(tmp_path, good,
                                                                         no_tracebacks):
    profile = route_profile_from(_doc(tmp_path, good, good))
    sends = [_post(raw=case if isinstance(case, bytes) else json.dumps(case).encode())
             for _, case, _, _ in CLIENT_CASES]
    sends += [_post(method="GET"), _post(ASK, path="/v1/nowhere")]
    responses, metrics = _send(profile, sends)
    got = [(r.status_code, _openai_error(r)["param"]) for r in responses[:len(CLIENT_CASES)]]
    assert got == [(status, param) for _, _, status, param in CLIENT_CASES]
    assert [r.status_code for r in responses[len(CLIENT_CASES):]] == [405, 404]
    for r in responses[len(CLIENT_CASES):]:
        _openai_error(r)
    assert not [r for r in responses if r.status_code >= 500]
    n = len(CLIENT_CASES)
    labels = 'reason="invalid",status="400",tenant="default",upstream="none"'
    assert f"gekro_route_requests_total{{{labels}}} {float(n)}" in metrics


def test_what_validates_is_forwarded_whole_and_model_is_required_only_when_an_upstream_lacks_one(
        tmp_path, good, no_tracebacks):
    extra = {**ASK, "response_format": {"type": "json_object"}, "user": "u1",
             "x_vendor": [1, {"a": 2}], "metadata": 5}
    (ok,), _ = _send(route_profile_from(_doc(tmp_path, good, good)), [_post(extra)])
    assert ok.status_code == 200 and ok.json()["model"] == "fake-adapter"
    forwarded = httpx.get(f"{good.url}/fake/stats").json()["last_body"]
    # the local upstream is not sent metadata (the router's routing input), as before
    assert forwarded == {k: v for k, v in extra.items() if k != "metadata"} | {
        "model": "fake-adapter"}
    (ok,), _ = _send(route_profile_from(_doc(tmp_path, good, good, rules={"default": "frontier"})),
                     [_post(extra)])
    assert ok.status_code == 200 and ok.json()["model"] == "fake-base"
    forwarded = httpx.get(f"{good.url}/fake/stats").json()["last_body"]
    assert forwarded == {**extra, "model": "fake-base"}
    doc = _doc(tmp_path, good, good)
    del doc["frontier"]["model"]  # the frontier answers whatever model the request names
    (missing, named), _ = _send(route_profile_from(doc),
                                [_post(ASK), _post({**ASK, "model": "fake-base"})])
    assert (missing.status_code, _openai_error(missing)["param"]) == (400, "model")
    assert _openai_error(missing)["code"] == "missing_required_parameter"
    assert named.status_code == 200


def test_a_body_declared_too_large_is_refused_before_a_byte_is_read(tmp_path, good, no_tracebacks):
    pulled = []

    async def never_sent():
        pulled.append(1)
        yield b"{"

    async def declared(c):
        return await c.post("/v1/chat/completions", content=never_sent(),
                            headers={"Content-Length": str(2**30), **JSON})

    (r,), _ = _send(route_profile_from(_doc(tmp_path, good, good)), [declared])
    assert (r.status_code, _openai_error(r)["code"]) == (413, "request_too_large")
    assert pulled == []


def test_a_streamed_body_is_refused_once_it_passes_the_limit_not_read_whole(tmp_path, good,
                                                                            no_tracebacks):
    from gekro_ft.serve.openai_api import MAX_BODY_BYTES

    chunk, n_chunks = b" " * 2**20, 256  # 256 MiB, sent chunked (no Content-Length)
    pulled = []

    async def upload():
        for _ in range(n_chunks):
            pulled.append(len(chunk))
            yield chunk

    async def streamed(c):
        return await c.post("/v1/chat/completions", content=upload(), headers=JSON)

    (r,), _ = _send(route_profile_from(_doc(tmp_path, good, good)), [streamed])
    assert (r.status_code, _openai_error(r)["code"]) == (413, "request_too_large")
    # the router stopped pulling the upload one chunk past its limit
    assert sum(pulled) <= MAX_BODY_BYTES + len(chunk) < n_chunks * len(chunk)


@pytest.mark.slow
def test_a_router_process_answers_a_declared_1_gib_body_with_413_at_once(tmp_path, good):
    port = free_port()
    profile = tmp_path / "router.yaml"
    profile.write_text(yaml.safe_dump({**_doc(tmp_path, good, good), "port": port}))
    log = tmp_path / "router.log"
    with server_process(["route", "serve", str(profile)], port, log=log):
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                part = s.recv(65536)
                assert part, head
                head += part
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert "Traceback" not in log.read_text()


# --- broken upstreams ----------------------------------------------------------------------------

OK_MESSAGE = {"role": "assistant", "content": "fine"}
# (name, the upstream's raw answer, what the 502's message says was wrong)
ANSWER_CASES = [
    ("not JSON", "<html>oops</html>", "not JSON"),
    ("empty", "", "not JSON"),
    ("JSON null", "null", "not a JSON object"),
    ("an array", "[]", "not a JSON object"),
    ("no choices", "{}", "choices"),
    ("choices empty", {"choices": []}, "choices"),
    ("choices a string", {"choices": "x"}, "choices"),
    ("a choice an int", {"choices": [5]}, "choices[0]"),
    ("no message", {"choices": [{"index": 0}]}, "choices[0].message"),
    ("message a string", {"choices": [{"message": "hi"}]}, "choices[0].message"),
    ("content an int", {"choices": [{"message": {"role": "assistant", "content": 5}}]},
     "choices[0].message.content"),
    ("usage a string", {"choices": [{"message": OK_MESSAGE}], "usage": "lots"}, "usage"),
    ("tokens a string", {"choices": [{"message": OK_MESSAGE}], "usage": {"prompt_tokens": "x"}},
     "usage.prompt_tokens"),
    ("tokens negative", {"choices": [{"message": OK_MESSAGE}], "usage": {"completion_tokens": -5}},
     "usage.completion_tokens"),
    ("logprobs a string", {"choices": [{"message": OK_MESSAGE, "logprobs": "x"}]},
     "choices[0].logprobs"),
    ("logprob entries wrong", {"choices": [{"message": OK_MESSAGE, "logprobs": {
        "content": [{"token": 1, "logprob": "a"}]}}]}, "choices[0].logprobs.content[0]"),
]


def _broken(fake, **config):
    r = httpx.post(f"{fake.url}/fake/config", json=config)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("upstream", ["local", "frontier"])
def test_a_malformed_upstream_answer_is_a_502_naming_the_upstream_and_what_was_wrong(
        tmp_path, good, bad, upstream, no_tracebacks, monkeypatch):
    monkeypatch.setenv("ROUTE_HOSTILE_KEY", KEY)
    if upstream == "local":
        doc = _doc(tmp_path, bad, good)
        doc["local"]["on_error"] = "fail"
    else:
        doc = _doc(tmp_path, good, bad, rules={"default": "frontier"})
        doc["frontier"] |= {"on_error": "closed", "api_key_env": "ROUTE_HOSTILE_KEY"}
    profile = route_profile_from(doc)
    got = []
    try:
        for _, answer, _ in ANSWER_CASES:
            _broken(bad, answer=answer if isinstance(answer, str) else json.dumps(answer))
            (r,), metrics = _send(profile, [_post(ASK)])
            got.append(r)
    finally:
        _broken(bad)
    assert [r.status_code for r in got] == [502] * len(ANSWER_CASES)
    for r, (name, _, wrong) in zip(got, ANSWER_CASES):
        error = _openai_error(r)
        assert error["code"] == "bad_upstream_answer" and error["type"] == "server_error"
        assert error["message"].startswith(f"the {upstream} upstream answered"), (name, error)
        assert wrong in error["message"], (name, error)
        assert KEY not in r.text
    labels = f'kind="bad_answer",upstream="{upstream}"'
    assert f"gekro_route_upstream_errors_total{{{labels}}} 1.0" in metrics


def test_a_malformed_answer_falls_back_as_the_profile_says(tmp_path, good, bad, no_tracebacks):
    _broken(bad, answer=json.dumps({"choices": [{"message": "hi"}], "usage": "lots"}))
    try:
        frontier_bad = route_profile_from(_doc(tmp_path, good, bad, rules={"default": "frontier"}))
        local_bad = route_profile_from(_doc(tmp_path, bad, good))
        (opened,), _ = _send(frontier_bad, [_post(ASK)])
        (escalated,), metrics = _send(local_bad, [_post(ASK)])
    finally:
        _broken(bad)
    assert opened.status_code == 200 and opened.json()["gekro_route"]["reason"] == "frontier_error"
    assert opened.json()["gekro_route"]["frontier_error"] == "bad_answer"
    assert escalated.status_code == 200
    assert escalated.json()["gekro_route"]["reason"] == "local_error"
    assert 'gekro_route_cost_usd_total{tenant="default",upstream="frontier"}' in metrics


def test_an_upstream_answer_over_the_limit_is_a_failure(tmp_path, good, bad, no_tracebacks):
    big = json.dumps({"choices": [{"message": {"role": "assistant", "content": "x" * 200_000}}]})
    doc = _doc(tmp_path, good, bad, rules={"default": "frontier"})
    doc["frontier"]["on_error"] = "closed"
    _broken(bad, answer=big)
    try:
        (r,), metrics = _send(route_profile_from(doc), [_post(ASK)],
                              setup=lambda r: setattr(r.frontier, "max_answer_bytes", 65536))
    finally:
        _broken(bad)
    error = _openai_error(r)
    assert r.status_code == 502 and "over the limit of 65536 bytes" in error["message"]
    assert 'gekro_route_upstream_errors_total{kind="too_large",upstream="frontier"} 1.0' in metrics


def test_an_upstream_answer_is_read_a_chunk_at_a_time_and_left_past_the_limit():
    from gekro_ft.route.upstreams import Target, UpstreamClient, UpstreamFailure

    pulled = []

    async def endless():
        while True:
            pulled.append(1)
            yield b" " * 4096

    def handler(request):
        return httpx.Response(200, content=endless(), headers={"Content-Type": "application/json"})

    doc = {"local": {"url": "http://x/v1"}, "frontier": {"url": "http://y/v1"}}
    settings = route_profile_from(doc).local

    async def go():
        client = UpstreamClient(Target("local", "http://x/v1", "m", None), settings)
        client.max_answer_bytes = 40_000
        await client.client.aclose()
        client.client = httpx.AsyncClient(transport=httpx.MockTransport(handler),
                                          base_url="http://x/v1")
        try:
            with pytest.raises(UpstreamFailure) as e:
                await client.chat({"messages": MESSAGES})
        finally:
            await client.close()
        return e.value

    failure = asyncio.run(go())
    assert failure.kind == "too_large"
    assert len(pulled) <= 40_000 // 4096 + 2


def _sse_events(text: str) -> list:
    """The data of each event of a text/event-stream, each checked to be JSON or [DONE]."""
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line]
        if not lines:
            continue
        for line in lines:
            assert line.startswith(("data: ", ":")), (line, text)
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


GOOD_CHUNK = json.dumps({"id": "c", "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": " hello"},
                                      "finish_reason": None}]})
STREAM_CASES = [
    ("a chunk not JSON", ["data: {garbage", ""]),
    ("a chunk an array", ["data: [1, 2]", ""]),
    ("choices an int", ['data: {"choices": 5}', ""]),
    ("delta a string", ['data: {"choices": [{"index": 0, "delta": "x"}]}', ""]),
    ("content an int", ['data: {"choices": [{"index": 0, "delta": {"content": 5}}]}', ""]),
    ("usage a string", ['data: {"choices": [], "usage": "lots"}', ""]),
    ("usage negative", ['data: {"choices": [], "usage": {"completion_tokens": -1}}', ""]),
    ("a line of noise", ["noise without a field", ""]),
    ("a chunk echoing the key", [f"data: {{Bearer {KEY}", ""]),
]


@pytest.mark.parametrize("first", [True, False], ids=["first chunk", "after a good chunk"])
def test_a_garbled_stream_ends_in_band_and_stays_valid_sse(tmp_path, good, bad, first,
                                                           no_tracebacks, monkeypatch):
    monkeypatch.setenv("ROUTE_HOSTILE_KEY", KEY)
    doc = _doc(tmp_path, good, bad, rules={"default": "frontier"})
    doc["frontier"]["api_key_env"] = "ROUTE_HOSTILE_KEY"
    profile = route_profile_from(doc)
    ask = {**ASK, "stream": True}
    responses = []
    try:
        for _, lines in STREAM_CASES:
            _broken(bad, stream_lines=([] if first else [f"data: {GOOD_CHUNK}", ""])
                    + lines + [f"data: {GOOD_CHUNK} ", "", "data: [DONE]", ""])
            (r,), metrics = _send(profile, [_post(ask)])
            responses.append(r)
    finally:
        _broken(bad)
    for r, (name, _) in zip(responses, STREAM_CASES):
        assert r.status_code == 200 and KEY not in r.text, name
        events = _sse_events(r.text)
        assert events[-1] == "[DONE]", (name, r.text)
        chunks = [e for e in events if isinstance(e, dict)]
        assert chunks[0]["gekro_route"]["upstream"] == "frontier", (name, r.text)
        if name == "a line of noise":  # not an event: skipped, the stream goes on
            assert not [c for c in chunks if "error" in c], r.text
            text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
            assert text == " hello" * (1 if first else 2)
            continue
        error = chunks[-1]["error"]
        assert error["code"] == "bad_upstream_answer" and error["message"].startswith(
            "the frontier upstream sent a malformed chunk"), (name, error)


def _answering(upstream: str, handler):
    """A ``setup`` for :func:`_send`: the ``upstream``'s client answered by ``handler``."""
    def setup(router):
        client = getattr(router, upstream)
        client.client = httpx.AsyncClient(transport=httpx.MockTransport(handler),
                                          base_url=client.target.url)
    return setup


def test_an_upstream_refusal_that_is_not_openais_shape_is_passed_back_in_it(tmp_path, good,
                                                                             no_tracebacks):
    doc = _doc(tmp_path, good, good)
    doc["local"]["on_error"] = "fail"
    setup = _answering("local", lambda request: httpx.Response(422, text="<b>no</b>"))
    (r,), _ = _send(route_profile_from(doc), [_post(ASK)], setup=setup)
    assert r.status_code == 422
    said = _openai_error(r)["message"]
    assert said == "the local upstream refused the request (HTTP 422): <b>no</b>"


def test_a_stream_that_breaks_off_ends_in_band(tmp_path, good, no_tracebacks):
    async def cut_off():
        yield f"data: {GOOD_CHUNK}\n\n".encode()
        raise httpx.ReadError("the upstream went away")

    def handler(request):
        return httpx.Response(200, content=cut_off(), headers={"Content-Type": "text/event-stream"})

    profile = route_profile_from(_doc(tmp_path, good, good, rules={"default": "frontier"}))
    (r,), metrics = _send(profile, [_post({**ASK, "stream": True})],
                          setup=_answering("frontier", handler))
    events = _sse_events(r.text)
    assert events[0]["choices"][0]["delta"]["content"] == " hello" and events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "upstream_stream_broken"
    assert 'gekro_route_upstream_errors_total{kind="connection",upstream="frontier"} 1.0' in metrics
