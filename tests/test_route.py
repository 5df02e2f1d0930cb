"""The router's parts without a model: profiles, the policy, confidence and check arithmetic,
the calibration sweep on hand-made rows, and the router app (in this process) in front of
real fake-OpenAI server processes for failures, budget, tenants and keys."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from gekro_ft.config import shipped
from gekro_ft.errors import RouteError, RouteProfileError
from gekro_ft.eval.metrics import build_metrics
from gekro_ft.route.checks import build_checks
from gekro_ft.route.calibrate import Blend, choose, cross_validate, folds_of, sweep
from gekro_ft.route.confidence import field_logprobs, scores
from gekro_ft.route.policy import after_answer, before_generation
from gekro_ft.route.profile import CONFIDENCE_SCORES, load_route_profile, route_profile_from
from conftest import REPO
from serving import fake_openai, free_port

SECRET = "sk-route-test-0123456789"


def _profile(**parts):
    doc = {"local": {"url": "http://127.0.0.1:1/v1", "model": "tickets"},
           "frontier": {"url": "http://127.0.0.1:2/v1", "model": "big", "price": "gpt-4.1-mini"}, **parts}
    return route_profile_from(doc)


# --- profiles ----------------------------------------------------------------------------------

def test_every_shipped_route_profile_loads():
    names = sorted(p.stem for p in shipped("serve", "route").glob("*.yaml"))
    assert names
    for name in names:
        assert load_route_profile(name).frontier.url.startswith(("openai:", "http"))


def test_a_bad_profile_names_every_problem_with_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("local: {url: ftp://x, model: m}\nfrontier: {url: openai:gpt-4.1-mini}\n"
                   "confidence: {score: mean, threshold: 0.5}\nrules: {local: [a], frontier: [a]}\nchecsk: {}\n")
    with pytest.raises(RouteProfileError) as e:
        load_route_profile(str(bad))
    message = str(e.value)
    assert "local.url: Value error, give http(s)://HOST/v1 or openai:MODEL" in message or "local.url" in message
    assert "confidence.score" in message and "confidence.threshold" in message
    assert "listed both local and frontier" in message
    assert "checsk: unknown key (did you mean 'checks'?)" in message
    assert "(line 5)" in message


def test_the_router_binds_beyond_loopback_only_with_its_key(monkeypatch):
    monkeypatch.delenv("ROUTER_KEY", raising=False)
    with pytest.raises(RouteProfileError, match="without an API key"):
        _profile(host="0.0.0.0", api_key_env="ROUTER_KEY").check_bind()
    monkeypatch.setenv("ROUTER_KEY", SECRET)
    _profile(host="0.0.0.0", api_key_env="ROUTER_KEY").check_bind()


# --- the policy ----------------------------------------------------------------------------------

def _entries(*pairs):
    return [{"token": t, "logprob": lp} for t, lp in pairs]


def test_confidence_scores_worked_example():
    # '{"a": "x", "b": 7}' in tokens: '{"a": ' -0.1, '"x"' -2.0, ', "b": ' -0.2, '7' -0.4, '}' -0.1
    entries = _entries(('{"a": ', -0.1), ('"x"', -2.0), (', "b": ', -0.2), ("7", -0.4), ("}", -0.1))
    # field a is spelled by the token '"x"' alone: -2.0; field b by '7': -0.4
    assert field_logprobs(entries) == {"a": -2.0, "b": -0.4}
    s = scores(entries)
    # mean = (-0.1 - 2.0 - 0.2 - 0.4 - 0.1) / 5 = -2.8 / 5 = -0.56
    assert s["mean_logprob"] == pytest.approx(-0.56)
    assert s["min_logprob"] == -2.0 and s["min_field_logprob"] == -2.0
    assert scores(_entries(("plain", -0.3), (" text", -0.5)))["min_field_logprob"] == pytest.approx(-0.4)
    assert scores([])["mean_logprob"] == -math.inf


def test_the_parts_decide_in_order(tmp_path):
    schema = {"type": "object", "required": ["a"]}
    p = _profile(rules={"local": ["extract"], "frontier": ["plan"], "default": "frontier"},
                 capacity={"max_prompt_tokens": 100}, checks={"json_valid": True, "schema": schema,
                                                                 "required_fields": ["a"]},
                 confidence={"score": "min_logprob", "threshold": -1.0})
    assert before_generation(p, "plan", 10).reason == "rule"
    assert before_generation(p, "unknown", 10).reason == "default"
    assert before_generation(p, "extract", 101).reason == "capacity"
    assert before_generation(p, "extract", 100) is None
    checks = build_checks(p.checks, tmp_path)
    ok = _entries(('{"a": 1}', -0.5))
    assert after_answer(p, checks, '{"a": 1}', ok).reason == "passed"
    assert after_answer(p, checks, '{"a": 1}', _entries(('{"a": 1}', -1.5))).reason == "confidence"
    failed = after_answer(p, checks, '{"b": 1}', ok)
    assert (failed.reason, failed.failed_checks) == ("check", ["json_schema_valid", "required_fields"])
    assert after_answer(p, checks, "not json", ok).failed_checks == ["json_valid", "json_schema_valid",
                                                                      "required_fields"]
    regex = build_checks(_profile(checks={"regex": r"(billing|shipping)"}).checks, tmp_path)
    assert regex.failures(" billing\n") == [] and regex.failures("refund") == ["regex"]


# --- the calibration sweep, on hand-made rows -----------------------------------------------------

def test_the_sweep_and_the_choice_worked_example(tmp_path):
    metrics = build_metrics(["exact_match"], tmp_path)
    # three examples; local right on 0 and 1, frontier right on all three
    local_rows = [{"exact_match": 1.0}, {"exact_match": 1.0}, {"exact_match": 0.0}]
    frontier_rows = [{"exact_match": 1.0}] * 3
    examples = [{"failed_checks": [], "scores": {"mean_logprob": s, "min_logprob": s, "min_field_logprob": s},
                 "local": {"output_tokens": 10}, "frontier": {"output_tokens": 20, "usd": 0.01}}
                for s in (-0.1, -0.2, -0.9)]
    result = sweep(Blend(metrics, ("exact_match", 1.0), examples, local_rows, frontier_rows, local_per_token=1e-5))
    # local cost is paid on all 3: 30 tokens × 1e-5 = $0.0003
    mean = [p for p in result["curve"] if p["score"] == "mean_logprob" and p["checks"]]
    # thresholds: none (checks only), midway -0.55 and -0.15, 0.0 -> escalate 0, 1, 2, 3 examples
    assert [p["threshold"] for p in mean] == [None, pytest.approx(-0.55), pytest.approx(-0.15), 0.0]
    assert [p["escalated"] for p in mean] == [0, 1, 2, 3]
    t02 = mean[1]  # escalates example 2 (score -0.9 < -0.55): all three right
    assert t02["quality"]["exact_match"] == 1.0
    assert t02["usd"] == pytest.approx(0.0003 + 0.01)
    # delivered: 10 + 10 local + 20 frontier = 40 tokens; $0.0103 / 40 × 1e6 = $257.5 per 1M
    assert t02["usd_per_1m_output_tokens"] == pytest.approx(257.5)
    assert result["frontier_only"]["usd"] == pytest.approx(0.03)  # no local cost
    assert result["local_only"]["quality"]["exact_match"] == pytest.approx(2 / 3)
    chosen = choose(result, "exact_match", margin=0.0)
    assert (chosen["threshold"], chosen["escalated"]) == (pytest.approx(-0.55), 1)


def _cv_blend(tmp_path, n=40):
    """n examples: the local answer is wrong exactly when its mean_logprob is below -1 (every
    fourth), so a threshold learned on any four folds carries over to the fifth."""
    metrics = build_metrics(["exact_match"], tmp_path)
    wrong = [i % 4 == 0 for i in range(n)]
    scores = [(-1.5 - i / 100) if w else (-0.5 + i / 1000) for i, w in enumerate(wrong)]
    examples = [{"id": str(i), "failed_checks": [], "scores": dict.fromkeys(CONFIDENCE_SCORES, sc),
                 "local": {"output_tokens": 10}, "frontier": {"output_tokens": 10, "usd": 0.01}}
                for i, sc in enumerate(scores)]
    local_rows = [{"exact_match": 0.0 if w else 1.0} for w in wrong]
    return Blend(metrics, ("exact_match", 1.0), examples, local_rows, [{"exact_match": 1.0}] * n, 1e-6)


def test_folds_are_seeded_disjoint_and_cover_every_example():
    folds = folds_of(23, 5, seed=3)
    assert sorted(i for f in folds for i in f) == list(range(23))
    assert {len(f) for f in folds} == {4, 5}
    assert folds == folds_of(23, 5, seed=3) and folds != folds_of(23, 5, seed=4)


def test_cross_validation_routes_each_fold_by_a_policy_chosen_without_it(tmp_path):
    blend = _cv_blend(tmp_path)
    cv = cross_validate(blend, "exact_match", margin=0.0, k=5, seed=0, resamples=200)
    # a separable score: every fold's policy escalates exactly the wrong answers it holds
    assert cv["escalated_ids"] == [str(i) for i in range(40) if i % 4 == 0]
    assert cv["point"]["quality"]["exact_match"] == 1.0
    assert all(f["policy"] and f["policy"]["threshold"] is not None for f in cv["per_fold"])
    saving = cv["intervals"]["saving_share"]
    # local on all 40 (10 tokens x 1e-6) + 10 escalations x $0.01, against 40 x $0.01
    assert saving["point"] == pytest.approx(1 - (40 * 10e-6 + 0.10) / 0.40)
    assert saving["lo"] <= saving["point"] <= saving["hi"]
    assert cv["within_margin"] and cv["intervals"]["delta_exact_match"]["point"] == 0.0


def test_out_of_sample_is_honest_where_in_sample_flatters(tmp_path):
    """A wrong answer with the most confident score of all: in sample the threshold is set to
    escalate it (everything goes to the frontier), out of sample the fold that holds it learns a
    threshold without it and keeps it local, so the held-out quality shows the miss."""
    metrics = build_metrics(["exact_match"], tmp_path)
    n = 40
    wrong = [i % 5 == 0 for i in range(n)]
    scores = [-0.001 if i == 0 else -0.1 - (i * 13 % 40) / 10 for i in range(n)]
    examples = [{"id": str(i), "failed_checks": [], "scores": dict.fromkeys(CONFIDENCE_SCORES, sc),
                 "local": {"output_tokens": 10}, "frontier": {"output_tokens": 10, "usd": 0.01}}
                for i, sc in enumerate(scores)]
    blend = Blend(metrics, ("exact_match", 1.0), examples, [{"exact_match": 0.0 if w else 1.0} for w in wrong],
                  [{"exact_match": 1.0}] * n, 1e-6)
    in_sample = choose(sweep(blend), "exact_match", 0.0)
    cv = cross_validate(blend, "exact_match", 0.0, k=5, seed=0, resamples=200)
    assert in_sample["quality"]["exact_match"] == 1.0
    assert cv["point"]["quality"]["exact_match"] < 1.0
    assert "0" not in cv["escalated_ids"]
    assert not cv["within_margin"]


def test_cross_validation_refuses_more_folds_than_examples(tmp_path):
    with pytest.raises(RouteError, match="folds"):
        cross_validate(_cv_blend(tmp_path, n=3), "exact_match", 0.0, k=5)


# --- the router app against fake upstream processes ----------------------------------------------

@pytest.fixture(scope="module")
def fake_port():
    with fake_openai("--tokens", "3") as fake:
        yield fake.port


def _route(profile, requests, headers=None):
    """Send ``requests`` (chat bodies) to a router app in this process; the responses and /metrics."""
    from gekro_ft.route.server import Router, create_router_app

    async def go():
        router = Router(profile)
        app = create_router_app(router)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://router") as c:
            out = [await c.post("/v1/chat/completions", json=r, headers=headers or {}) for r in requests]
            metrics = (await c.get("/metrics")).text
        await router.close()
        return out, metrics

    return asyncio.run(go())


ASK = {"model": "tickets", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}


def _doc(tmp_path, fake_port, **parts):
    up = f"http://127.0.0.1:{fake_port}/v1"
    return {"local": {"url": up, "model": "fake-adapter", "max_retries": 0},
            "frontier": {"url": up, "model": "fake-base", "price": "gpt-4.1-mini", "max_retries": 1,
                         "backoff_s": 0.01},
            "escalation_log": str(tmp_path / "esc.jsonl"), **parts}


def test_rules_send_a_task_to_the_frontier_and_log_it_with_its_cost(tmp_path, fake_port):
    p = route_profile_from(_doc(tmp_path, fake_port, rules={"frontier": ["plan"], "default": "local"}))
    (local, plan), metrics = _route(p, [ASK, {**ASK, "metadata": {"task": "plan"}}], {"X-Gekro-Tenant": "team-a"})
    assert local.headers["x-gekro-upstream"] == "local" and local.json()["model"] == "fake-adapter"
    assert plan.headers["x-gekro-upstream"] == "frontier" and plan.json()["gekro_route"]["reason"] == "rule"
    # the fake counts 1 prompt token per 4 characters of content ("Hi": 1) and answers 3 tokens;
    # gpt-4.1-mini: (1 × 0.40 + 3 × 1.60) / 1e6 = $5.2e-6
    assert plan.json()["gekro_route"]["usd"] == pytest.approx(plan.json()["usage"]["prompt_tokens"] * 0.4e-6 + 3 * 1.6e-6)
    assert 'gekro_route_requests_total{reason="rule",status="200",tenant="team-a",upstream="frontier"} 1.0' in metrics
    row = json.loads((tmp_path / "esc.jsonl").read_text())
    assert row["messages"][-1] == {"role": "assistant", "content": plan.json()["choices"][0]["message"]["content"]}
    assert row["gekro_route"]["reason"] == "rule"
    costs = json.loads((tmp_path / "esc.costs.json").read_text())
    day = next(iter(costs["days"].values()))
    assert day["team-a"]["frontier"]["requests"] == 1 and day["team-a"]["local"]["requests"] == 1


def test_a_reference_frontier_answers_the_suite_in_process_and_says_it_is_simulated(tmp_path, fake_port):
    """frontier.url: reference:SUITE@RATE: escalations get the suite's references (no port, no key);
    a prompt outside the suite is the frontier's 400, passed back; the stream works too."""
    ticket = json.loads((REPO / "eval" / "ticket-extraction" / "openai.jsonl").read_text().splitlines()[0])
    doc = _doc(tmp_path, fake_port, rules={"frontier": ["plan"], "default": "local"})
    doc["frontier"] = {"url": "reference:ticket-extraction@0", "price": "gpt-4.1-mini"}
    p = route_profile_from(doc)
    asked = {"model": "tickets", "messages": ticket["messages"][:-1], "metadata": {"task": "plan"}}
    streamed = {**asked, "stream": True}
    outside = {**ASK, "metadata": {"task": "plan"}}
    (answer, stream, refused), _ = _route(p, [asked, streamed, outside])
    assert answer.status_code == 200 and answer.headers["x-gekro-upstream"] == "frontier"
    assert answer.json()["choices"][0]["message"]["content"] == ticket["messages"][-1]["content"]
    assert answer.json()["gekro_reference"]["simulation"] is True
    assert ticket["messages"][-1]["content"] in "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in stream.text.splitlines() if line.startswith("data: {") and json.loads(line[6:])["choices"])
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "not_in_suite"


def test_the_frontier_down_fails_open_or_closed_as_stated(tmp_path, fake_port):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    doc = _doc(tmp_path, fake_port, rules={"default": "frontier"})
    doc["frontier"]["url"] = dead
    (opened,), metrics = _route(route_profile_from(doc), [ASK])
    assert opened.status_code == 200 and opened.headers["x-gekro-upstream"] == "local"
    assert opened.json()["gekro_route"] | {"fallback": True, "reason": "frontier_error"} == opened.json()["gekro_route"]
    assert 'gekro_route_upstream_errors_total{kind="connection",upstream="frontier"} 1.0' in metrics
    doc["frontier"]["on_error"] = "closed"
    (closed,), metrics = _route(route_profile_from(doc), [ASK])
    assert closed.status_code == 503 and closed.json()["error"]["code"] == "frontier_unavailable"
    assert 'gekro_route_requests_total{reason="frontier_error",status="503",tenant="default",upstream="none"} 1.0' \
        in metrics


def test_the_local_upstream_down_escalates_or_fails_as_stated(tmp_path, fake_port):
    doc = _doc(tmp_path, fake_port)
    doc["local"]["url"] = f"http://127.0.0.1:{free_port()}/v1"
    (escalated,), _ = _route(route_profile_from(doc), [ASK])
    assert escalated.status_code == 200 and escalated.json()["gekro_route"]["reason"] == "local_error"
    doc["local"]["on_error"] = "fail"
    (failed,), _ = _route(route_profile_from(doc), [ASK])
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "local_unavailable"


def test_past_the_budget_answers_stay_local_and_marked(tmp_path, fake_port):
    # each frontier answer costs ~$5e-6 (see above): a $1e-6 budget is spent by the first one
    p = route_profile_from(_doc(tmp_path, fake_port, rules={"default": "frontier"}, budget={"usd_per_day": 1e-6}))
    (first, second), _ = _route(p, [ASK, ASK])
    assert first.headers["x-gekro-upstream"] == "frontier"
    assert second.headers["x-gekro-upstream"] == "local"
    assert second.json()["gekro_route"] | {"budget_exhausted": True, "reason": "budget"} == second.json()["gekro_route"]


def test_a_bad_request_is_passed_back_and_a_key_never_leaks(tmp_path, fake_port, monkeypatch):
    monkeypatch.setenv("ROUTE_FRONTIER_KEY", SECRET)
    doc = _doc(tmp_path, fake_port, rules={"default": "frontier"})
    doc["frontier"]["api_key_env"] = "ROUTE_FRONTIER_KEY"
    httpx.post(f"http://127.0.0.1:{fake_port}/fake/config", json={"fail_every": 1, "fail_status": 500})
    try:
        (r,), metrics = _route(route_profile_from(doc), [ASK])
    finally:
        httpx.post(f"http://127.0.0.1:{fake_port}/fake/config", json={})
    # the fake echoes the Authorization header in its error; every request fails: fail-open to local fails too
    assert r.status_code == 503 and SECRET not in r.text and SECRET not in metrics
    (bad,), _ = _route(route_profile_from(doc), [{"model": "tickets", "messages": []}])
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_value"


def test_a_streamed_escalation_is_passed_through_and_logged_whole(tmp_path, fake_port):
    from gekro_ft.route.server import Router, create_router_app

    p = route_profile_from(_doc(tmp_path, fake_port, rules={"frontier": ["plan"]}))

    async def go():
        router = Router(p)
        app = create_router_app(router)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://router") as c:
            r = await c.post("/v1/chat/completions", headers={"X-Gekro-Task": "plan"},
                             json={**ASK, "stream": True, "stream_options": {"include_usage": True}})
            metrics = (await c.get("/metrics")).text
        await router.close()
        return r, metrics

    r, metrics = asyncio.run(go())
    chunks = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    assert r.headers["x-gekro-upstream"] == "frontier" and chunks[0]["gekro_route"]["reason"] == "rule"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == " hello" * 3  # the fake's answer: 3 tokens of " hello"
    row = json.loads((tmp_path / "esc.jsonl").read_text())
    assert row["messages"][-1]["content"] == text and row["gekro_route"]["reason"] == "rule"
    # usage rode on the last chunk: 3 output tokens billed to the frontier
    assert 'gekro_route_tokens_total{direction="output",tenant="default",upstream="frontier"} 3.0' in metrics
