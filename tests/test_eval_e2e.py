"""The eval gate end to end: a trained adapter against the untuned base model served by the
CPU engine (a real server process, reached through the real `openai` client)."""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from conftest import REPO
from serving import free_port, make_adapter, server_process

pytestmark = pytest.mark.slow

BASE = "smollm2-135m-instruct"
KEY_ENV = "TEST_BASELINE_KEY"
LIMIT = 10  # tickets per eval: each test generates them all again for its candidate


@pytest.fixture(scope="module")
def setting(tmp_path_factory, trained_adapter, monkeypatch_module):
    adapter, uri = trained_adapter
    tmp = tmp_path_factory.mktemp("eval")
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch_module.setenv(KEY_ENV, "baseline-key-not-secret")
    suite = yaml.safe_load((REPO / "eval" / "ticket-extraction.yaml").read_text())
    suite.update(limit=LIMIT, data=str(REPO / "eval" / "ticket-extraction" / "openai.jsonl"))
    suite["metrics"][2]["schema"] = str(REPO / "eval" / "ticket-extraction" / "ticket.schema.json")
    suite["endpoint"].update(api_key_env=KEY_ENV, max_retries=0, timeout_s=900)  # a slow CPU is not a failure
    # The shipped gate (schema-valid >= 0.98) is for the full recipe; the session's adapter
    # trains 10 steps (valid JSON, categories still shaky), so the test gate asks what it can do.
    suite["gate"] = "candidate.field_f1 >= baseline.field_f1 + 0.2 and candidate.json_valid >= 0.95"
    (tmp / "suite.yaml").write_text(yaml.safe_dump(suite))
    port = free_port()
    with server_process(["serve", "--engine", "cpu", "--port", str(port), "--api-key-env", KEY_ENV], port,
                        log=tmp / "server.log"):
        yield {"tmp": tmp, "adapter": adapter, "suite": tmp / "suite.yaml", "url": f"http://127.0.0.1:{port}"}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def served_requests(url: str) -> int:
    return httpx.get(f"{url}/health").json()["requests"]


def run_eval(cli, s, candidate, out, *extra, baseline=None):
    args = ["eval", s["suite"], "--candidate", candidate, "--baseline", baseline or f"{s['url']}/v1",
            "--baseline-model", BASE, "--recordings", s["tmp"] / "recordings", "-o", s["tmp"] / out, "--json",
            *extra]
    result = cli(*args)
    return result, json.loads((s["tmp"] / out / "report.json").read_text())


def test_adapter_beats_base_passes_the_gate_and_is_promoted(cli, setting):
    from mlflow import MlflowClient

    s = setting
    result, report = run_eval(cli, s, s["adapter"], "first", "--promote")
    assert result.exit_code == 0, result.output
    cand, base = report["sides"]["candidate"]["aggregates"], report["sides"]["baseline"]["aggregates"]
    assert cand["field_f1"] > base["field_f1"] + 0.2 and cand["json_valid"] == 1.0
    assert report["gate"]["verdict"] == "pass" and all(c["held"] for c in report["gate"]["comparisons"])
    assert report["sides"]["baseline"]["requests_sent"] == LIMIT and report["sides"]["baseline"]["errors"] == 0
    assert report["promotion"]["changed"] and report["promotion"]["version"] == "1"
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("tickets", "champion").version) == "1"
    eval_run = client.get_run(report["mlflow"]["run_id"])
    assert eval_run.data.tags["gekro_ft.training_run_id"] == json.loads(
        (s["adapter"] / "gekro_ft.json").read_text())["mlflow_run_id"]
    assert eval_run.data.metrics["gate_passed"] == 1.0
    for name in ("report.md", "report.html", "aggregates.png"):
        assert (s["tmp"] / "first" / name).stat().st_size > 0
    html = (s["tmp"] / "first" / "report.html").read_text()
    assert "data:image/png;base64," in html and "PASS" in html
    assert "baseline-key-not-secret" not in (s["tmp"] / "first" / "report.json").read_text()

    listed = cli("models", "list", "tickets", "--json")
    row = json.loads(listed.output)[0]
    assert row["aliases"] == ["champion"] and row["verdict"] == "pass"


def test_rerun_replays_the_recording_without_a_request(cli, setting):
    s = setting
    before = served_requests(s["url"])
    result, report = run_eval(cli, s, s["adapter"], "second")
    assert result.exit_code == 0, result.output
    assert served_requests(s["url"]) == before
    assert report["sides"]["baseline"]["requests_sent"] == 0
    assert report["sides"]["baseline"]["from_recording"] == LIMIT


def test_a_bad_candidate_fails_with_exit_1(cli, setting):
    s = setting
    bad = make_adapter(s["tmp"] / "random-adapter")  # random LoRA weights: no JSON comes out
    result, report = run_eval(cli, s, bad, "bad")
    assert result.exit_code == 1, result.output
    assert report["gate"]["verdict"] == "fail"
    assert report["sides"]["candidate"]["aggregates"]["json_valid"] < 0.95


def test_an_unreachable_baseline_gives_exit_2(cli, setting):
    s = setting
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    result, report = run_eval(cli, s, s["adapter"], "unreachable", "--record-only", baseline=nowhere)
    assert result.exit_code == 2, result.output
    assert report["gate"]["verdict"] == "undecided" and f"{LIMIT} of {LIMIT} requests failed" in report["gate"]["reason"]
    assert report["sides"]["baseline"]["error_kinds"] == {"connection": LIMIT}
    assert "cannot connect to " + nowhere in report["examples"][0]["baseline"]["error"]
