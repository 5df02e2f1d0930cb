"""The vLLM offline engine (``LLM.generate`` with a ``LoRARequest``) on the session's adapter.
vLLM is not installed in the test environment here: these run only where it is."""

from __future__ import annotations

import pytest

from conftest import REPO, oa, write_jsonl

vllm = pytest.importorskip("vllm")
pytestmark = pytest.mark.slow


def test_offline_engine_answers_tickets_and_refuses_a_row_too_long(trained_adapter, tmp_path):
    from gekro_ft.batch.job import read_lines
    from gekro_ft.batch.run import BatchSettings, run_batch

    adapter, _ = trained_adapter
    tickets = (REPO / "eval" / "ticket-extraction" / "openai.jsonl").read_text().splitlines()[:3]
    path = write_jsonl(tmp_path / "in.jsonl", [*tickets, oa(("user", "word " * 9000), ("assistant", "x"), id="long")])
    doc = run_batch(BatchSettings(model=str(adapter), input=path, output=tmp_path / "out.jsonl", engine="vllm",
                                  max_tokens=64))
    assert doc["engine"]["engine"] == "vllm-offline"
    assert (doc["this_run"]["answered"], doc["this_run"]["failed"]) == (3, 1)
    assert all(r["text"].strip().startswith("{") for r in read_lines(tmp_path / "out.jsonl"))
    errors = list(read_lines(tmp_path / "out.errors.jsonl"))
    assert [(e["error"]["line"], e["error"]["code"]) for e in errors] == [(4, "context_length_exceeded")]
