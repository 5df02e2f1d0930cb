"""Batch jobs on the real adapter served by the CPU engine (real server processes): killed
mid-way and resumed, every row answered exactly once and the same as the eval's answers for
the same prompts; bad rows named by line; an estimate through a registry reference."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from conftest import REPO, oa, write_jsonl
from gekro_ft.batch.job import read_lines
from serving import free_port, server_process

pytestmark = pytest.mark.slow

N = 4  # shipped eval tickets per job: few, their answers are about 45 tokens each
SUITE = REPO / "eval" / "ticket-extraction.yaml"
TOO_LONG = "word " * 9000  # about 9,000 tokens: over SmolLM2's 8,192-token context


def test_estimate_through_a_registry_reference_serves_it_and_logs_a_run(trained_adapter, tmp_path, monkeypatch):
    # first in the module, before the shared server starts: one model-loading process at a time
    import mlflow

    from gekro_ft.batch.estimate import estimate_batch
    from gekro_ft.batch.run import BatchSettings
    from gekro_ft.cost.prices import load_prices

    _, uri = trained_adapter
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # where the session's adapter is registered
    path = tmp_path / "in.jsonl"
    path.write_text("".join((REPO / "eval" / "ticket-extraction" / "openai.jsonl").read_text()
                            .splitlines(keepends=True)[:N]))
    s = BatchSettings(model="models:/tickets/1", input=path, output=tmp_path / "unused.jsonl", concurrency=2,
                      max_tokens=64)
    doc = estimate_batch(s, sample=2, total=1000, out_dir=tmp_path / "est", apis=["gpt-4o-mini"])
    assert doc["engine"]["engine"] == "endpoint" and doc["engine"]["model"] == "batch"
    sample = doc["sample"]
    assert sample["answered"] == 2 and sample["output_tokens"] > 0
    hourly = load_prices().gpu_price("m7i-large-cpu").hourly_low
    # 1,000 rows at the sample's 2 rows per wall_s seconds, at $/h
    assert doc["providers"][0]["cost_usd"] == pytest.approx(hourly * 1000 / (2 / sample["wall_s"]) / 3600)
    run = mlflow.MlflowClient(uri).get_run(doc["mlflow"]["run_id"])
    assert run.data.tags["gekro_ft.batch"] == "estimate"
    assert run.data.metrics["cost_usd_gpt-4o-mini_standard"] == pytest.approx(doc["providers"][1]["cost_usd"])


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_adapter):
    """The session's adapter as ``tickets`` on one CPU engine for the module, and the eval's
    answers from it: the eval's own endpoint provider, the suite's generation settings."""
    from gekro_ft.eval.providers import make_provider
    from gekro_ft.eval.runner import load_examples
    from gekro_ft.eval.suite import load_suite

    adapter, _ = trained_adapter
    tmp = tmp_path_factory.mktemp("batch")
    port = free_port()
    with server_process(["serve", "--engine", "cpu", "--port", str(port), "--adapter", f"tickets={adapter}"],
                        port, log=tmp / "server.log"):
        url = f"http://127.0.0.1:{port}/v1"
        suite = load_suite(SUITE).model_copy(update={"limit": N})
        examples = load_examples(suite)
        endpoint = suite.endpoint.model_copy(update={"api_key_env": None, "max_retries": 0, "timeout_s": 900})
        answers = make_provider(url, "tickets", endpoint, tmp / "recordings").generate(
            [e.conv for e in examples], suite.generation)
        assert all(a.error is None for a in answers), [a.error for a in answers]
        yield SimpleNamespace(url=url, tmp=tmp, examples=examples, max_tokens=suite.generation.max_tokens,
                              eval_answers={e.id: a.text for e, a in zip(examples, answers)})


def _inputs(kind: str, served, path: Path) -> tuple[Path, dict[int, str]]:
    """N tickets, then three bad rows; returns the file and the error code expected per line."""
    if kind == "dataset":
        lines = (REPO / "eval" / "ticket-extraction" / "openai.jsonl").read_text().splitlines()[:N]
        bad = [orjson.dumps(oa(("user", TOO_LONG), ("assistant", "x"), id="long")).decode(),
               '{"messages": [{"role": "user", "content": "cut',
               orjson.dumps(oa(("user", "again"), ("assistant", "x"), id=served.examples[0].id)).decode()]
    else:
        def line(cid: str, messages: list) -> str:
            return orjson.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"model": "gpt-4o-mini", "messages": messages, "temperature": 0,
                                          "max_tokens": served.max_tokens}}).decode()

        lines = [line(e.id, e.conv.prompt_messages()) for e in served.examples]
        bad = [line("long", [{"role": "user", "content": TOO_LONG}]), '{"custom_id": "cut", "method": "PO',
               line(served.examples[0].id, [{"role": "user", "content": "again"}])]
    write_jsonl(path, lines + bad)
    return path, {N + 1: "context_length_exceeded", N + 2: "invalid_json", N + 3: "duplicate_id"}


@pytest.mark.parametrize("kind", ["dataset", "openai-batch"])
def test_killed_job_resumes_to_every_row_once_matching_the_eval(served, tmp_path, kind):
    path, expected_errors = _inputs(kind, served, tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "gekro_ft.cli", "batch", "run", "--url", served.url, "--model", "tickets",
           "-c", "2", "--max-tokens", str(served.max_tokens), "--suite", str(SUITE), str(path), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (out.exists() and out.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    first = list(read_lines(out))
    assert 0 < len(first) < N
    with open(out, "ab") as f:  # what a SIGKILL in the middle of a write leaves
        f.write(b'{"id": "half an ans')

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert f"skipped {len(first)} rows answered before" in done.stderr

    lines = list(read_lines(out))
    key = "custom_id" if kind == "openai-batch" else "id"
    assert sorted(r[key] for r in lines) == sorted(served.eval_answers)  # every row exactly once
    assert out.read_bytes().endswith(b"\n")  # the torn line is gone
    if kind == "openai-batch":
        from openai.types.chat import ChatCompletion

        texts = {r["custom_id"]: ChatCompletion.model_validate(r["response"]["body"]).choices[0].message.content
                 for r in lines}
    else:
        texts = {r["id"]: r["text"] for r in lines}
    assert texts == served.eval_answers

    from openai.types import BatchError

    errors = [BatchError.model_validate(e["error"]) for e in read_lines(tmp_path / "out.errors.jsonl")]
    assert {e.line: e.code for e in errors} == expected_errors
    report = orjson.loads((tmp_path / "out.report" / "batch.json").read_bytes())
    assert report["this_run"]["torn_bytes_cut"] == len(b'{"id": "half an ans')
    assert report["job"]["answered"] == N and report["checks"]["checked"] == N
