"""The load generator against a real server process (tests/fake_openai_server.py), its CLI,
its outputs and MLflow run, and the figures' arithmetic on hand-made numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import orjson
import pytest

from gekro_ft.bench.loadgen import measure, run_bench
from gekro_ft.bench.prompts import WORDS, file_prompts, synthetic_prompts
from gekro_ft.bench.settings import BenchSettings, base_url, public_url
from gekro_ft.bench.stats import aggregate, meets_targets, parse_goodput, summarize, tpot
from gekro_ft.errors import GekroError, InputFileError
from conftest import write_jsonl
from serving import fake_openai

FAKE = Path(__file__).with_name("fake_openai_server.py")
SECRET = "sk-test-0123456789abcdef"


# ---------------------------------------------------------------- the server process


@pytest.fixture(scope="module")
def server():
    """The fake server as a real process on a free port; its config is set per test."""
    with fake_openai() as fake:
        url = fake.url
        yield SimpleNamespace(url=url, configure=lambda **cfg: _configure(url, cfg),
                              stats=lambda: httpx.get(url + "/fake/stats").json())


def _configure(url: str, cfg: dict) -> None:
    r = httpx.post(url + "/fake/config", json=cfg)
    assert r.status_code == 200, r.text


def settings(server, tmp_path: Path, **kw) -> BenchSettings:
    base = dict(url=server.url, model="fake-base", out_dir=tmp_path / "bench", synthetic_input_tokens=30,
                concurrency=[2], requests=8, warmup=0, api_key_env="")
    base.update(kw)
    return BenchSettings(**base)


def reqs(run) -> list:
    return [r for lv in run.levels for r in lv.records]


# ---------------------------------------------------------------- figures on hand-made numbers


def test_tpot_is_time_after_the_first_token_over_the_tokens_after_it():
    # (0.5 s - 0.1 s) / (5 - 1) tokens = 0.1 s
    assert tpot(0.5, 0.1, 5) == pytest.approx(0.1)
    assert tpot(0.5, 0.1, 1) is None  # no second token to time
    assert tpot(None, 0.1, 5) is None


def test_percentiles_interpolate_linearly_between_ranks():
    s = summarize([4.0, 1.0, 3.0, 2.0])
    # sorted 1,2,3,4; rank p/100*(n-1): p50 -> 1.5 -> 2.5; p90 -> 2.7 -> 3.7; p95 -> 2.85 -> 3.85; p99 -> 2.97 -> 3.97
    assert s == {"mean": 2.5, "p50": 2.5, "p90": 3.7, "p95": 3.85, "p99": 3.97, "max": 4.0}
    assert summarize([]) == {"mean": None, "p50": None, "p90": None, "p95": None, "p99": None, "max": None}


def test_goodput_targets_parse_in_both_syntaxes_and_reject_the_rest():
    assert parse_goodput(["ttft_ms=500", "tpot:50", "e2el_ms = 2000"]) == {"ttft_ms": 500.0, "tpot_ms": 50.0,
                                                                        "e2el_ms": 2000.0}
    for bad in ("ttft=fast", "latency_ms=5", "tpot_ms=-1", "ttft_ms"):
        with pytest.raises(GekroError, match=bad.split("=")[0]):
            parse_goodput([bad])


def rec(ok=True, ttft=None, e2el=None, n_out=None, n_in=None, itl=(), error=None):
    from gekro_ft.bench.record import RequestRecord

    return RequestRecord(0, ok=ok, ttft=ttft, e2el=e2el, output_tokens=n_out, input_tokens=n_in, itl=list(itl),
                         error=error, tokens_from="usage" if ok else None)


def test_aggregate_counts_errors_apart_and_divides_by_the_level_duration():
    records = [
        rec(ttft=0.1, e2el=0.5, n_out=5, n_in=10, itl=[0.1] * 4),   # TPOT 0.1 s
        rec(ttft=0.2, e2el=1.0, n_out=9, n_in=20, itl=[0.1] * 8),   # TPOT 0.8/8 = 0.1 s
        rec(ttft=0.6, e2el=0.6, n_out=1, n_in=30),                  # no TPOT; TTFT over the 500 ms target
        rec(ok=False, error="http_500"),
    ]
    lv = aggregate(records, 2.0, {"ttft_ms": 500, "tpot_ms": 100})
    assert (lv["requests"], lv["completed"], lv["errors"], lv["error_rate"]) == (4, 3, 1, 0.25)
    assert lv["error_kinds"] == {"http_500": 1}
    assert lv["request_throughput"] == 1.5  # 3 completed / 2 s
    assert lv["output_tokens"] == 15 and lv["output_tokens_per_s"] == 7.5  # (5 + 9 + 1) / 2 s
    assert lv["input_tokens"] == 60 and lv["total_tokens_per_s"] == 37.5  # (60 + 15) / 2 s
    assert lv["ttft_ms"]["mean"] == pytest.approx(300.0)  # (100 + 200 + 600) / 3
    assert lv["tpot_ms"]["p50"] == pytest.approx(100.0)  # both defined TPOTs are 100 ms
    assert lv["itl_ms"]["mean"] == pytest.approx(100.0)
    assert lv["goodput_rps"] == 1.0  # the first two meet both targets: 2 / 2 s
    assert aggregate(records, 2.0, {})["goodput_rps"] is None


def test_a_request_without_a_second_token_meets_any_tpot_target_but_none_without_a_first():
    assert meets_targets(rec(ttft=0.01, e2el=0.01, n_out=1), {"tpot_ms": 1})
    assert not meets_targets(rec(ttft=None, e2el=0.01, n_out=0), {"ttft_ms": 1000})
    assert not meets_targets(rec(ok=False, error="timeout"), {"tpot_ms": 1000})


def test_urls_are_normalized_and_credentials_kept_out_of_reports():
    assert base_url("http://h:8000") == "http://h:8000/v1"
    assert base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert public_url("https://bob:pw@h:8000/v1") == "https://h:8000/v1"
    with pytest.raises(GekroError, match="http"):
        base_url("h:8000")


def test_settings_report_every_problem_at_once(tmp_path):
    s = BenchSettings(url="ftp://x", model="m", out_dir=tmp_path, concurrency=[0], requests=0, max_tokens=0)
    with pytest.raises(GekroError) as e:
        s.check()
    for part in ("--prompts FILE", "--concurrency", "--requests", "--max-tokens", "http://"):
        assert part in str(e.value)


# ---------------------------------------------------------------- prompts


def test_prompts_come_from_any_schema_up_to_the_last_assistant_turn(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4"}]},
        {"instruction": "Name a colour", "input": "", "output": "red"},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                           {"from": "human", "value": "bye"}, {"from": "gpt", "value": "bye!"}]},
        "{not json",
        {"messages": [{"role": "assistant", "content": "no question"}]},
    ])
    ps = file_prompts(path, "chat")
    assert len(ps) == 3 and ps.skipped == 2
    assert ps.body(0) == {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]}
    assert ps.body(1)["messages"] == [{"role": "user", "content": "Name a colour"}]
    assert [m["content"] for m in ps.body(2)["messages"]] == ["hi", "hello", "bye"]
    assert ps.body(3) == ps.body(0)  # requests cycle through the prompts
    assert len(file_prompts(path, "chat", limit=2)) == 2


def test_a_file_without_any_prompt_is_a_one_line_error_naming_the_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["{oops", {"messages": [{"role": "assistant", "content": "x"}]}])
    with pytest.raises(InputFileError,
                       match=r"bad.jsonl: holds no usable prompt \(first problem, line 1: invalid JSON"):
        file_prompts(path, "chat")


def test_synthetic_prompts_are_about_n_tokens_seeded_and_distinct(tokenizer):
    ps = synthetic_prompts(200, "completions", seed=7)
    text = ps.body(3)["prompt"]
    assert len(text.split()) == 200
    # every word of WORDS is one token with its leading space, so 200 words are 200 tokens give or take
    # the first word (no leading space): within 1%
    assert abs(len(tokenizer(text, add_special_tokens=False)["input_ids"]) - 200) <= 2
    assert all(len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in WORDS)
    assert synthetic_prompts(200, "completions", seed=7).body(3) == ps.body(3)
    assert ps.body(4)["prompt"].split()[:4] != ps.body(3)["prompt"].split()[:4]  # no shared prefix
    assert synthetic_prompts(200, "chat", seed=7).body(3) == {"messages": [{"role": "user", "content": text}]}


# ---------------------------------------------------------------- the SSE parser, split anywhere


def stream_bytes() -> bytes:
    events = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]},
              *({"choices": [{"delta": {"content": f" t{i}"}}]} for i in range(3)),
              {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3}}]
    return b": keep-alive comment\r\n\r\n" + b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events) \
        + b"data: [DONE]"  # the last event without its blank line


@pytest.mark.parametrize("piece", [1, 7, 10_000])
def test_events_split_at_any_byte_boundary_parse_the_same(piece):
    """Chunks of 1 and 7 bytes cut lines, CRLFs and JSON apart. Chunk k arrives at t = k s."""
    from gekro_ft.bench.client import EventStream
    from gekro_ft.bench.record import RequestRecord

    raw = stream_bytes()
    rec = RequestRecord(0, start=0.0)
    events = EventStream(rec, chat=True)
    for k, i in enumerate(range(0, len(raw), piece), start=1):
        events.feed(raw[i:i + piece], float(k))
    events.end(float(k + 1))
    assert events.error is None and rec.ok and rec.chunks == 3  # the role-only chunk is not a token
    assert (rec.input_tokens, rec.output_tokens, rec.tokens_from) == (11, 3, "usage")
    assert rec.text is None  # usage came: nothing left to count
    if piece == 10_000:  # one chunk: every token at t = 1, so TTFT = E2EL = 1 s and the gaps are 0
        assert (rec.ttft, rec.e2el, rec.itl) == (1.0, 1.0, [0.0, 0.0])
    else:  # each token is timed when its event's blank line arrives, so the clock moved on between them
        assert 0 < rec.ttft < rec.e2el and len(rec.itl) == 2 and all(g > 0 for g in rec.itl)


def test_a_stream_cut_before_done_or_with_an_error_event_is_an_error():
    from gekro_ft.bench.client import EventStream
    from gekro_ft.bench.record import RequestRecord

    cut = EventStream(RequestRecord(0), chat=True)
    cut.feed(stream_bytes()[:-len(b"data: [DONE]")], 1.0)
    cut.end(2.0)
    assert cut.error[0] == "incomplete_stream" and not cut.rec.ok
    bad = EventStream(RequestRecord(0), chat=False)
    bad.feed(b'data: {"choices": [{"text": "a"}]}\n\ndata: {"error": {"message": "boom"}}\n\n', 1.0)
    bad.end(2.0)
    assert bad.error == ("stream_error", "boom") and bad.rec.chunks == 1


# ---------------------------------------------------------------- against the server


def test_counts_and_latencies_follow_from_the_servers_known_timing(server, tmp_path):
    server.configure(tokens=20, ttft_ms=50, token_delay_ms=10)
    run = measure(settings(server, tmp_path, concurrency=[1, 4], requests=8))
    for level, lv in zip(run.levels, run.results):
        assert (lv["requests"], lv["completed"], lv["errors"], lv["error_rate"]) == (8, 8, 0, 0.0)
        assert lv["output_tokens"] == 8 * 20 and lv["tokens_from"] == "usage"
        assert lv["input_tokens"] == 8 * 30  # the server counts words; each synthetic prompt is 30 words
        # The server sends token i at arrival + 50 ms + i * 10 ms (absolute schedule): floors, which a
        # slow machine only raises. Upper bounds would time the machine, not the client.
        assert lv["ttft_ms"]["p50"] >= 50 and lv["e2el_ms"]["p50"] >= 50 + 19 * 10
        # 20 chunks: 19 gaps; TPOT = (E2EL - TTFT) / 19 per request; the level's means (ms, 4 decimals) are theirs
        assert all(len(r.itl) == 19 and r.tpot == pytest.approx((r.e2el - r.ttft) / 19) for r in level.records)
        assert lv["tpot_ms"]["mean"] == pytest.approx(1000 * sum(r.tpot for r in level.records) / 8, abs=1e-4)
        itl = [g for r in level.records for g in r.itl]
        assert lv["itl_ms"]["mean"] == pytest.approx(1000 * sum(itl) / len(itl), abs=1e-4)
    # concurrency 4 had 4 requests at the server at once, not 4 queued behind one connection
    assert [lv["max_in_flight"] for lv in run.results] == [1, 4] and server.stats()["max_in_flight"] == 4
    # 8 back-to-back requests of >= 240 ms at concurrency 1 take >= 1.92 s: at most 8 / 1.92 req/s
    assert run.results[0]["request_throughput"] <= 8 / 1.92


@pytest.mark.parametrize("mode, status, kind", [("status", 500, "http_500"), ("status", 429, "http_429"),
                                                 ("stream_error", 500, "stream_error"),
                                                 ("drop", 500, "incomplete_stream")])
def test_injected_failures_are_counted_by_kind_never_dropped(server, tmp_path, monkeypatch, mode, status, kind):
    server.configure(tokens=6, fail_every=4, fail_status=status, fail_mode=mode)
    monkeypatch.setenv("BENCH_TEST_KEY", SECRET)
    run = measure(settings(server, tmp_path, concurrency=[4], requests=20, api_key_env="BENCH_TEST_KEY"))
    lv = run.results[0]
    # every 4th of 20 requests fails: 5
    assert (lv["requests"], lv["completed"], lv["errors"], lv["error_rate"]) == (20, 15, 5, 0.25)
    assert lv["error_kinds"] == {kind: 5}
    assert lv["output_tokens"] == 15 * 6  # errors are not in the token totals
    failed = [r for r in reqs(run) if not r.ok]
    assert all(r.ttft is None or r.error != "http_500" for r in failed)
    assert all(SECRET not in (r.detail or "") for r in failed)
    if mode != "drop":  # the server echoed the key in its message: it must be blanked out
        assert all("Bearer ***" in r.detail for r in failed)


def test_usage_less_answers_are_counted_with_the_tokenizer(server, tmp_path, tokenizer):
    server.configure(tokens=20, usage=False)
    assert len(tokenizer(" hello" * 20, add_special_tokens=False)["input_ids"]) == 20  # the server's text
    s = settings(server, tmp_path, requests=4)
    run = measure(s)
    lv = run.results[0]
    assert lv["tokens_from"] == "tokenizer" and lv["output_tokens"] == 4 * 20
    expected_in = sum(len(tokenizer(tokenizer.apply_chat_template(run.prompts.body(r.prompt)["messages"],
                                                                  tokenize=False, add_generation_prompt=True),
                                    add_special_tokens=False)["input_ids"]) for r in reqs(run))
    assert lv["input_tokens"] == expected_in


def test_the_completions_endpoint_streams_text_chunks(server, tmp_path):
    server.configure(tokens=7)
    lv = measure(settings(server, tmp_path, endpoint="completions", requests=6)).results[0]
    assert (lv["completed"], lv["output_tokens"], lv["itl_ms"]["max"] is not None) == (6, 42, True)


def test_requests_past_the_timeout_are_errors(server, tmp_path):
    server.configure(tokens=20, token_delay_ms=100)  # 2 s a request
    lv = measure(settings(server, tmp_path, requests=4, timeout_s=0.3)).results[0]
    # every request reached the server; the client gave up on each (a wait of 2 s would have completed it)
    assert (lv["completed"], lv["errors"], lv["error_kinds"]) == (0, 4, {"timeout": 4})
    assert server.stats()["count"] == 4 and lv["output_tokens"] == 0


def test_a_level_can_run_for_a_duration(server, tmp_path):
    server.configure(tokens=5, token_delay_ms=20)  # about 100 ms a request
    lv = measure(settings(server, tmp_path, requests=None, duration_s=0.5)).results[0]
    # how many fit in 0.5 s depends on the machine; that every one started is finished and counted does not
    assert lv["requests"] == server.stats()["count"] and lv["completed"] == lv["requests"]
    assert lv["duration_s"] >= 0.5  # a floor: the level runs for its duration, then its last requests end


def test_constant_rate_is_achieved_and_poisson_gaps_vary(server, tmp_path):
    server.configure(tokens=4, token_delay_ms=5)
    const = measure(settings(server, tmp_path, rates=[20.0], arrival="constant", requests=30))
    lv, level = const.results[0], const.levels[0]
    assert lv["rate"] == 20.0 and lv["completed"] == 30
    # the schedule, not the clock: request i is due at i / 20 s, so the last at 1.45 s
    assert level.schedule == pytest.approx([i / 20 for i in range(30)])
    assert all(t - level.start >= due for t, due in zip(level.launches, level.schedule))  # never early
    assert lv["achieved_rate"] == pytest.approx(29 / (level.launches[-1] - level.launches[0]), rel=1e-3)
    timed = measure(settings(server, tmp_path, rates=[20.0], arrival="constant", requests=None, duration_s=0.5))
    assert timed.results[0]["requests"] == 10  # due at 0, 50, ..., 450 ms; the one due at 500 ms is not sent

    pois = measure(settings(server, tmp_path, rates=[40.0], arrival="poisson", requests=60, seed=3))
    due = pois.levels[0].schedule
    gaps = [b - a for a, b in zip(due, due[1:])]
    mean = sum(gaps) / len(gaps)
    cv = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5 / mean
    assert cv > 0.6  # exponential gaps have CV 1; the constant schedule's are 0
    # 59 exponential gaps at 40/s: the sample mean is within 3 standard errors (39%) of 25 ms
    assert mean == pytest.approx(1 / 40, rel=0.39)


def test_max_concurrency_caps_an_open_loop(server, tmp_path):
    server.configure(tokens=10, token_delay_ms=20)  # 200 ms a request, 50 req/s offered: they pile up
    lv = measure(settings(server, tmp_path, rates=[50.0], arrival="constant", max_concurrency=3,
                          requests=12)).results[0]
    assert lv["completed"] == 12 and lv["max_in_flight"] == 3 and lv["concurrency"] == 3
    assert server.stats()["max_in_flight"] == 3


@pytest.mark.slow
def test_several_hundred_concurrent_requests_are_all_answered_or_counted(server, tmp_path):
    # 1 s a request: longer than opening 300 connections takes here (~0.6 s), so they overlap
    server.configure(tokens=20, token_delay_ms=50)
    lv = measure(settings(server, tmp_path, concurrency=[300], requests=300, timeout_s=60)).results[0]
    assert lv["requests"] == 300 and lv["completed"] + lv["errors"] == 300
    assert lv["completed"] == 300, lv["error_kinds"]
    assert lv["max_in_flight"] == 300 and server.stats()["max_in_flight"] > 150
    assert httpx.get(server.url + "/health").json() == {"status": "ok", "in_flight": 0}


@pytest.mark.slow
def test_the_cpu_engine_answers_several_hundred_concurrent_requests_and_stays_healthy(tmp_path, monkeypatch):
    """The real CPU engine (`gekro-ft serve --engine cpu`, bundled model, API key on): 300 requests
    at once against batches of 8. About a minute here."""
    from serving import free_port, server_process

    port = free_port()
    monkeypatch.setenv("BENCH_ENGINE_KEY", "engine-key-for-tests")
    args = ["serve", "--engine", "cpu", "--port", str(port), "--api-key-env", "BENCH_ENGINE_KEY"]
    with server_process(args, port, log=tmp_path / "server.log"):
        url = f"http://127.0.0.1:{port}"
        load = dict(url=url, model="smollm2-135m-instruct", out_dir=tmp_path, synthetic_input_tokens=8,
                    max_tokens=2, warmup=0, timeout_s=300, api_key_env="BENCH_ENGINE_KEY")
        run = measure(BenchSettings(**load, concurrency=[300], requests=300))
        lv = run.results[0]
        assert run.server.engine == "cpu" and lv["max_in_flight"] == 300
        assert lv["requests"] == 300 and lv["completed"] + lv["errors"] == 300
        assert lv["completed"] == 300, lv["error_kinds"]  # the engine queues up to 1024: none refused
        health = httpx.get(url + "/health").json()
        assert (health["status"], health["running"], health["waiting"]) == ("ok", 0, 0)
        after = measure(BenchSettings(**load, concurrency=[1], requests=2)).results[0]
        assert after["completed"] == 2 and after["output_tokens"] >= 2


def test_engine_comes_from_the_servers_model_list_else_the_option(server, tmp_path):
    server.configure(tokens=2, owned_by="vllm")
    assert measure(settings(server, tmp_path, requests=1)).server.engine == "vllm"
    server.configure(tokens=2, owned_by="gekro-ft-cpu")
    assert measure(settings(server, tmp_path, requests=1)).server.engine == "cpu"
    server.configure(tokens=2)
    info = measure(settings(server, tmp_path, requests=1, engine="sglang")).server
    assert (info.engine, info.engine_from, info.models) == ("sglang", "--engine", ["fake-base", "fake-adapter"])


def test_warmup_requests_are_left_out(server, tmp_path):
    server.configure(tokens=3)
    run = measure(settings(server, tmp_path, requests=5, warmup=3))
    assert run.warmup == {"requests": 3, "errors": 0} and run.results[0]["requests"] == 5
    assert server.stats()["count"] == 8


def test_a_wrong_model_or_key_or_dead_server_fails_before_the_load(server, tmp_path, monkeypatch):
    server.configure(tokens=2)
    with pytest.raises(GekroError, match="'nope' is not served.*fake-base, fake-adapter"):
        measure(settings(server, tmp_path, model="nope"))
    server.configure(tokens=2, api_key="right-key")
    monkeypatch.setenv("BENCH_TEST_KEY", SECRET)
    with pytest.raises(GekroError, match="401") as e:
        measure(settings(server, tmp_path, api_key_env="BENCH_TEST_KEY"))
    assert SECRET not in str(e.value)
    monkeypatch.setenv("BENCH_TEST_KEY", "right-key")
    assert measure(settings(server, tmp_path, api_key_env="BENCH_TEST_KEY", requests=2)).results[0]["completed"] == 2
    server.configure(tokens=2, fail_every=1)
    with pytest.raises(GekroError, match="every warmup request failed: http_500"):
        measure(settings(server, tmp_path, warmup=2))
    with pytest.raises(GekroError, match="cannot reach http://127.0.0.1:9/v1/models"):
        measure(settings(server, tmp_path, url="http://127.0.0.1:9"))


# ---------------------------------------------------------------- outputs, CLI, MLflow


CONTRACT_LEVEL_KEYS = {"concurrency", "rate", "requests", "completed", "errors", "error_rate", "duration_s",
                       "request_throughput", "output_tokens_per_s", "total_tokens_per_s", "input_tokens",
                       "output_tokens", "ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "goodput_rps"}


@pytest.fixture
def bench_cli(cli):
    from gekro_ft.cli import main
    from gekro_ft.cli.bench import bench

    if "bench" not in main.commands:
        main.add_command(bench)
    return cli


def test_cli_writes_the_contract_and_keeps_the_key_out(server, tmp_path, bench_cli, monkeypatch):
    server.configure(tokens=5, fail_every=7)
    monkeypatch.setenv("BENCH_TEST_KEY", SECRET)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "out"
    r = bench_cli("bench", "--url", server.url, "--model", "fake-adapter", "--synthetic-input-tokens", 12,
                  "-c", "1,3", "-n", 14, "--max-tokens", 64, "--warmup", 0, "--goodput", "ttft_ms=1000",
                  "--api-key-env", "BENCH_TEST_KEY", "--out", out)
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "bench.json").read_text())
    assert doc["schema_version"] == 1 and doc["command"][:2] == ["gekro-ft", "bench"]
    assert doc["settings"]["max_tokens"] == 64 and doc["settings"]["mode"] == "concurrency"
    assert doc["settings"]["api_key_env"] == "BENCH_TEST_KEY"
    assert doc["server_models"] == ["fake-base", "fake-adapter"] and doc["engine"] == "unknown"
    assert {"cpu", "gpu"} <= set(doc["hardware"])
    assert [lv["concurrency"] for lv in doc["levels"]] == [1, 3]
    for lv in doc["levels"]:
        assert CONTRACT_LEVEL_KEYS <= set(lv) and lv["rate"] is None
        assert {"mean", "p50", "p90", "p95", "p99"} <= set(lv["ttft_ms"])
    # server count runs on across levels: requests 7 and 14 of level 1, then 21 and 28 in level 2
    assert [lv["errors"] for lv in doc["levels"]] == [2, 2]
    lines = (out / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 28 and sum(not json.loads(x)["ok"] for x in lines) == 4
    for name in ("bench.json", "requests.jsonl", "bench.md", "bench.html", "bench.png"):
        assert SECRET not in (out / name).read_bytes().decode("utf-8", "replace"), name
    assert SECRET not in r.output and "http_500 × 2" in r.output
    assert "data:image/png;base64," in (out / "bench.html").read_text()
    # the recorded command repeats the run (the key by its variable's name)
    assert doc["command"][doc["command"].index("--api-key-env") + 1] == "BENCH_TEST_KEY"
    again = bench_cli(*doc["command"][1:-2], "--out", tmp_path / "again", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["settings"] == {**doc["settings"], "out_dir": str(tmp_path / "again")}


def test_cli_errors_are_one_line_with_exit_2(server, tmp_path, bench_cli):
    server.configure(tokens=2)
    common = ["--url", server.url, "--synthetic-input-tokens", 5, "--out", tmp_path / "o"]
    r = bench_cli("bench", "--model", "nope", *common)
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "model 'nope' is not served" in r.output
    r = bench_cli("bench", "--model", "fake-base", *common, "-c", 2, "--rate", 1)
    assert r.exit_code == 2 and "not both" in r.output
    r = bench_cli("bench", "--model", "fake-base", *common, "--goodput", "speed=3")
    assert r.exit_code == 2 and "bad goodput target 'speed=3'" in r.output
    r = bench_cli("bench", "--model", "fake-base", "--url", server.url, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "--prompts FILE or --synthetic-input-tokens" in r.output
    r = bench_cli("bench", "--model", "fake-base", *common, "--api-key-env", "GEKRO_BENCH_UNSET_VAR")
    assert r.exit_code == 2 and "GEKRO_BENCH_UNSET_VAR is not set" in r.output


def test_rate_mode_cli_with_dataset_prompts(server, tmp_path, bench_cli):
    server.configure(tokens=3)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"instruction": f"say {i}", "output": "ok"} for i in range(3)])
    out = tmp_path / "rate"
    r = bench_cli("bench", "--url", server.url + "/v1", "-m", "fake-base", "--prompts", prompts, "--rate", "10,20",
                  "--arrival", "constant", "-n", 6, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [(lv["rate"], lv["concurrency"], lv["completed"]) for lv in doc["levels"]] == [(10.0, None, 6),
                                                                                         (20.0, None, 6)]
    assert doc["prompts"]["source"].endswith("3 prompts") and doc["settings"]["mode"] == "rate"
    assert "rate (req/s)" in (out / "bench.md").read_text()


@pytest.mark.slow
def test_mlflow_run_has_params_per_level_metrics_and_the_json(server, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    server.configure(tokens=4)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BENCH_TEST_KEY", SECRET)
    monkeypatch.chdir(tmp_path)  # the artifact store defaults to ./mlruns
    doc = run_bench(settings(server, tmp_path, concurrency=[1, 2], requests=4, api_key_env="BENCH_TEST_KEY"))
    client = MlflowClient(uri)
    run = client.get_run(doc["mlflow"]["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "gekro-ft-bench"
    assert run.data.params["model"] == "fake-base" and run.data.params["api_key_env"] == "BENCH_TEST_KEY"
    assert SECRET not in json.dumps(run.data.params) + json.dumps(run.data.tags)
    history = client.get_metric_history(run.info.run_id, "request_throughput")
    assert sorted(m.step for m in history) == [1, 2]  # step = concurrency
    assert {m.step: m.value for m in history} == {lv["concurrency"]: lv["request_throughput"] for lv in doc["levels"]}
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"bench.json", "requests.jsonl", "bench.html"} <= names
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "bench.json",
                                                       str(tmp_path / "dl"))).read_text())
    assert logged["mlflow"]["run_id"] == run.info.run_id and logged["levels"] == doc["levels"]


def test_cli_help_does_not_import_heavy_modules():
    heavy = ("torch", "numpy", "matplotlib", "aiohttp", "httpx", "mlflow", "transformers")
    code = f"import sys; from gekro_ft.cli.bench import bench; print([m for m in {heavy!r} if m in sys.modules])"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(FAKE.parent.parent)})
    assert res.stdout.strip() == "[]"


# ---------------------------------------------------------------- where the key goes (gekro_ft/keys.py)


def test_openai_api_key_is_not_sent_to_another_server_unless_named_for_it(server, tmp_path, monkeypatch):
    server.configure(tokens=2, api_key=SECRET)  # the server wants this key: a 401 shows it was not sent
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with pytest.raises(GekroError, match="401.*--api-key-env") as e:
        measure(settings(server, tmp_path, api_key_env=None))  # no --api-key-env: the default
    assert SECRET not in str(e.value)
    named = settings(server, tmp_path, api_key_env="OPENAI_API_KEY", requests=2)  # --api-key-env names it
    run = measure(named)
    assert run.results[0]["completed"] == 2


def test_a_key_is_refused_over_plain_http_to_another_machine(tmp_path, bench_cli, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", SECRET)
    r = bench_cli("bench", "--url", "http://alice:hunter2@192.0.2.1:8000", "--model", "m",
                  "--synthetic-input-tokens", 5, "--api-key-env", "BENCH_TEST_KEY", "--timeout", 2,
                  "--out", tmp_path / "o")
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert r.output.startswith("Error (api key): refusing to send the API key in BENCH_TEST_KEY to "
                               "http://192.0.2.1:8000: plain http://")
    assert SECRET not in r.output and "hunter2" not in r.output
    assert not (tmp_path / "o").exists()  # refused before anything was sent or written
