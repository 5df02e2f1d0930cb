"""Suites, recordings and the endpoint provider against a real (fake-model) HTTP server process."""

from __future__ import annotations

import httpx
import pytest
import yaml

from conftest import DATASETS, REPO, oa, write_jsonl
from serving import fake_openai

SECRET = "sk-test-never-shown-0123456789"


@pytest.fixture(scope="module")
def fake():
    with fake_openai() as server:
        def configure(**fields):
            httpx.post(f"{server.url}/fake/config", json=fields).raise_for_status()

        yield server.url, configure


def convs(n):
    from gekro_ft.data.rows import read_rows

    path = REPO / "eval" / "ticket-extraction" / "openai.jsonl"
    return [r.conv for r in read_rows(path, "openai")][:n]


def provider(url, tmp_path, record_only=False, **endpoint):
    from gekro_ft.eval.providers import make_provider
    from gekro_ft.eval.suite import Endpoint

    return make_provider(f"{url}/v1", "fake-base", Endpoint(**{"max_retries": 0, **endpoint}),
                         tmp_path / "rec", record_only, key_env="FAKE_KEY")


def test_failures_are_counted_not_recorded_and_retried_on_the_next_run(fake, tmp_path, monkeypatch):
    from gekro_ft.eval.suite import Generation

    url, configure = fake
    monkeypatch.setenv("FAKE_KEY", SECRET)
    configure(tokens=3, fail_every=3, fail_status=500, api_key=SECRET)
    first = provider(url, tmp_path).generate(convs(9), Generation())
    failed = [a for a in first if a.error]
    assert len(failed) == 3 and {a.error_kind for a in failed} == {"http_500"}
    assert all(SECRET not in a.error for a in failed)  # the fake server echoes the key in its errors
    assert [a.text for a in first if not a.error] == [" hello hello hello"] * 6
    assert len((tmp_path / "rec" / "fake-base.jsonl").read_text().splitlines()) == 6

    configure(tokens=3, api_key=SECRET)
    second = provider(url, tmp_path)
    again = second.generate(convs(9), Generation())
    assert second.requests_sent == 3 and all(a.error is None for a in again)
    assert sum(a.cached for a in again) == 6


def test_429_is_retried_with_backoff(fake, tmp_path, monkeypatch):
    from gekro_ft.eval.suite import Generation

    url, configure = fake
    monkeypatch.setenv("FAKE_KEY", SECRET)
    configure(tokens=2, fail_every=2, fail_status=429, api_key=SECRET)
    p = provider(url, tmp_path, max_retries=2, concurrency=1)
    answers = p.generate(convs(4), Generation())
    assert all(a.error is None for a in answers)
    served = httpx.get(f"{url}/fake/stats").json()
    # 4 answers from 7 requests: requests 2, 4 and 6 got a 429 and were retried
    assert (served["count"], served["answered"], served["failed"]) == (7, 4, 3)


def test_a_missing_key_variable_is_named_not_guessed(fake, tmp_path, monkeypatch):
    from gekro_ft.errors import ProviderError
    from gekro_ft.eval.suite import Generation

    monkeypatch.delenv("FAKE_KEY", raising=False)
    with pytest.raises(ProviderError, match="FAKE_KEY"):
        provider(fake[0], tmp_path).generate(convs(1), Generation())


def test_replay_needs_no_server_and_reports_what_is_missing(fake, tmp_path, monkeypatch):
    from gekro_ft.eval.providers import make_provider
    from gekro_ft.eval.suite import Endpoint, Generation

    url, configure = fake
    monkeypatch.setenv("FAKE_KEY", SECRET)
    configure(tokens=2)
    provider(url, tmp_path).generate(convs(2), Generation())
    rec = tmp_path / "rec" / "fake-base.jsonl"
    with open(rec, "ab") as f:
        f.write(b'{"key": "abc", "te')  # a run killed mid-write leaves a torn last line
    replay = make_provider(f"recording:{rec}", None, Endpoint(), tmp_path)
    got = replay.generate(convs(3), Generation())
    assert [a.text for a in got[:2]] == [" hello hello"] * 2
    assert got[2].error_kind == "not_recorded"
    assert replay.recording.torn_lines == 1


def test_every_shipped_suite_loads():
    from gekro_ft.config import shipped as shipped_dir
    from gekro_ft.eval.suite import load_suite

    shipped = sorted(shipped_dir("eval").glob("*.yaml"))
    assert shipped
    for path in shipped:
        suite = load_suite(path)
        assert path.read_text().startswith("# gekro-ft eval ")
        assert suite.data_path().is_file()
        raw, dumped = yaml.safe_load(path.read_text()), suite.model_dump(mode="json")
        # parsed once into typed metrics and a gate; written back (report, MLflow) as the suite has them
        assert dumped["metrics"] == raw["metrics"] and dumped["gate"] == " ".join(raw["gate"].split())
        assert suite.gate.names()["candidate"]


def test_a_broken_suite_lists_every_problem(tmp_path, cli):
    bad = {"name": "x", "data": "missing.jsonl", "metrics": ["exact_match", "bleu"], "gate": "candidate.f1 >= 1 or",
           "generation": {"max_tokens": 0}, "colour": "red"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(bad))
    result = cli("eval", tmp_path / "s.yaml", "--candidate", "base:smollm2-135m-instruct")
    assert result.exit_code == 2
    for part in ("generation.max_tokens", "colour", "missing.jsonl does not exist",  # all at once
                 "metrics[1]: unknown metric 'bleu'", "gate: gate 'candidate.f1 >= 1 or': invalid syntax"):
        assert part in result.output
    good = {"name": "x", "data": "d.jsonl", "metrics": ["exact_match", "bleu"], "gate": "candidate.f1 >= 1 or"}
    write_jsonl(tmp_path / "d.jsonl", [oa(("user", "q"), ("assistant", "a"))])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(good))
    result = cli("eval", tmp_path / "s.yaml", "--candidate", "base:smollm2-135m-instruct")
    assert result.exit_code == 2 and "bleu" in result.output and "gate" in result.output


def test_the_gate_names_unknown_metrics_before_anything_runs(tmp_path, cli):
    write_jsonl(tmp_path / "d.jsonl", [oa(("user", "q"), ("assistant", "a"))])
    suite = {"name": "x", "data": "d.jsonl", "metrics": ["exact_match"],
             "gate": "candidate.field_f1 >= baseline.field_f1", "success": {"metric": "chrf"}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    result = cli("eval", tmp_path / "s.yaml", "--candidate", "base:smollm2-135m-instruct")
    assert result.exit_code == 2
    assert "field_f1" in result.output and "success.metric" in result.output


def test_the_eval_set_never_overlaps_training_prompts():
    import json

    def prompts(path):
        return {json.dumps(json.loads(line)["messages"][:-1]) for line in path.read_text().splitlines()}

    train = prompts(DATASETS / "ticket-extraction" / "openai.jsonl")
    held = prompts(REPO / "eval" / "ticket-extraction" / "openai.jsonl")
    assert len(held) == 60 and not train & held


def test_a_suites_openai_key_is_not_sent_to_a_url_side_unless_named_for_it(fake, tmp_path, monkeypatch):
    """The shipped suite names OPENAI_API_KEY for its openai: baseline; a URL candidate or
    baseline gets it only through --candidate-key-env / --baseline-key-env (gekro_ft/keys.py)."""
    from gekro_ft.eval.providers import make_provider
    from gekro_ft.eval.suite import Endpoint, Generation

    url, configure = fake
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    configure(tokens=2, fail_every=1, fail_status=500)  # every answer echoes the Authorization header it got
    suite = Endpoint(api_key_env="OPENAI_API_KEY", max_retries=0)
    local = make_provider(f"{url}/v1", "fake-base", suite, tmp_path / "a")
    [answer] = local.generate(convs(1), Generation())
    assert "Authorization: Bearer not-needed" in answer.error and local.describe()["api_key_env"] is None
    named = make_provider(f"{url}/v1", "fake-base", suite, tmp_path / "b", key_env="OPENAI_API_KEY")
    [answer] = named.generate(convs(1), Generation())
    assert "Authorization: Bearer ***" in answer.error and SECRET not in answer.error  # sent, and scrubbed


def test_a_key_is_refused_over_plain_http_to_another_machine(tmp_path, monkeypatch, cli):
    from gekro_ft.errors import KeyRefusedError
    from gekro_ft.eval.providers import make_provider
    from gekro_ft.eval.suite import Endpoint, Generation

    monkeypatch.setenv("MY_KEY", SECRET)
    p = make_provider("http://alice:hunter2@192.0.2.1:8000/v1", "m",
                      Endpoint(api_key_env="MY_KEY", timeout_s=1, max_retries=0), tmp_path / "rec")
    with pytest.raises(KeyRefusedError, match=r"MY_KEY to http://192\.0\.2\.1:8000/v1: plain http://") as e:
        p.generate(convs(1), Generation())
    assert SECRET not in str(e.value) and "hunter2" not in str(e.value) and p.requests_sent == 0
    assert "hunter2" not in str(p.describe())
    result = cli("eval", "ticket-extraction", "--candidate", "http://192.0.2.1:8000/v1",
                 "--candidate-model", "m", "--candidate-key-env", "MY_KEY", "--limit", 1,
                 "--recordings", tmp_path / "rec", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert ("Error (api key): refusing to send the API key in MY_KEY to http://192.0.2.1:8000/v1"
            in result.output)
    assert SECRET not in result.output


def test_a_served_candidate_is_judged_live_with_its_engine_and_adapter(fake, tmp_path, monkeypatch):
    """--served-at: the answers are the server's, asked again on every run (never replayed from
    a recording a retrained adapter would inherit); the adapter's manifest and the server's
    engine are in what the report shows."""
    import orjson

    from gekro_ft.errors import ProviderError
    from gekro_ft.eval.providers import served_provider
    from gekro_ft.eval.suite import Endpoint, Generation

    url, configure = fake
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_bytes(orjson.dumps({"base_model_name_or_path": "fake-base"}))
    (adapter / "gekro_ft.json").write_bytes(orjson.dumps({"mlflow_run_id": "run-123"}))
    monkeypatch.setenv("FAKE_KEY", SECRET)
    configure(tokens=3, owned_by="gekro-ft-cpu", api_key=SECRET)
    for _ in range(2):
        p = served_provider(url, "fake-base", str(adapter), Endpoint(max_retries=0), key_env="FAKE_KEY")
        answers = p.generate(convs(3), Generation())
        assert [a.text for a in answers] == [" hello" * 3] * 3 and not any(a.cached for a in answers)
    assert httpx.get(f"{url}/fake/stats").json()["answered"] == 6  # both runs asked the server
    shown = p.describe()
    assert (shown["kind"], shown["engine"], shown["training_run_id"], shown["recording"]) == \
        ("served", "cpu", "run-123", None)
    assert shown["base_url"] == f"{url}/v1" and SECRET not in str(shown)
    assert not (tmp_path / "rec").exists()

    with pytest.raises(ProviderError, match="does not serve 'tickets'.*fake-base"):
        served_provider(f"{url}/v1", "tickets", str(adapter), Endpoint(max_retries=0),
                        key_env="FAKE_KEY").generate(convs(1), Generation())
    with pytest.raises(ProviderError, match="--candidate-model"):
        served_provider(url, None, str(adapter), Endpoint())
    with pytest.raises(ProviderError, match="not an adapter directory"):
        served_provider(url, "fake-base", str(tmp_path), Endpoint())


def test_eval_served_at_from_the_cli_names_the_engine_in_the_report(fake, tmp_path, cli, monkeypatch):
    import orjson

    url, configure = fake
    configure(tokens=2, owned_by="vllm")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_bytes(orjson.dumps({"base_model_name_or_path": "fake-base"}))
    write_jsonl(tmp_path / "d.jsonl", [oa(("user", f"q{i}"), ("assistant", "hello hello")) for i in range(3)])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "s", "data": "d.jsonl", "metrics": ["exact_match"],
                                                     "gate": "candidate.exact_match >= 1"}))
    result = cli("eval", tmp_path / "s.yaml", "--candidate", adapter, "--served-at", url,
                 "--candidate-model", "fake-adapter", "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    report = orjson.loads((tmp_path / "out" / "report.json").read_bytes())
    assert report["sides"]["candidate"]["provider"]["engine"] == "vllm"
    assert report["sides"]["candidate"]["aggregates"]["exact_match"] == 1.0
    assert "| engine | vllm |" in (tmp_path / "out" / "report.md").read_text()
