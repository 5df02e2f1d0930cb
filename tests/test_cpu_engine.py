"""The CPU engine as a real server process, driven by the real `openai` client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from serving import free_port, make_adapter, server_process, streamed

pytestmark = pytest.mark.slow

BASE = "smollm2-135m-instruct"
KEY = "test-key-not-secret"
ASK = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    adapter = make_adapter(tmp / "random-adapter")
    port = free_port()
    args = ["serve", "--engine", "cpu", "--port", port, "--adapter", f"noisy={adapter}",
            "--api-key-env", "TEST_ENGINE_KEY"]
    with server_process([str(a) for a in args], port, env={"TEST_ENGINE_KEY": KEY}, log=tmp / "server.log"):
        yield f"http://127.0.0.1:{port}"


def client(url, key=KEY):
    import openai

    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_models_lists_base_and_adapter(server):
    ids = [m.id for m in client(server).models.list().data]
    assert ids == [BASE, "noisy"]
    body = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert {m["owned_by"] for m in body["data"]} == {"gekro-ft-cpu"}
    assert body["data"][1]["parent"] == BASE


def test_chat_streamed_and_not_agree_and_count_tokens(server):
    c = client(server)
    whole = c.chat.completions.create(model=BASE, messages=ASK, max_tokens=24, temperature=0)
    text = whole.choices[0].message.content
    assert text and whole.usage.completion_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    streamed_text, usage = streamed(c, model=BASE, messages=ASK, max_tokens=24, temperature=0)
    assert streamed_text == text  # greedy: the same answer either way
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_the_model_field_picks_the_adapter(server):
    c = client(server)
    base = c.chat.completions.create(model=BASE, messages=ASK, max_tokens=16, temperature=0)
    noisy = c.chat.completions.create(model="noisy", messages=ASK, max_tokens=16, temperature=0)
    assert noisy.model == "noisy"
    assert noisy.choices[0].message.content != base.choices[0].message.content


def test_completions_and_length_finish(server):
    r = client(server).completions.create(model=BASE, prompt="The capital of France is", max_tokens=3,
                                          temperature=0)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3


def test_concurrent_mixed_requests_batch_and_match_single_answers(server):
    import openai

    c = client(server)
    prompts = [[{"role": "user", "content": f"Write the number {i} in words."}] for i in range(6)]
    models = [BASE, "noisy"] * 3
    single = [c.chat.completions.create(model=m, messages=p, max_tokens=12, temperature=0).choices[0].message.content
              for m, p in zip(models, prompts)]

    async def together():
        ac = openai.AsyncOpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
        rs = await asyncio.gather(*[ac.chat.completions.create(model=m, messages=p, max_tokens=12, temperature=0)
                                    for m, p in zip(models, prompts)])
        await ac.close()
        return [r.choices[0].message.content for r in rs]

    before = httpx.get(f"{server}/health").json()
    assert before["largest_batch"] == 1  # one at a time so far
    batched = asyncio.run(together())
    # Left padding and mixed adapters in one batch must not change a greedy answer.
    assert batched == single
    after = httpx.get(f"{server}/health").json()
    assert after["largest_batch"] > 1 and after["batches"] - before["batches"] < len(prompts)


def test_errors_are_openai_shaped(server):
    import openai

    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").models.list()
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client(server).chat.completions.create(model="nope", messages=ASK)
    h = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(f"{server}/v1/chat/completions", headers=h, json={"model": BASE, "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(f"{server}/v1/chat/completions", headers=h, json={"model": BASE, "messages": ASK, "max_tokens": 99999})
    assert r.status_code == 400 and "limit" in r.json()["error"]["message"]
    r = httpx.post(f"{server}/v1/chat/completions", headers=h, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{server}/health").json()["status"] == "ok"  # /health needs no key


def test_logprobs_whole_and_streamed_agree_with_the_text_through_the_openai_client(server):
    import math

    c = client(server)
    whole = c.chat.completions.create(model="noisy", messages=ASK, max_tokens=6, temperature=0,
                                      logprobs=True, top_logprobs=3)
    content = whole.choices[0].logprobs.content
    assert len(content) == whole.usage.completion_tokens  # one entry per generated token
    # greedy: the chosen token is the likeliest, so it heads its own top-3 and its logprob is theirs
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert math.isclose(entry.top_logprobs[0].logprob, entry.logprob, abs_tol=1e-5)
        assert bytes(entry.bytes).decode("utf-8") == entry.token
    assert "".join(e.token for e in content).strip() == whole.choices[0].message.content.strip()
    stream = c.chat.completions.create(model="noisy", messages=ASK, max_tokens=6, temperature=0,
                                       logprobs=True, stream=True)
    streamed = [e for ch in stream if ch.choices and ch.choices[0].logprobs
                for e in ch.choices[0].logprobs.content]
    assert [e.token for e in streamed] == [e.token for e in content]
    assert [round(e.logprob, 4) for e in streamed] == [round(e.logprob, 4) for e in content]
