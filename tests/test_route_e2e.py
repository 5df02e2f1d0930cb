"""The router with real processes on both sides: `gekro-ft route serve` in front of the CPU
engine serving the trained ticket adapter (local) and the base model (the frontier's
stand-in: the same engine process, model ``smollm2-135m-instruct``), then in front of the
engine and a fake OpenAI server that is killed mid-run.

One engine process for the module; each router is its own process."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from gekro_ft.route.confidence import scores
from serving import adapter_server, fake_openai, free_port, server_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TICKETS = ROOT / "eval" / "ticket-extraction" / "openai.jsonl"
SCHEMA = ROOT / "eval" / "ticket-extraction" / "ticket.schema.json"
BASE = "smollm2-135m-instruct"
N_TICKETS = 4
MAX_TOKENS = 64
CAL = 6  # examples in the calibration


def _prompt(row: dict) -> list[dict]:
    return row["messages"][:-1]  # the conversation up to the reference answer


@pytest.fixture(scope="module")
def engine(trained_adapter, tmp_path_factory):
    adapter, _ = trained_adapter
    with adapter_server(adapter, tmp_path_factory.mktemp("route-engine")) as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def tickets():
    rows = [json.loads(line) for line in TICKETS.read_text().splitlines()[:N_TICKETS]]
    return [_prompt(r) for r in rows]


def _router(tmp: Path, doc: dict, name: str):
    port = free_port()
    profile = tmp / f"{name}.yaml"
    profile.write_text(yaml.safe_dump({**doc, "port": port, "escalation_log": str(tmp / f"{name}.jsonl")}))
    return server_process(["route", "serve", str(profile)], port, log=tmp / f"{name}.log"), port


def test_checks_confidence_capacity_and_rules_escalate_exactly_their_requests(engine, tickets, tmp_path):
    # The local answers' own confidence, asked of the engine directly: the threshold is put in the
    # widest gap between the sorted min-field scores, so the router's split is known in advance.
    local = [httpx.post(f"{engine}/chat/completions", timeout=600, json={
        "model": "tickets", "messages": m, "max_tokens": MAX_TOKENS, "temperature": 0, "logprobs": True}).json()
        for m in tickets]
    conf = [scores(a["choices"][0]["logprobs"]["content"])["min_field_logprob"] for a in local]
    ordered = sorted(conf)
    gap = max(range(len(ordered) - 1), key=lambda i: ordered[i + 1] - ordered[i])
    threshold = (ordered[gap] + ordered[gap + 1]) / 2
    low = {i for i, c in enumerate(conf) if c < threshold}
    assert 0 < len(low) < len(tickets)

    doc = {"local": {"url": engine, "model": "tickets", "timeout_s": 600},
           "frontier": {"url": engine, "model": BASE, "price": "gpt-4.1-mini", "timeout_s": 600},
           "rules": {"local": ["extract"], "frontier": ["plan"], "default": "local"},
           "capacity": {"max_prompt_tokens": 400},
           "checks": {"json_valid": True},
           "confidence": {"score": "min_field_logprob", "threshold": threshold}}
    server, port = _router(tmp_path, doc, "policy")
    url = f"http://127.0.0.1:{port}/v1"
    with server:
        import openai

        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        answered = []
        for m in tickets:  # the tickets in full: confidence decides
            r = client.chat.completions.with_raw_response.create(
                model="tickets", messages=m, max_tokens=MAX_TOKENS, temperature=0,
                extra_headers={"X-Gekro-Task": "extract"})
            answered.append((r.headers["x-gekro-upstream"], r.parse()))
        # a ticket cut at 4 tokens cannot be JSON: the check escalates it
        cut = client.chat.completions.with_raw_response.create(model="tickets", messages=tickets[0], max_tokens=4,
                                                                temperature=0)
        # far over 400 prompt tokens: capacity; a "plan" task: the rule (sent streamed, passed through)
        long = [{"role": "user", "content": "Summarize this ticket: " + "the printer jams again. " * 150}]
        big = client.chat.completions.with_raw_response.create(model="tickets", messages=long, max_tokens=8)
        with httpx.stream("POST", f"{url}/chat/completions", headers={"X-Gekro-Task": "plan"}, timeout=600,
                          json={"model": "tickets", "messages": [{"role": "user", "content": "Plan a launch."}],
                                "max_tokens": 8, "stream": True}) as planned:
            chunks = [orjson.loads(line[6:]) for line in planned.iter_lines() if line.startswith("data: {")]
            plan_upstream = planned.headers["x-gekro-upstream"]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text

    expected = ["frontier" if i in low else "local" for i in range(len(tickets))]
    assert [u for u, _ in answered] == expected
    for i, (_, body) in enumerate(answered):
        route = body.model_extra["gekro_route"]
        assert route["reason"] == ("confidence" if i in low else "passed")
        assert route["scores"]["min_field_logprob"] == pytest.approx(conf[i], abs=1e-3)
        assert body.model == (BASE if i in low else "tickets")
    assert (cut.headers["x-gekro-upstream"], cut.parse().model_extra["gekro_route"]["reason"]) == ("frontier", "check")
    assert cut.parse().model_extra["gekro_route"]["failed_checks"] == ["json_valid"]
    assert (big.headers["x-gekro-upstream"], big.headers["x-gekro-route-reason"]) == ("frontier", "capacity")
    assert plan_upstream == "frontier" and chunks[0]["gekro_route"]["reason"] == "rule"
    assert 'gekro_route_requests_total{reason="confidence",status="200",tenant="default",upstream="frontier"} ' \
           f'{float(len(low))}' in metrics

    # The escalation log: one line per escalation, the frontier's answer as the assistant turn.
    log_path = tmp_path / "policy.jsonl"
    rows = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [r["gekro_route"]["reason"] for r in rows] == ["confidence"] * len(low) + ["check", "capacity", "rule"]
    frontier_texts = [b.choices[0].message.content for u, b in answered if u == "frontier"]
    assert [r["messages"][-1]["content"] for r in rows[:len(low)]] == frontier_texts
    assert rows[len(low)]["gekro_route"]["local_answer"] is not None  # the cut answer, kept for relabelling

    # ...which the data stage reads as it is, and a recipe trains on for 2 steps.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "-m", "gekro_ft.cli", "data", "validate", str(log_path),
                           "--model", BASE], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    cmd = [sys.executable, "-m", "gekro_ft.cli", "train", "smollm2-135m-cpu", "-o", str(tmp_path / "again")]
    for o in [f"data.train={log_path}", "train.max_steps=2", "train.batch_size=2", "train.save_steps=100",
              "train.eval_steps=100", "data.eval_frac=0.2", "tracking.experiment=route-tests",
              "model.max_seq_len=1024"]:  # the capacity escalation's prompt is long on purpose
        cmd += ["--set", o]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "again" / "adapter" / "adapter_config.json").is_file()


def test_the_frontier_killed_mid_run_falls_back_with_nothing_lost(engine, tmp_path):
    with fake_openai("--tokens", "3") as fake:
        _kill_mid_run(engine, tmp_path, fake.proc, fake.port)


def _kill_mid_run(engine: str, tmp_path: Path, fake: subprocess.Popen, fake_port: int) -> None:
    doc = {"local": {"url": engine, "model": "tickets", "timeout_s": 600},
           "frontier": {"url": f"http://127.0.0.1:{fake_port}/v1", "model": "fake-base", "price": "gpt-4.1-mini",
                        "on_error": "open", "max_retries": 1, "backoff_s": 0.05, "timeout_s": 5},
           "rules": {"default": "frontier"}}  # everything goes to the frontier while it is up
    server, port = _router(tmp_path, doc, "kill")
    total, kill_after = 150, 50
    ask = {"model": "tickets", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}

    async def load():
        done = 0
        gate = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1", timeout=300) as client:
            async def one():
                nonlocal done
                async with gate:
                    r = await client.post("/chat/completions", json=ask)
                done += 1
                if done == kill_after:
                    fake.send_signal(signal.SIGKILL)
                return r

            return await asyncio.gather(*(one() for _ in range(total)))

    with server:
        responses = asyncio.run(load())
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert [r.status_code for r in responses] == [200] * total  # every request answered
    routes = [r.json()["gekro_route"] for r in responses]
    by_frontier = sum(1 for x in routes if x["upstream"] == "frontier")
    fell_back = [x for x in routes if x.get("fallback")]
    assert by_frontier >= kill_after - 16 and fell_back  # some before the kill, the rest after it
    assert by_frontier + len(fell_back) == total
    assert all(x["upstream"] == "local" and x["reason"] == "frontier_error" for x in fell_back)
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("gekro_route_requests_total{"))
    assert counted == total


def test_calibrate_on_the_ticket_suite_writes_a_profile_and_figures_that_recompute(engine, tmp_path, cli):
    """The shipped ticket suite, limited to CAL examples (a copy with `limit: CAL`), the adapter local,
    the base model standing in for the frontier, priced as gpt-4.1-mini."""
    from gekro_ft.eval.metrics import score, success_rate
    from gekro_ft.eval.recordings import request_key
    from gekro_ft.eval.runner import load_examples
    from gekro_ft.eval.suite import load_suite
    from gekro_ft.route.profile import load_route_profile

    suite_doc = yaml.safe_load((ROOT / "eval" / "ticket-extraction.yaml").read_text())
    suite_doc.update(data=str(TICKETS), limit=CAL)
    suite_doc["endpoint"].update(timeout_s=600, api_key_env=None)  # a shared CPU is slow, not failing
    suite_doc["metrics"][2]["schema"] = str(SCHEMA)
    suite_file = tmp_path / "tickets-cal.yaml"
    suite_file.write_text(yaml.safe_dump(suite_doc))
    out = tmp_path / "route"
    result = cli("route", "calibrate", str(suite_file), "--local", engine, "--local-model", "tickets",
                 "--frontier", engine, "--frontier-model", BASE, "--frontier-price", "gpt-4.1-mini",
                 "--local-usd-per-1m", "0.5", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "route.json").read_text())
    assert doc["schema_version"] == 1 and len(doc["per_example"]) == CAL
    for name in ("route.md", "route.html", "quality_vs_cost.png", "escalation_rate.png", "route-profile.yaml"):
        assert (out / name).is_file(), name

    # Recompute every curve point from the per-example rows and the stated inputs: the answers are
    # replayed from the recordings (nothing generated twice) and scored with the suite's metrics.
    suite = load_suite(suite_file)
    examples = load_examples(suite)
    refs = [e.reference for e in examples]
    settings = suite.generation.model_dump()

    def replay(path: Path, model: str, extra: dict) -> list[dict]:  # in example order, by request key
        recorded = {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}
        return [recorded[request_key(model, e.conv.prompt_messages(), {**settings, **extra})] for e in examples]

    local = replay(out / "recordings" / "local-tickets.jsonl", "tickets", {"logprobs": True})
    frontier = replay(out / "recordings" / f"{BASE}.jsonl", BASE, {})
    local_rows, _ = score(suite.metrics, [r["text"] for r in local], refs)
    frontier_rows, _ = score(suite.metrics, [r["text"] for r in frontier], refs)
    metric, per_1m = doc["inputs"]["metric"], doc["inputs"]["local_usd_per_1m_output_tokens"]
    price = doc["inputs"]["frontier_price"]
    assert metric == "field_f1" and per_1m == 0.5
    ex = doc["per_example"]
    for e, f in zip(ex, frontier):
        # the frontier's bill: input × $/1M in + output × $/1M out
        assert e["frontier"]["usd"] == pytest.approx((f["input_tokens"] * price["input_per_m"]
                                                      + f["output_tokens"] * price["output_per_m"]) / 1e6)
    for p in doc["curve"]:
        t = -math.inf if p["threshold"] is None else p["threshold"]
        esc = {i for i, e in enumerate(ex) if (p["checks"] and e["failed_checks"])
               or (e["scores"][p["score"]] if e["scores"][p["score"]] is not None else -math.inf) < t}
        rows = [frontier_rows[i] if i in esc else local_rows[i] for i in range(CAL)]
        f1 = sum(r["field_f1"] for r in rows) / CAL
        usd = sum(e["local"]["output_tokens"] for e in ex) * per_1m / 1e6 + sum(ex[i]["frontier"]["usd"] for i in esc)
        delivered = sum(ex[i]["frontier" if i in esc else "local"]["output_tokens"] for i in range(CAL))
        assert p["escalated"] == len(esc)
        assert p["quality"]["field_f1"] == pytest.approx(f1)
        assert p["quality"]["success_rate"] == pytest.approx(success_rate(rows, "exact_match", 1.0))
        assert p["usd"] == pytest.approx(usd) and p["usd_per_1m_output_tokens"] == pytest.approx(usd / delivered * 1e6)
    chosen = doc["chosen"]
    floor = doc["frontier_only"]["quality"]["field_f1"] - 0.02
    within = [p for p in doc["curve"] if p["quality"]["field_f1"] >= floor - 1e-12]
    assert chosen["usd"] == min(p["usd"] for p in within)
    assert doc["saving"]["usd_per_month"] == pytest.approx(
        (doc["frontier_only"]["usd_per_request"] - chosen["usd_per_request"]) * 1e6)
    profile = load_route_profile(str(out / "route-profile.yaml"))  # the written profile loads
    assert profile.local.model == "tickets"
    assert bool(profile.checks and profile.checks.json_valid) == chosen["checks"]

    # Out of sample: each fold's held-out examples routed by the policy its other folds chose.
    from gekro_ft.route.calibrate import folds_of

    oos = doc["out_of_sample"]
    assert oos["folds"] == 5 and doc["inputs"]["seed"] == 0
    escalated = set()
    for fold, held in zip(oos["per_fold"], folds_of(CAL, 5, 0)):
        rule = fold["policy"]
        if rule is None:
            escalated |= set(held)
            continue
        t = -math.inf if rule["threshold"] is None else rule["threshold"]
        escalated |= {i for i in held if (rule["checks"] and ex[i]["failed_checks"])
                      or (ex[i]["scores"][rule["score"]] if ex[i]["scores"][rule["score"]] is not None
                          else -math.inf) < t}
    assert oos["escalated_ids"] == [ex[i]["id"] for i in sorted(escalated)]
    rows = [frontier_rows[i] if i in escalated else local_rows[i] for i in range(CAL)]
    iv = oos["intervals"]
    assert iv["field_f1"]["point"] == pytest.approx(sum(r["field_f1"] for r in rows) / CAL)
    assert iv["field_f1"]["lo"] <= iv["field_f1"]["point"] <= iv["field_f1"]["hi"]
    assert iv["delta_field_f1"]["point"] == pytest.approx(iv["field_f1"]["point"] - iv["frontier_field_f1"]["point"])
    assert "Out of sample" in (out / "route.md").read_text()


def test_calibrate_against_the_reference_frontier_continues_after_a_timeout(engine, tmp_path, cli):
    """A local timeout fails the run with a message that says what to do, keeps what was
    answered, and a rerun with a longer --timeout finishes; the frontier is the simulated one."""
    out = tmp_path / "route"
    args = ["route", "calibrate", "ticket-extraction", "--local", engine, "--local-model", "tickets",
            "--frontier", "reference:ticket-extraction@0.05", "--frontier-price", "gpt-4.1-mini",
            "--local-usd-per-1m", "0.5", "--limit", str(CAL), "--folds", "3", "--out", str(out)]
    failed = cli(*args, "--timeout", "0.001")
    assert failed.exit_code != 0
    assert "timed out after 0.001 s (raise it with --timeout)" in failed.output
    assert "a rerun asks only for the rest" in failed.output and "Traceback" not in failed.output
    done = cli(*args)
    assert done.exit_code == 0, done.output
    assert "out of sample (3-fold, 95% intervals)" in done.output
    doc = json.loads((out / "route.json").read_text())
    frontier = doc["inputs"]["frontier"]
    assert frontier["simulation"] is True and frontier["error_rate"] == 0.05 and frontier["kind"] == "reference"
    assert len((out / "recordings" / "local-tickets.jsonl").read_text().splitlines()) == CAL
