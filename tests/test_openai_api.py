"""The CPU engine's HTTP layer against hostile input and hostile clients, on a real uvicorn
server (in a thread) over a stand-in engine: body limits, typed validation, OpenAI-shaped
errors, the event loop kept free, cancellation of abandoned work, request ids in logs."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import string
import threading
import time

import httpx
import pytest

from gekro_ft.serve.cpu_engine import EngineStats, GenRequest
from gekro_ft.serve.openai_api import create_app
from serving import free_port

LIMIT = 64 * 1024  # a small body limit keeps the oversized bodies small
LIVENESS_S = 5  # how long an idle server may take to answer /health: generous, not a speed bound
ASK = [{"role": "user", "content": "Name three colours."}]
JSON = {"Content-Type": "application/json"}


class FakeEngine:
    """The surface of CPUEngine the HTTP layer uses, without a model: a prompt is one token per
    four characters; an answer is "x" per token, one every ``step_s`` seconds, on a thread of its
    own, until ``max_tokens`` or until the request is cancelled."""

    max_context = 10**9

    def __init__(self):
        self.adapters = ["tuned"]
        self.stats = EngineStats()
        self.reset()

    def reset(self):
        self.submitted: list[GenRequest] = []
        self.rendered: list[tuple[list, list | None]] = []
        self.step_s = 0.0
        self.fail_with: str | None = None
        self.submit_raises = False
        self.max_prompt_chars = 10**9
        self.tokenized = 0
        self.tokenizing = threading.Event()
        self.release: threading.Event | None = None  # set: tokenization waits for it

    def chat_text(self, messages, adapter, tools=None):
        self.rendered.append((messages, tools))
        return "".join(m.get("content") or "" for m in messages) or "?"

    def text_prompt_ids(self, prompt):
        self.tokenized += 1
        self.tokenizing.set()
        if self.release is not None:
            self.release.wait(30)
        return [1] * ((len(prompt) + 3) // 4)

    def waiting(self):
        return 0

    def submit(self, req: GenRequest):
        if self.submit_raises:
            raise RuntimeError("a bug in the engine")
        self.submitted.append(req)
        threading.Thread(target=self._generate, args=(req,), daemon=True).start()

    def _generate(self, req: GenRequest):
        if self.fail_with:
            return req.emit("error", self.fail_with)
        for i in range(req.max_tokens):
            if req.cancelled:
                return
            time.sleep(self.step_s)
            req.output_tokens = i + 1
            req.emit("delta", "x")
        req.emit("done", "length")


@contextlib.contextmanager
def _serving(app):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def served():
    engine = FakeEngine()
    with _serving(create_app(engine, "base", max_body_bytes=LIMIT)) as url:
        yield url, engine


@pytest.fixture
def server(served):
    url, engine = served
    engine.reset()
    yield url, engine
    if engine.release is not None:
        engine.release.set()


def chat(**fields):
    return {"model": "base", "messages": ASK, "max_tokens": 4, **fields}


def _openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert r.headers["x-request-id"]
    return body["error"]


def _raw(port: int, head: bytes, body: bytes = b"", timeout: float = 10) -> tuple[int, bytes]:
    """Send a request's head and part of its body over a plain socket, then read the answer:
    (status, body). A server that waits for the rest of the body times out here."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536) or b""
        head_part, rest = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head_part.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            rest += s.recv(65536)
        return int(head_part.split()[1]), rest


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# --- the answers themselves ------------------------------------------------------------------------

def test_a_chat_answer_whole_and_streamed_with_the_request_id(server):
    url, _ = server
    r = httpx.post(f"{url}/v1/chat/completions", json=chat(), headers={"X-Request-Id": "trace-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"
    body = r.json()
    assert body["id"] == "chatcmpl-trace-42" and body["choices"][0]["message"]["content"] == "xxxx"
    assert body["usage"]["completion_tokens"] == 4
    with httpx.stream("POST", f"{url}/v1/chat/completions",
                      json=chat(stream=True, stream_options={"include_usage": True})) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2][6:])["usage"]["completion_tokens"] == 4
    assert httpx.get(f"{url}/v1/models").json()["data"][1]["id"] == "tuned"


def test_a_clients_request_id_is_used_only_when_it_is_plain(server):
    url, _ = server
    r = httpx.post(f"{url}/v1/completions", json={"model": "base", "prompt": "Hi", "max_tokens": 2},
                   headers={"X-Request-Id": "x" * 65})
    assert r.status_code == 200 and len(r.headers["x-request-id"]) == 32
    assert r.json()["id"] == "cmpl-" + r.headers["x-request-id"]


def test_what_openai_accepts_is_accepted(server):
    url, engine = server
    messages = [{"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"},
                                             {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function",
                                 "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}]
    tools = [{"type": "function", "function": {"name": "f", "description": "d",
                                               "parameters": {"type": "object", "properties": {}}}}]
    r = httpx.post(f"{url}/v1/chat/completions", json=chat(
        messages=messages, tools=tools, temperature=0, top_p=None, seed=2**63 - 1, stop=["a", "b", "c", "d"],
        stream=False, n=1, logprobs=False, user="u-1", presence_penalty=0.5))  # unused ones are ignored
    assert r.status_code == 200, r.text
    rendered, rendered_tools = engine.rendered[-1]
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "tool"]
    assert rendered[1]["content"] == "Hello\nthere"
    assert rendered_tools[0]["function"]["name"] == "f"
    req = engine.submitted[-1]
    assert (req.temperature, req.top_p, req.seed, req.stop) == (0, 1.0, 2**63 - 1, ["a", "b", "c", "d"])


# --- validation, in OpenAI's error shape --------------------------------------------------------

@pytest.mark.parametrize("fields, param", [
    ({"stream": "yes"}, "stream"),
    ({"stream": 1}, "stream"),
    ({"max_tokens": "8"}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 8.5}, "max_tokens"),
    ({"temperature": "0.5"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"seed": 2**70}, "seed"),
    ({"seed": -(2**63) - 1}, "seed"),
    ({"seed": "7"}, "seed"),
    ({"n": 2}, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": 5}, "stop"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": 7}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0]"),
    ({"messages": [{"role": "assistant", "content": None}]}, "messages[0]"),
    ({"tools": "junk"}, "tools"),
    ({"tools": [1]}, "tools[0]"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    ({"tools": [{"type": "function", "function": {"name": "no spaces allowed"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
     "tools[0].function.parameters"),
])
def test_invalid_chat_requests_are_400s_naming_the_parameter(server, fields, param):
    url, engine = server
    error = _openai_error(httpx.post(f"{url}/v1/chat/completions", json=chat(**fields)), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert error["message"].startswith(param)
    assert error["code"] in ("invalid_type", "invalid_value", "missing_required_parameter")
    assert engine.submitted == []


def test_a_missing_field_and_bodies_that_are_not_a_request(server):
    url, _ = server
    error = _openai_error(httpx.post(f"{url}/v1/chat/completions", json={"messages": ASK}), 400)
    assert (error["param"], error["code"]) == ("model", "missing_required_parameter")
    for content in (b"{not json", b"", b"[]", b"null", "{\"model\": \"\u00e9\"".encode()):
        error = _openai_error(httpx.post(f"{url}/v1/chat/completions", content=content, headers=JSON), 400)
        assert error["type"] == "invalid_request_error"
        if content.startswith(b"{"):
            assert error["code"] == "invalid_json" and "not valid JSON: " in error["message"]


@pytest.mark.parametrize("nesting", [
    lambda deep: {"model": "base", "messages": deep},
    lambda deep: {**chat(), "tools": [{"type": "function",
                                       "function": {"name": "f", "parameters": {"a": deep}}}]},
])
def test_a_deeply_nested_body_is_a_400(server, nesting):
    url, _ = server
    depth = 20_000  # 40 KB: under the body limit
    body = json.dumps(nesting("@")).replace('"@"', "[" * depth + "]" * depth)
    error = _openai_error(httpx.post(f"{url}/v1/chat/completions", content=body, headers=JSON), 400)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
def test_an_empty_completion_prompt_is_a_400_streamed_or_not(server, stream):
    url, engine = server
    r = httpx.post(f"{url}/v1/completions", json={"model": "base", "prompt": "", "stream": stream})
    assert _openai_error(r, 400)["param"] == "prompt"
    assert engine.submitted == []


def test_an_unknown_model_path_or_method_answers_in_openai_shape(server):
    url, _ = server
    assert _openai_error(httpx.post(f"{url}/v1/chat/completions", json=chat(model="nope")), 404)["code"] \
        == "model_not_found"
    assert "GET /v1/nope" in _openai_error(httpx.get(f"{url}/v1/nope"), 404)["message"]
    r = httpx.get(f"{url}/v1/chat/completions")
    assert "POST" in _openai_error(r, 405)["message"] and r.headers["allow"] == "POST"


# --- the body limit ------------------------------------------------------------------------------

def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(server):
    url, engine = server
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n")
    status, body = _raw(_port(url), head, b'{"model": "base", ')  # 17 of the 100 MB announced
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and "MiB" in error["message"]
    assert httpx.get(f"{url}/health", timeout=LIVENESS_S).status_code == 200


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(server):
    url, engine = server

    def body():  # no Content-Length: only counting what arrives can stop it
        yield b'{"model": "base", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"x" * 4096
        yield b'"}]}'

    r = httpx.post(f"{url}/v1/chat/completions", content=body())
    assert _openai_error(r, 413)["code"] == "request_too_large"
    assert engine.submitted == []
    # just under the limit is served
    big = [{"role": "user", "content": "x" * (LIMIT - 200)}]
    assert httpx.post(f"{url}/v1/chat/completions", json=chat(messages=big)).status_code == 200


@pytest.mark.parametrize("path, payload", [
    ("/v1/chat/completions", chat(messages=[{"role": "user", "content": "x" * 101}])),
    ("/v1/completions", {"model": "base", "prompt": "x" * 101})])
def test_a_prompt_too_long_for_any_tokenization_is_refused_without_tokenizing(server, path, payload):
    url, engine = server
    engine.max_prompt_chars = 100
    error = _openai_error(httpx.post(url + path, json=payload), 400)
    assert error["code"] == "context_length_exceeded" and engine.tokenized == 0


def test_no_text_has_fewer_tokens_than_the_engines_bound_says(tokenizer):
    from gekro_ft.serve.cpu_engine import max_chars_per_token

    bound = max_chars_per_token(tokenizer)
    rng = random.Random(0)
    texts = [" " * 5000, "\n" * 5000, "a" * 5000, "-" * 5000, "0" * 5000, "é" * 2000, "e\u0301" * 2000,
             "".join(rng.choice(string.printable) for _ in range(5000)), "国" * 2000, "🙂" * 1000,
             " ".join([max(tokenizer.get_vocab(), key=len)] * 50)]
    for text in texts:
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) * bound >= len(text), text[:40]


# --- the event loop stays free; abandoned work is cancelled ----------------------------------------

@pytest.mark.parametrize("path, payload", [("/v1/chat/completions", chat()),
                                           ("/v1/completions", {"model": "base", "prompt": "Hi"})])
def test_health_answers_while_a_prompt_is_being_tokenized(server, path, payload):
    url, engine = server
    engine.release = threading.Event()
    answered = []
    send = lambda: answered.append(httpx.post(url + path, json=payload, timeout=60))  # noqa: E731
    worker = threading.Thread(target=send)
    worker.start()
    try:
        assert engine.tokenizing.wait(10)
        assert httpx.get(f"{url}/health", timeout=LIVENESS_S).json()["status"] == "ok"
    finally:
        engine.release.set()
        worker.join(60)
    assert answered[0].status_code == 200


def _wait_for(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_goes_away_has_its_generation_cancelled(server, stream):
    url, engine = server
    engine.step_s = 0.05  # 500 tokens would take 25 s
    body = json.dumps(chat(max_tokens=500, stream=stream)).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as s:
        s.sendall(head + body)
        assert _wait_for(lambda: engine.submitted and engine.submitted[0].output_tokens > 0)
    req = engine.submitted[0]
    assert _wait_for(lambda: req.cancelled), "the engine was never told that the client had gone"
    assert req.output_tokens < 500


# --- 5xx: logged with the request id -------------------------------------------------------------

def test_a_generation_error_is_a_500_logged_with_its_request_id(server, caplog):
    url, engine = server
    engine.fail_with = "generation failed: RuntimeError: boom"
    r = httpx.post(f"{url}/v1/chat/completions", json=chat())
    error = _openai_error(r, 500)
    assert error["type"] == "server_error" and "boom" in error["message"]
    rid = r.headers["x-request-id"]
    assert _wait_for(lambda: any(rid in m and "boom" in m for m in caplog.messages)), caplog.messages


def test_a_failed_stream_ends_in_band_and_is_logged_with_its_request_id(server, caplog):
    url, engine = server
    engine.fail_with = "generation failed: RuntimeError: boom"
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat(stream=True)) as r:
        lines = [line for line in r.iter_lines() if line]
        rid = r.headers["x-request-id"]
    assert r.status_code == 200 and "boom" in lines[-2] and lines[-1] == "data: [DONE]"
    assert _wait_for(lambda: any(rid in m and "boom" in m for m in caplog.messages)), caplog.messages


def test_an_unexpected_exception_is_an_openai_500_logged_with_its_traceback(server, caplog):
    url, engine = server
    engine.submit_raises = True
    caplog.set_level(logging.ERROR, logger="gekro_ft.serve.openai_api")
    r = httpx.post(f"{url}/v1/chat/completions", json=chat())
    error = _openai_error(r, 500)
    rid = r.headers["x-request-id"]
    assert error["type"] == "server_error" and rid in error["message"] and "bug" not in error["message"]
    assert _wait_for(lambda: any(rid in rec.getMessage() and rec.exc_info for rec in caplog.records))


# --- the key -------------------------------------------------------------------------------------

def test_the_key_guards_all_but_health():
    with _serving(create_app(FakeEngine(), "base", api_key="k-123")) as url:
        error = _openai_error(httpx.get(f"{url}/v1/models"), 401)
        assert error["code"] == "invalid_api_key"
        _openai_error(httpx.get(f"{url}/v1/nope", headers={"Authorization": "Bearer wrong"}), 401)
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer k-123"}).status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200


# --- token log-probabilities, shaped as OpenAI's -----------------------------------------------

class LogprobEngine(FakeEngine):
    """Each "x" token comes with a log-probability entry, as the real engine emits them: the
    first token's logprob is -0.5, the next -1.5, -2.5, ..."""

    def _generate(self, req: GenRequest):
        for i in range(req.max_tokens):
            req.output_tokens = i + 1
            if req.logprobs:
                top = [{"token": "x", "logprob": -0.5 - i, "bytes": [120]}][:req.top_logprobs]
                req.emit("logprob", {"token": "x", "logprob": -0.5 - i, "bytes": [120], "top_logprobs": top})
            req.emit("delta", "x")
        req.emit("done", "length")


def test_logprobs_come_per_token_whole_and_streamed_and_only_when_asked():
    engine = LogprobEngine()
    with _serving(create_app(engine, "base")) as url:
        plain = httpx.post(f"{url}/v1/chat/completions", json=chat()).json()
        assert plain["choices"][0]["logprobs"] is None
        body = httpx.post(f"{url}/v1/chat/completions", json=chat(logprobs=True, top_logprobs=1)).json()
        content = body["choices"][0]["logprobs"]["content"]
        # max_tokens 4: four entries, logprobs -0.5, -1.5, -2.5, -3.5, one alternative each
        assert [e["logprob"] for e in content] == [-0.5, -1.5, -2.5, -3.5]
        assert [len(e["top_logprobs"]) for e in content] == [1, 1, 1, 1]
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat(logprobs=True, stream=True)) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        # the role chunk carries none; each text chunk carries the entry of the token it sends
        streamed = [e for c in chunks if c["choices"][0]["logprobs"] for e in c["choices"][0]["logprobs"]["content"]]
        assert chunks[0]["choices"][0]["logprobs"] is None
        assert [e["logprob"] for e in streamed] == [-0.5, -1.5, -2.5, -3.5]
        assert all(e["top_logprobs"] == [] for e in streamed)
        error = _openai_error(httpx.post(f"{url}/v1/chat/completions", json=chat(top_logprobs=2)), 400)
        assert error["param"] == "top_logprobs"
        error = _openai_error(httpx.post(f"{url}/v1/chat/completions",
                                         json=chat(logprobs=True, top_logprobs=21)), 400)
        assert error["param"] == "top_logprobs"
