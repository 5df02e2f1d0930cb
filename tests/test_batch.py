"""Batch jobs without a model: input readers, the resumable job files, and whole jobs against
the fake OpenAI-compatible server (a real process) — errors by line, retries, resume, signals,
OpenAI batch output parsed by the openai library, and the estimate's arithmetic."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from conftest import oa, write_jsonl
from serving import fake_openai
from gekro_ft.batch.inputs import read_batch_rows
from gekro_ft.batch.job import JobFiles, errors_path, read_lines
from gekro_ft.batch.run import BatchSettings, run_batch
from gekro_ft.errors import BatchError

FAKE = Path(__file__).with_name("fake_openai_server.py")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fake():
    """The fake server as a real process on a free port; its config is set per test."""
    with fake_openai() as server:
        url = server.url
        def configure(**cfg):
            assert httpx.post(url + "/fake/config", json={"tokens": 5, "token_delay_ms": 0, "fail_every": 0,
                                                          **cfg}).status_code == 200

        yield SimpleNamespace(url=url + "/v1", configure=configure, stats=lambda: httpx.get(url + "/fake/stats").json())


def batch_line(custom_id: str, content: str, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **body}}


def settings(fake, tmp_path: Path, input_: Path, **kw) -> BatchSettings:
    kw.setdefault("max_tokens", 5)
    return BatchSettings(model=None, input=input_, output=tmp_path / "out.jsonl", url=fake.url,
                         served_model="fake-adapter", **kw)


# ---------------------------------------------------------------- reading inputs


def test_dataset_rows_ask_the_conversation_up_to_its_last_assistant_turn(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        oa(("system", "be brief"), ("user", "2+2?"), ("assistant", "4"), id="q1"),
        oa(("user", "hi"), ("assistant", "hello"), ("user", "bye"), ("assistant", "ciao")),
        "{not json",
        oa(("assistant", "no question")),
        oa(("user", "again"), ("assistant", "x"), id="q1"),
    ])
    rows = list(read_batch_rows(path))
    assert rows[0].id == "q1" and rows[0].body == {"messages": [{"role": "system", "content": "be brief"},
                                                                {"role": "user", "content": "2+2?"}]}
    # the prompt stops before the LAST assistant turn: the earlier exchange stays in it
    assert [m["content"] for m in rows[1].body["messages"]] == ["hi", "hello", "bye"]
    assert rows[1].id == "1"  # no id field: the row number, as eval numbers its examples
    assert (rows[2].line, rows[2].error[0]) == (3, "invalid_json")
    assert (rows[3].line, rows[3].error[0]) == (4, "no_prompt")
    assert (rows[4].line, rows[4].error) == (5, ("duplicate_id", "duplicate id 'q1' (first on line 1)"))


def test_openai_batch_rows_and_their_problems_by_line(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [
        batch_line("a", "hi", max_tokens=7),
        {"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}},
        batch_line("a", "again"),
        {"method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}},
        "[1, 2",
    ])
    rows = list(read_batch_rows(path))
    assert rows[0].id == "a" and rows[0].body == {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}
    assert [(r.line, r.error[0]) for r in rows[1:]] == [(2, "unsupported_url"), (3, "duplicate_id"),
                                                       (4, "missing_custom_id"), (5, "invalid_json")]


def test_plain_prompts_from_a_text_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("first prompt\n\nsecond prompt\n")
    rows = list(read_batch_rows(path))
    assert [(r.id, r.line, r.body["messages"][0]["content"]) for r in rows] == [
        ("0", 1, "first prompt"), ("1", 3, "second prompt")]


# ---------------------------------------------------------------- the job files


def test_a_torn_last_line_is_cut_and_answered_rows_are_known(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n{"id": "c", "te')  # killed mid-write
    files = JobFiles(out)
    assert files.torn_bytes == len(b'{"id": "c", "te') and files.done == {"a", "b"}
    with files:
        files.answer("c", {"id": "c", "text": "z"})
    assert [r["id"] for r in read_lines(out)] == ["a", "b", "c"]
    assert out.read_bytes().endswith(b"\n")
    assert errors_path(out) == tmp_path / "out.errors.jsonl"


def test_the_output_may_not_be_the_input(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "x"}])
    with pytest.raises(Exception) as e:
        JobFiles(path, inputs=(path,))
    assert "input" in str(e.value)


# ---------------------------------------------------------------- whole jobs on the fake server


def test_openai_batch_job_output_parses_with_the_openai_types_and_a_rerun_skips_it(fake, tmp_path):
    from openai.types import BatchError as OpenAIBatchError
    from openai.types.chat import ChatCompletion

    fake.configure()
    path = write_jsonl(tmp_path / "in.jsonl", [batch_line(f"r{i}", f"question {i}") for i in range(6)]
                       + ["{torn", batch_line("r2", "dup")])
    doc = run_batch(settings(fake, tmp_path, path))
    lines = list(read_lines(tmp_path / "out.jsonl"))
    assert sorted(r["custom_id"] for r in lines) == [f"r{i}" for i in range(6)]
    for r in lines:
        assert r["response"]["status_code"] == 200 and r["error"] is None
        completion = ChatCompletion.model_validate(r["response"]["body"])
        assert completion.choices[0].message.content == " hello" * 5  # the fake's 5 tokens
    errors = list(read_lines(tmp_path / "out.errors.jsonl"))
    parsed = sorted((OpenAIBatchError.model_validate(e["error"]) for e in errors), key=lambda e: e.line)
    assert [(e.line, e.code) for e in parsed] == [(7, "invalid_json"), (8, "duplicate_id")]
    assert doc["this_run"]["answered"] == 6 and doc["this_run"]["failed"] == 2
    assert doc["job"]["output_tokens"] == 6 * 5
    for name in ("batch.json", "batch.md", "batch.html"):
        assert (tmp_path / "out.report" / name).is_file()

    sent = fake.stats()["count"]
    again = run_batch(settings(fake, tmp_path, path))
    assert again["this_run"]["skipped_done"] == 6 and again["this_run"]["answered"] == 0
    assert fake.stats()["count"] == sent  # nothing asked twice
    assert len(list(read_lines(tmp_path / "out.jsonl"))) == 6


def test_an_upstream_error_after_retries_is_filed_and_the_rerun_asks_it_again(fake, tmp_path):
    # every 2nd request fails with 500; with no retries, 2 of the 4 rows fail and the job goes on
    fake.configure(fail_every=2, fail_status=500)
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}", "id": f"k{i}"} for i in range(4)])
    doc = run_batch(settings(fake, tmp_path, path, max_retries=0, concurrency=1))
    assert (doc["this_run"]["answered"], doc["this_run"]["failed"]) == (2, 2)
    errors = list(read_lines(tmp_path / "out.errors.jsonl"))
    assert {(e["custom_id"], e["error"]["line"], e["response"]["status_code"]) for e in errors} == {
        ("k1", 2, 500), ("k3", 4, 500)}
    fake.configure()
    doc = run_batch(settings(fake, tmp_path, path))
    assert (doc["this_run"]["skipped_done"], doc["this_run"]["answered"]) == (2, 2)
    assert sorted(r["id"] for r in read_lines(tmp_path / "out.jsonl")) == ["k0", "k1", "k2", "k3"]
    assert list(read_lines(tmp_path / "out.errors.jsonl")) == []  # the errors file is the latest run's


def test_a_failed_request_is_asked_again_and_answered(fake, tmp_path):
    # every 2nd request the server gets fails with 503: each such row's one retry is answered
    fake.configure(fail_every=2, fail_status=503)
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}", "id": f"k{i}"} for i in range(3)])
    doc = run_batch(settings(fake, tmp_path, path, max_retries=1, concurrency=1))
    assert (doc["this_run"]["answered"], doc["this_run"]["failed"]) == (3, 0)
    assert fake.stats()["count"] == 5  # k0; k1 failed then answered; k2 failed then answered


def test_a_client_error_is_not_retried_and_names_its_code(fake, tmp_path):
    fake.configure(fail_every=1, fail_status=400)
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p", "id": "k0"}])
    doc = run_batch(settings(fake, tmp_path, path, max_retries=3))
    assert doc["this_run"]["failed"] == 1 and fake.stats()["count"] == 1
    (error,) = read_lines(tmp_path / "out.errors.jsonl")
    assert error["response"]["status_code"] == 400 and error["error"]["code"]


def test_suite_checks_share_of_json_answers(fake, tmp_path):
    fake.configure()  # " hello hello ..." is not JSON
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    doc = run_batch(settings(fake, tmp_path, path, suite=str(REPO / "eval" / "ticket-extraction.yaml")))
    assert doc["checks"]["passed"] == {"json_valid": 0, "json_schema_valid": 0}
    assert doc["checks"]["share"] == {"json_valid": 0.0, "json_schema_valid": 0.0}


@pytest.mark.slow
def test_sigterm_stops_the_job_with_exit_130_and_the_rerun_finishes_it(fake, tmp_path):
    # 20 tokens 50 ms apart: about a second an answer, so the job is mid-way when stopped
    fake.configure(tokens=20, token_delay_ms=50)
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}", "id": f"k{i}"} for i in range(12)])
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "gekro_ft.cli", "batch", "run", "--url", fake.url, "--model", "fake-adapter",
           "-c", "2", str(path), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Error (interrupted): stopped by SIGTERM" in stderr and "Traceback" not in stderr
    first = [r["id"] for r in read_lines(out)]
    assert 0 < len(first) < 12
    fake.configure(tokens=2)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"skipped {len(first)} rows answered before" in done.stderr
    ids = [r["id"] for r in read_lines(out)]
    assert sorted(ids) == sorted(f"k{i}" for i in range(12))  # every row exactly once


def test_estimate_figures_follow_from_the_sample_and_the_price_table(fake, tmp_path):
    from gekro_ft.batch.estimate import estimate_batch
    from gekro_ft.cost.prices import load_prices

    fake.configure(tokens=8)
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(10)])
    doc = estimate_batch(settings(fake, tmp_path, path, max_tokens=16), sample=4, total=1_000_000, out_dir=tmp_path / "est",
                         apis=["gpt-4o-mini", "claude-3.5-haiku"])
    s = doc["sample"]
    assert (s["answered"], s["output_tokens"]) == (4, 4 * 8)
    table = load_prices()
    hourly = table.gpu_price("m7i-large-cpu").hourly_low
    # the corpus: 10^6 rows x 8 output tokens; at the sample's rows/s the local machine takes
    # 10^6 / (4 / wall) seconds and costs $/h x those hours
    local_s = 1_000_000 / (4 / s["wall_s"])
    local = doc["providers"][0]
    assert local["wall_s"] == pytest.approx(local_s)
    assert local["cost_usd"] == pytest.approx(hourly * local_s / 3600)
    in_total = 1_000_000 * s["input_tokens"] / 4
    out_total = 1_000_000 * 8
    by = {(p["provider"], p["tier"]): p for p in doc["providers"]}
    mini = table.api_price("gpt-4o-mini")
    # gpt-4o-mini standard: $0.15/1M in, $0.60/1M out; batch half of each
    assert by["gpt-4o-mini", "standard"]["cost_usd"] == pytest.approx(in_total * 0.15 / 1e6 + out_total * 0.60 / 1e6)
    assert by["gpt-4o-mini", "batch"]["cost_usd"] == pytest.approx(in_total * 0.075 / 1e6 + out_total * 0.30 / 1e6)
    assert by["gpt-4o-mini", "standard"]["x_local"] == pytest.approx(by["gpt-4o-mini", "standard"]["cost_usd"]
                                                                    / local["cost_usd"])
    # tier 1: 500 requests/min and 200,000 tokens/min; 10^6 requests take 2,000 min unless the tokens bind
    limit = mini.rate_limits["tier-1"]
    assert by["gpt-4o-mini", "standard"]["wall_s"] == pytest.approx(
        60 * max(1_000_000 / limit.requests_per_min, (in_total + out_total) / limit.tokens_per_min))
    haiku = table.api_price("claude-3.5-haiku").rate_limits["tier-1"]  # it has an output-token limit too
    assert by["claude-3.5-haiku", "standard"]["wall_s"] == pytest.approx(60 * max(
        1_000_000 / haiku.requests_per_min, (in_total + out_total) / haiku.tokens_per_min,
        out_total / haiku.output_tokens_per_min))
    assert by["gpt-4o-mini", "batch"]["wall_s"] is None  # a batch tier's wall clock is not claimed
    for name in ("estimate.json", "estimate.md", "estimate.html", "estimate.png"):
        assert (tmp_path / "est" / name).is_file()
    assert json.loads((tmp_path / "est" / "estimate.json").read_text())["schema_version"] == 1


SECRET = "sk-test-0123456789abcdef-never-in-output"

STAND_IN_PRICES = """
api:
  stand-in:                 # an API asked through OPENAI_BASE_URL: the fake server
    ask: openai:fake-base
    input_per_m: 1.0
    output_per_m: 2.0
    batch_input_per_m: 0.5
    batch_output_per_m: 1.0
    rate_limits: {tier-1: {requests_per_min: 100, tokens_per_min: 10000}}
    as_of: 2025-06-01
    source: https://example.com/prices
  unkeyed:                  # its provider's key is not set: priced on the local sample's tokens
    ask: anthropic:fake-base
    input_per_m: 3.0
    output_per_m: 4.0
    as_of: 2025-06-01
    source: https://example.com/prices
"""


@pytest.fixture
def stand_in_api(tmp_path, monkeypatch):
    """A second fake server standing in for OpenAI's API (3-token answers, wants SECRET), reached
    as eval reaches it: OPENAI_BASE_URL and OPENAI_API_KEY."""
    with fake_openai("--tokens", "3", "--api-key", SECRET) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
            monkeypatch.delenv(var, raising=False)
        prices = tmp_path / "prices.yaml"
        prices.write_text(STAND_IN_PRICES)

        def configure(**cfg):
            assert httpx.post(server.url + "/fake/config",
                              json={"tokens": 3, "api_key": SECRET, **cfg}).status_code == 200

        yield SimpleNamespace(prices=prices, configure=configure,
                              count=lambda: httpx.get(server.url + "/fake/stats").json()["count"])


def _no_secret_under(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_estimate_asks_an_api_whose_key_is_set_records_its_answers_and_replays_them(
        fake, stand_in_api, tmp_path, cli, monkeypatch):
    from gekro_ft.batch.estimate import estimate_batch
    from gekro_ft.cost.prices import load_prices

    fake.configure(tokens=8)  # the local model answers 8 tokens a row, the API 3
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"question number {i}"} for i in range(10)])
    s = settings(fake, tmp_path, path, max_tokens=16)
    est = tmp_path / "est"
    doc = estimate_batch(s, sample=4, total=1000, out_dir=est, prices=stand_in_api.prices,
                         apis=["stand-in", "unkeyed"])
    asked = doc["api_samples"]["stand-in"]
    assert stand_in_api.count() == 4  # the sample's 4 rows, once each
    assert (asked["tokens_from"], asked["answered"], asked["requests_sent"], asked["from_recording"]) == (
        "measured", 4, 4, 0)
    assert (asked["input_tokens"], asked["output_tokens"]) == (4 * 3, 4 * 3)  # the fake counts 3 words a prompt
    assert doc["api_samples"]["unkeyed"]["tokens_from"] == "local sample"
    assert "ANTHROPIC_API_KEY is not set" in doc["api_samples"]["unkeyed"]["why"]

    # every figure again, from the sample's measured tokens and the price table
    table = load_prices(stand_in_api.prices)
    by = {(p["provider"], p["tier"]): p for p in doc["providers"]}
    api_in, api_out = 1000 * 12 / 4, 1000 * 12 / 4  # the API's own counts, per row x 1000 rows
    local_in, local_out = 1000 * doc["sample"]["input_tokens"] / 4, 1000 * 8
    line = by["stand-in", "standard"]
    assert (line["tokens_from"], line["output_tokens_per_row"]) == ("measured", 3)
    assert line["cost_usd"] == pytest.approx(api_in * 1.0 / 1e6 + api_out * 2.0 / 1e6)
    assert by["stand-in", "batch"]["cost_usd"] == pytest.approx(api_in * 0.5 / 1e6 + api_out * 1.0 / 1e6)
    limit = table.api_price("stand-in").rate_limits["tier-1"]
    assert line["wall_s"] == pytest.approx(60 * max(1000 / limit.requests_per_min,
                                                    (api_in + api_out) / limit.tokens_per_min))
    assert line["x_local"] == pytest.approx(line["cost_usd"] / by["local (m7i-large-cpu)", "self-hosted"]["cost_usd"])
    assumed = by["unkeyed", "standard"]
    assert (assumed["tokens_from"], assumed["output_tokens_per_row"]) == ("local sample", 8)
    assert assumed["cost_usd"] == pytest.approx(local_in * 3.0 / 1e6 + local_out * 4.0 / 1e6)
    md = (est / "estimate.md").read_text()
    assert "| stand-in | standard | 3.0 | measured by the API |" in md
    assert "| unkeyed | standard | 8.0 | assumed (local sample) |" in md

    # the same command again: the API's answers come from the recording, no request, same figures
    r = cli("batch", "estimate", "--url", fake.url, "--model", "fake-adapter", path, "--sample", 4, "--total", 1000,
            "--max-tokens", 16, "--prices", stand_in_api.prices, "--api", "stand-in", "--api", "unkeyed",
            "-o", est, "--json")
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert stand_in_api.count() == 4
    assert (again["api_samples"]["stand-in"]["requests_sent"], again["api_samples"]["stand-in"]["from_recording"]) == (0, 4)
    assert [p["cost_usd"] for p in again["providers"][1:]] == pytest.approx([p["cost_usd"] for p in doc["providers"][1:]])

    # a recording that holds the whole sample is replayed with no key at all, as eval replays
    monkeypatch.delenv("OPENAI_API_KEY")
    keyless = estimate_batch(s, sample=4, total=1000, out_dir=est, prices=stand_in_api.prices, apis=["stand-in"])
    assert keyless["api_samples"]["stand-in"]["tokens_from"] == "measured" and stand_in_api.count() == 4
    assert SECRET not in r.output
    _no_secret_under(est)


def test_estimate_api_failures_fall_back_to_the_local_sample_without_the_key(fake, stand_in_api, tmp_path, cli):
    # every request fails, and the fake echoes the Authorization header in its error, as a careless server may
    fake.configure(tokens=8)
    stand_in_api.configure(fail_every=1, fail_status=500)
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p{i}"} for i in range(3)])
    est = tmp_path / "est"
    r = cli("batch", "estimate", "--url", fake.url, "--model", "fake-adapter", path, "--sample", 2,
            "--prices", stand_in_api.prices, "--api", "stand-in", "-o", est, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    asked = doc["api_samples"]["stand-in"]
    assert asked["tokens_from"] == "local sample" and "HTTP 500" in asked["why"] and "***" in asked["why"]
    assert stand_in_api.count() >= 2
    assert not (est / "recordings" / "stand-in" / "fake-base.jsonl").exists()  # failures are never recorded
    assert SECRET not in r.output
    _no_secret_under(est)


def test_estimate_refuses_to_send_a_key_over_plain_http_before_running(fake, stand_in_api, tmp_path, monkeypatch):
    from gekro_ft.batch.estimate import estimate_batch
    from gekro_ft.errors import KeyRefusedError

    monkeypatch.setenv("OPENAI_BASE_URL", "http://api.example.com/v1")
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    sent = fake.stats()["count"]
    with pytest.raises(KeyRefusedError) as e:
        estimate_batch(settings(fake, tmp_path, path), out_dir=tmp_path / "e", prices=stand_in_api.prices,
                       apis=["stand-in"])
    assert "OPENAI_API_KEY" in str(e.value) and SECRET not in str(e.value)
    assert fake.stats()["count"] == sent  # nothing ran


def test_estimate_names_a_machine_missing_from_the_price_table_before_running(fake, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    from gekro_ft.batch.estimate import estimate_batch
    from gekro_ft.errors import PriceError

    sent = fake.stats()["count"]
    with pytest.raises(PriceError, match="no GPU price for 'tpu-9000'"):
        estimate_batch(settings(fake, tmp_path, path), out_dir=tmp_path / "e", machine="tpu-9000")
    assert fake.stats()["count"] == sent


# ---------------------------------------------------------------- the CLI


def test_cli_arguments(cli, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    r = cli("batch", "run", path)
    assert r.exit_code == 2 and "expected MODEL INPUT OUTPUT, got 1 argument(s)" in r.output
    r = cli("batch", "run", "--url", "http://127.0.0.1:9/v1", path, tmp_path / "o.jsonl")
    assert r.exit_code == 2 and "Error (batch): http://127.0.0.1:9/v1 is an endpoint: name its model with --model" in r.output
    r = cli("batch", "run", tmp_path, path, tmp_path / "o.jsonl")
    assert r.exit_code == 2 and "is neither an adapter directory" in r.output


def test_batch_error_is_in_the_error_table():
    from gekro_ft.cli.errors import exit_for

    assert exit_for(BatchError("x")) == (2, "Error (batch): x")


def _adapter_naming_its_base(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "smollm2-135m-instruct",
                                                             "r": 8}))
    return adapter


def test_engine_vllm_without_a_vllm_environment_says_how_to_get_one(tmp_path, monkeypatch):
    from gekro_ft.errors import MissingDependencyError
    from gekro_ft.runtime import is_vllm_available

    if is_vllm_available():
        pytest.skip("vLLM is installed here")
    monkeypatch.chdir(tmp_path)  # no ./.venv-vllm
    monkeypatch.delenv("GEKRO_FT_VLLM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    with pytest.raises(MissingDependencyError, match="the vllm engine needs vLLM") as e:
        run_batch(BatchSettings(model=str(_adapter_naming_its_base(tmp_path)), input=path,
                                output=tmp_path / "o.jsonl", engine="vllm"))
    assert "make vllm" in e.value.hint


def test_a_vllm_worker_that_dies_loading_is_an_error_with_its_log(tmp_path, monkeypatch):
    """A vLLM environment whose vLLM fails to load (here a stand-in package that raises, in a
    real virtual environment): the job says so, with the worker's log, and writes no answer."""
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    site = next((env / "lib").glob("python*/site-packages"))
    (site / "vllm").mkdir()
    (site / "vllm" / "__init__.py").write_text(
        "class LLM:\n    def __init__(self, **kwargs):\n"
        "        print('loading', kwargs['model'])\n        raise RuntimeError('no device for this model')\n")
    (site / "vllm" / "lora").mkdir()
    (site / "vllm" / "lora" / "__init__.py").write_text("")
    (site / "vllm" / "lora" / "request.py").write_text("class LoRARequest:\n    def __init__(self, *a):\n        pass\n")
    (site / "vllm-0.0.1.dist-info").mkdir()
    (site / "vllm-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.0.1\n")
    monkeypatch.setenv("GEKRO_FT_VLLM", str(env / "bin" / "python"))
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "p"}])
    with pytest.raises(BatchError, match=r"vLLM's worker exited \(1\) while loading the model") as e:
        run_batch(BatchSettings(model=str(_adapter_naming_its_base(tmp_path)), input=path,
                                output=tmp_path / "o.jsonl", engine="vllm"))
    assert "no device for this model" in str(e.value) and "\n" not in str(e.value)  # one line
    assert "loading " in (tmp_path / "o.report" / "vllm.log").read_text()  # what vLLM printed on stdout
    assert not (tmp_path / "o.jsonl").exists() or (tmp_path / "o.jsonl").read_text() == ""
