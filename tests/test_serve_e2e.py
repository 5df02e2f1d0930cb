"""Serving the trained adapter beside its base on the CPU engine, then benching it and turning
the measurements into the cost report: all against one real server process."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import REPO
from serving import adapter_server

pytestmark = pytest.mark.slow

BASE = "smollm2-135m-instruct"
TICKET = [{"role": "system", "content": "Extract the support ticket's fields as JSON with the keys customer, "
           "order_id, product, category (billing, shipping, technical or account) and urgency (low, normal or high). "
           "Use null for an order_id the ticket does not give."},
          {"role": "user", "content": "Hi, my HomeHub router (order ORD-12345) keeps dropping wifi. Urgent! Ana Ruiz"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_adapter):
    adapter, _ = trained_adapter
    tmp = tmp_path_factory.mktemp("served")
    with adapter_server(adapter, tmp) as url:
        yield {"url": url, "tmp": tmp}


def test_base_and_adapter_side_by_side_streamed_and_not(served):
    import openai

    c = openai.OpenAI(base_url=f"{served['url']}/v1", api_key="none", max_retries=0)
    assert [m.id for m in c.models.list().data] == [BASE, "tickets"]
    answers = {}
    for model in (BASE, "tickets"):
        whole = c.chat.completions.create(model=model, messages=TICKET, max_tokens=64, temperature=0)
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model=model, messages=TICKET, max_tokens=64, temperature=0, stream=True) if ch.choices)
        assert streamed == whole.choices[0].message.content
        answers[model] = whole.choices[0].message.content
    fields = json.loads(answers["tickets"])  # the adapter answers in the trained JSON shape
    assert set(fields) == {"customer", "order_id", "product", "category", "urgency"}
    with pytest.raises(ValueError):
        json.loads(answers[BASE])  # the untuned base answers in prose


def test_bench_sweep_then_cost_report(served, cli):
    out = served["tmp"] / "bench"
    result = cli("bench", "--url", served["url"], "--model", "tickets", "--prompts",
                 REPO / "eval" / "ticket-extraction" / "openai.jsonl", "--concurrency", "1,4", "--requests", "8",
                 "--max-tokens", "16", "--warmup", "1", "--out", out)
    assert result.exit_code == 0, result.output
    bench = json.loads((out / "bench.json").read_text())
    assert bench["engine"] == "cpu" and [lv["concurrency"] for lv in bench["levels"]] == [1, 4]
    for level in bench["levels"]:
        assert level["completed"] == 8 and level["errors"] == 0
        assert 0 < level["ttft_ms"]["p50"] <= level["e2el_ms"]["p50"]
    # 4 in flight were batched together (how much faster that is, is the bench's to measure, not a test's)
    assert httpx.get(f"{served['url']}/health").json()["largest_batch"] > 1

    report = served["tmp"] / "cost"
    result = cli("cost", "report", "--bench", out / "bench.json", "--gpu-hourly", "0.10", "--compare",
                 "gpt-4o-mini", "--out", report)
    assert result.exit_code == 0, result.output
    cost = json.loads((report / "cost.json").read_text())
    best = max(lv["output_tokens_per_s"] for lv in bench["levels"])
    # $0.10/h over the best measured tokens/s, per 1M output tokens at full load
    assert cost["full_load_usd_per_1m_output_tokens"] == pytest.approx(0.10 / (best * 3600) * 1e6, rel=1e-6)
    assert (report / "cost.md").exists() and (report / "cost.html").exists()
    assert list(report.glob("*.png"))
