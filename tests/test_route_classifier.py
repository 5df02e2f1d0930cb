"""The prompt classifier: its labels, training and held-out figures on a made-up learnable set,
the artifact's round trip and refusals, the profile section, the decision, and the router app
deciding before generation in front of a real fake-OpenAI server process."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import orjson
import pytest
import yaml

from conftest import write_jsonl
from gekro_ft.errors import RouteError, RouteProfileError
from gekro_ft.route.classifier_training import _pipeline, needs_escalation, train_prompt_classifier
from gekro_ft.route.policy import FRONTIER, LOCAL, before_generation
from gekro_ft.route.profile import load_route_profile, route_profile_from
from gekro_ft.route.prompt_classifier import checksum, load_prompt_classifier, prompt_text
from serving import fake_openai

SUCCESS = {"metric": "exact_match", "threshold": 1.0}
# what the made-up prompts are about decides their label, so a model of the words can learn it
HARD = ["contract clause dispute", "legal liability question", "multi-step refund negotiation",
        "regulatory compliance audit"]
EASY = ["password reset", "track my parcel", "change my email", "update the shipping address"]
SYSTEM = "Answer the customer's request."


def _row(i, failed=(), local=1.0, frontier=1.0):
    return {"id": f"ex{i}", "failed_checks": list(failed), "scores": {},
            "local": {"metrics": {"exact_match": local}},
            "frontier": {"metrics": {"exact_match": frontier}}}


def _user(text):
    return {"role": "user", "content": text}


def test_the_label_is_a_failed_check_or_a_failure_the_frontier_fixes():
    assert needs_escalation(_row(0, failed=["json_valid"]), SUCCESS)
    assert needs_escalation(_row(0, local=0.0), SUCCESS)
    # both fail: the frontier buys nothing
    assert not needs_escalation(_row(0, local=0.0, frontier=0.0), SUCCESS)
    assert not needs_escalation(_row(0), SUCCESS)
    assert needs_escalation(_row(0, local=float("nan")), SUCCESS)  # a failure, as in the eval
    with pytest.raises(RouteError, match="no exact_match row"):
        needs_escalation({**_row(0), "local": {"metrics": {}}}, SUCCESS)


def _made_up(tmp_path, n=40):
    """A suite of n prompts, a route.json labelling the HARD ones as needing escalation (half
    by a failed check, half by a failed metric the frontier passes), and an escalation log."""
    rng = random.Random(7)
    rows, per_example, texts, labels = [], [], [], []
    for i in range(n):
        hard = i % 2 == 0
        topic = rng.choice(HARD if hard else EASY)
        manner = rng.choice(["please", "kindly", "quick one:"])
        user = f"Hi, {manner} help with a {topic}, ref {rng.randint(1, 999)}"
        rows.append({"id": f"ex{i}", "messages": [{"role": "system", "content": SYSTEM},
                                                  _user(user),
                                                  {"role": "assistant", "content": "ok"}]})
        per_example.append(_row(i, failed=["json_valid"] if hard and i % 4 == 0 else (),
                                local=0.0 if hard else 1.0))
        texts.append(prompt_text([{"role": "system", "content": SYSTEM}, _user(user)]))
        labels.append(int(hard))
    write_jsonl(tmp_path / "data.jsonl", rows)
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({
        "name": "made-up", "data": "data.jsonl", "metrics": ["exact_match"], "success": SUCCESS,
        "gate": "candidate.exact_match >= baseline.exact_match"}))
    report = tmp_path / "route.json"
    inputs = {"suite_file": str(tmp_path / "suite.yaml"), "success": SUCCESS}
    report.write_text(json.dumps({"inputs": inputs, "per_example": per_example}))
    reasons = [(HARD[0], "check"), (HARD[1], "confidence"), (EASY[0], "classifier")]
    escalated = [{"messages": [_user(f"a {topic} again"), {"role": "assistant", "content": "x"}],
                  "gekro_route": {"reason": reason}} for topic, reason in reasons]
    log = write_jsonl(tmp_path / "escalations.jsonl", escalated)
    with open(log, "a") as f:
        f.write('{"messages": [{"role": "user", "con')  # a torn last line, as a crash leaves it
    return report, log, texts, labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classifier")
    report, log, texts, labels = _made_up(tmp)
    out = tmp / "prompt-classifier.json"
    doc = train_prompt_classifier(out, [report], [log], folds=5)
    return out, doc, texts, labels, report, log


def test_training_learns_the_label_held_out_and_states_its_data(trained):
    out, doc, texts, labels, report, log = trained
    cv = doc["cross_validation"]
    # 20 + 2 positives of 42 (the classifier's own escalation and the torn line are skipped)
    assert (cv["examples"], cv["positives"], cv["folds"]) == (42, 22, 5)
    assert cv["majority_accuracy"] == pytest.approx(22 / 42)
    assert cv["accuracy"] > 0.9 > cv["majority_accuracy"] and cv["recall"] > 0.9
    cal, esc = doc["training"]["sources"]
    assert (cal["kind"], cal["rows"], cal["positives"]) == ("calibration", 40, 20)
    skipped = {"unreadable": 1, "classifier": 1, "local_error": 0}
    assert (esc["rows"], esc["skipped"]) == (2, skipped)
    import hashlib

    assert cal["sha256"] == hashlib.sha256(report.read_bytes()).hexdigest()
    assert esc["sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    assert json.loads(out.read_text()) == doc  # plain JSON, all of it
    assert any("contract" in term for term, _ in doc["top_terms"]["frontier"])


def test_the_artifact_gives_the_fitted_models_probabilities(trained):
    out, doc, texts, labels, _, _ = trained
    probe = [*texts[:6], "user: a contract clause dispute", "user: password reset please", ""]
    log_lines = [prompt_text([_user(f"a {t} again")]) for t in (HARD[0], HARD[1])]
    fitted = _pipeline(0).fit(texts + log_lines, labels + [1, 1]).predict_proba(probe)[:, 1]
    loaded = load_prompt_classifier(out)
    assert loaded.probabilities(probe).tolist() == fitted.tolist()
    assert load_prompt_classifier(out).probabilities(probe).tolist() == fitted.tolist()  # and again
    assert loaded.probability([_user("a contract clause dispute")]) > 0.5
    assert loaded.probability([_user([{"type": "text", "text": "password reset"}])]) < 0.5


def test_a_damaged_or_foreign_artifact_is_refused_naming_the_file(trained, tmp_path):
    out, doc, *_ = trained
    bad = tmp_path / "bad.json"

    def refused(content: bytes, match: str):
        bad.write_bytes(content)
        with pytest.raises(RouteError, match=match) as e:
            load_prompt_classifier(bad)
        assert str(bad) in str(e.value)

    edited = {**doc, "model": {**doc["model"], "intercept": doc["model"]["intercept"] + 1}}
    refused(orjson.dumps(edited), "sha256 does not match")
    refused(out.read_bytes()[:200], "not JSON")
    refused(b'{"kind": "something else"}', "not a prompt classifier")
    short = {**doc, "model": {**doc["model"], "coef": doc["model"]["coef"][:-1]}}
    short["sha256"] = checksum(short)  # consistent with itself, but not with its features
    n = len(doc["model"]["coef"])
    refused(orjson.dumps(short), f"{n - 1} coefficients for {n} feature columns")
    newer = {**doc, "schema_version": 99}
    refused(orjson.dumps(newer), "schema_version 99")
    with pytest.raises(RouteError, match="cannot read"):
        load_prompt_classifier(tmp_path / "missing.json")


def test_training_needs_both_labels(tmp_path):
    _, log, *_ = _made_up(tmp_path)
    with pytest.raises(RouteError, match="at least 2 of each label"):
        train_prompt_classifier(tmp_path / "c.json", [], [log])
    assert not (tmp_path / "c.json").exists()


def test_the_cli_trains_and_states_the_held_out_figures(trained, tmp_path, cli):
    _, doc, _, _, report, log = trained
    r = cli("route", "train-classifier", "-c", report, "-e", log, "-o", tmp_path / "c.json")
    cv = doc["cross_validation"]
    assert r.exit_code == 0
    assert r.output.splitlines() == [
        "trained on 42 prompts, 22 needing escalation",
        f"held out (5-fold, threshold 0.5): accuracy {cv['accuracy']:.1%} (majority class 52.4%), "
        f"recall {cv['recall']:.1%}, precision {cv['precision']:.1%}",
        f"classifier: {tmp_path / 'c.json'}"]


# --- the profile section and the decision -------------------------------------------------------

def _profile_file(tmp_path, section):
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump({"local": {"url": "http://127.0.0.1:1/v1"},
                                    "frontier": {"url": "openai:gpt-4.1-mini"},
                                    "prompt_classifier": section}))
    return path


def test_the_profile_section_resolves_its_path_and_names_bad_keys(trained, tmp_path):
    out, *_ = trained
    (tmp_path / "c.json").write_bytes(out.read_bytes())
    p = load_route_profile(str(_profile_file(tmp_path, {"model": "c.json", "threshold": 0.3})))
    assert p.prompt_classifier.model == str(tmp_path / "c.json")
    assert p.prompt_classifier.threshold == 0.3
    bad = {"model": "nope.json", "threshold": 1.5, "thresh": 1}
    with pytest.raises(RouteProfileError) as e:
        load_route_profile(str(_profile_file(tmp_path, bad)))
    message = str(e.value)
    assert f"prompt_classifier.model: no such file: {tmp_path / 'nope.json'}" in message
    assert "prompt_classifier.threshold" in message and "less than 1" in message
    assert "prompt_classifier.thresh: unknown key (did you mean 'threshold'?)" in message


def test_the_classifier_decides_after_rules_and_capacity(trained):
    out, *_ = trained
    p = route_profile_from({"local": {"url": "http://127.0.0.1:1/v1"},
                            "frontier": {"url": "openai:gpt-4.1-mini"}, 
                            "rules": {"frontier": ["plan"]}, "capacity": {"max_prompt_tokens": 100},
                            "prompt_classifier": {"model": str(out), "threshold": 0.6}})
    high, low = before_generation(p, None, 10, 0.6), before_generation(p, None, 10, 0.59)
    assert (high.upstream, high.reason) == (FRONTIER, "classifier")
    assert high.scores == {"escalation_probability": 0.6}
    assert (low.upstream, low.reason) == (LOCAL, "classifier")
    assert before_generation(p, "plan", 10, 0.1).reason == "rule"
    assert before_generation(p, None, 101, 0.1).reason == "capacity"
    assert before_generation(p, None, 10, None) is None  # no probability: ask the local model


# --- the router app against a fake upstream process ---------------------------------------------

@pytest.fixture(scope="module")
def fake_port():
    with fake_openai("--tokens", "3") as fake:
        yield fake.port


@pytest.mark.slow
def test_the_router_streams_predicted_local_and_escalates_the_rest(trained, tmp_path, fake_port):
    from gekro_ft.route.server import Router, create_router_app

    out, *_ = trained
    up = f"http://127.0.0.1:{fake_port}/v1"
    doc = {"local": {"url": up, "model": "fake-adapter", "max_retries": 0},
           "frontier": {"url": up, "model": "fake-base", "price": "gpt-4.1-mini", "max_retries": 0},
           "escalation_log": str(tmp_path / "esc.jsonl"), "prompt_classifier": {"model": str(out)}}
    system = {"role": "system", "content": SYSTEM}
    easy = {"model": "tickets", "max_tokens": 3, "stream": True,
            "messages": [system, _user("Hi, please help with a password reset, ref 12")]}
    hard = {**easy, "messages": [system, _user("Hi, kindly help with a contract clause dispute")]}

    async def go(profile, bodies):
        router = Router(profile)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(create_router_app(router)),
                                     base_url="http://router") as c:
            answers = [await c.post("/v1/chat/completions", json=b) for b in bodies]
        await router.close()
        return answers

    local, frontier = asyncio.run(go(route_profile_from(doc), [easy, hard]))
    chunks = [json.loads(line[6:]) for line in local.text.splitlines()
              if line.startswith("data: {")]
    assert local.headers["x-gekro-upstream"] == "local"
    assert local.headers["x-gekro-route-reason"] == "classifier"
    # the local stream relayed as it came: the fake's three " hello" chunks, not one whole answer
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert [text for text in contents if text] == [" hello"] * 3
    assert chunks[0]["model"] == "fake-adapter"
    assert chunks[0]["gekro_route"]["scores"]["escalation_probability"] < 0.5
    assert frontier.headers["x-gekro-upstream"] == "frontier"
    assert frontier.headers["x-gekro-route-reason"] == "classifier"
    (row,) = [json.loads(line) for line in (tmp_path / "esc.jsonl").read_text().splitlines()]
    assert row["messages"][-2] == hard["messages"][-1]
    assert row["messages"][-1]["content"] == " hello" * 3
    assert row["gekro_route"]["reason"] == "classifier"
    assert row["gekro_route"]["scores"]["escalation_probability"] >= 0.5

    # not streamed, a predicted-local answer is still judged whole: " hello" fails the regex
    checked = route_profile_from({**doc, "checks": {"regex": r"\{.*\}"}})
    (judged,) = asyncio.run(go(checked, [{**easy, "stream": False}]))
    assert judged.headers["x-gekro-upstream"] == "frontier"
    assert judged.json()["gekro_route"]["reason"] == "check"
