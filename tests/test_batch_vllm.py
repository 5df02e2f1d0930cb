"""The vLLM offline engine (``LLM.generate`` with a ``LoRARequest``) on the session's adapter,
in vLLM's own environment (``make vllm``'s ``.venv-vllm`` here, through the batch worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, oa, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_python():
    from gekro_ft.errors import MissingDependencyError
    from gekro_ft.serve.vllm_program import find_vllm_python

    try:
        return find_vllm_python(cwd=REPO)
    except MissingDependencyError as e:
        pytest.skip(f"no vLLM environment: {e}")


def test_offline_engine_answers_tickets_as_openai_batch_output_and_refuses_a_row_too_long(
        vllm_python, trained_adapter, tmp_path, monkeypatch):
    from openai.types import BatchError
    from openai.types.chat import ChatCompletion

    from gekro_ft.batch.job import read_lines
    from gekro_ft.batch.run import BatchSettings, run_batch

    monkeypatch.chdir(REPO)  # where .venv-vllm is found
    adapter, _ = trained_adapter
    tickets = (REPO / "eval" / "ticket-extraction" / "openai.jsonl").read_text().splitlines()[:3]
    lines = [{"custom_id": f"t{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "tickets", "messages": __import__("json").loads(t)["messages"][:-1]}}
             for i, t in enumerate(tickets)]
    lines.append({"custom_id": "long", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "tickets", "messages": oa(("user", "word " * 9000))["messages"]}})
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    doc = run_batch(BatchSettings(model=str(adapter), input=path, output=out, engine="vllm", max_tokens=64))

    assert doc["engine"]["engine"] == "vllm-offline" and doc["engine"]["vllm"]
    assert (doc["this_run"]["answered"], doc["this_run"]["failed"]) == (3, 1)
    answers = list(read_lines(out))  # OpenAI's batch output lines, the body a chat completion
    assert sorted(a["custom_id"] for a in answers) == ["t0", "t1", "t2"]
    for a in answers:
        assert a["response"]["status_code"] == 200 and a["error"] is None
        body = ChatCompletion.model_validate(a["response"]["body"])
        assert body.choices[0].message.content.strip().startswith("{")  # the adapter's JSON
        assert body.usage.completion_tokens > 0 and body.model == "batch"
    errors = list(read_lines(tmp_path / "out.errors.jsonl"))
    assert [(e["custom_id"], BatchError.model_validate(e["error"]).line, e["error"]["code"]) for e in errors] == \
        [("long", 4, "context_length_exceeded")]
    # the worker's vLLM logs went to the job's log, not into the replies
    assert "vllm" in (tmp_path / "out.report" / "vllm.log").read_text().lower()
    assert not _processes_running("vllm_worker.py")  # the worker and what it forked are gone


def _processes_running(word: str) -> list[str]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if word in cmdline:
            found.append(cmdline)
    return found
