"""The demo pipeline, shortened, end to end on the real model: killed during training,
continued, and finished — with one parent run in a real MLflow store, the adapter beating
the base model, the champion alias moved, the CPU engine benched and the cost priced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.slow

SHORT = ["--set", "train.set=[train.max_steps=10, train.batch_size=4, train.save_steps=4, train.eval_steps=10,"
         " train.logging_steps=2]",
         "--set", "eval.limit=8", "--set", "bench.concurrency=[1,4]", "--set", "bench.requests=4",
         "--set", "bench.max_tokens=24"]


def _demo(work: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gekro_ft.cli", "demo", "--work", str(work), *SHORT], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path_glob: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not list(path_glob.parent.glob(path_glob.name)):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"no {path_glob} after {timeout}s"
        time.sleep(1)


def test_demo_killed_during_training_resumes_and_finishes(tmp_path):
    from mlflow import MlflowClient

    work = tmp_path / "demo"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}

    first = _demo(work, env)
    _wait_for(work / "train" / "checkpoints" / "checkpoint-4", first, timeout=900)
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=300)[0]
    assert first.returncode == 130, out[-3000:]
    state = orjson.loads((work / "pipeline.json").read_bytes())
    assert state["stages"]["data"]["status"] == "done" and state["stages"]["train"]["status"] == "interrupted"
    client = MlflowClient(tracking_uri=uri)
    parent_id = state["parent_run_id"]
    assert client.get_run(parent_id).info.status == "KILLED"
    assert not (work / "train" / "adapter").exists()

    second = _demo(work, env)  # the demo continues by itself; `pipeline` needs --resume
    out = second.communicate(timeout=1800)[0]
    assert second.returncode == 0, out[-4000:]
    assert "continuing the demo" in out and "resuming from checkpoint-" in out
    assert "1/5 data: done in an earlier run, skipped" in out

    # One parent run, now finished; every stage a child of it, the training run resumed, not restarted.
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["gekro_ft.verdict"] == "pass"
    exp = parent.info.experiment_id
    assert len(client.search_runs([exp], "tags.gekro_ft.kind = 'pipeline'")) == 1
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 5, [c.info.run_name for c in children]  # data, train, eval, bench, cost
    train_runs = [c for c in children if c.info.run_name == "smollm2-135m-cpu"]
    assert len(train_runs) == 1 and train_runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(train_runs[0].info.run_id, "loss")]
    assert min(steps) < 4 < max(steps) == 10  # one run holds the steps from before and after the kill

    # The adapter beats the base model (the stand-in baseline) and holds the champion alias.
    summary = orjson.loads((work / "summary.json").read_bytes())
    cand, base = summary["eval"]["candidate"], summary["eval"]["baseline"]
    assert cand["json_valid"] > base["json_valid"] and cand["field_f1"] > base["field_f1"]
    name = summary["eval"]["promotion"]["name"]
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.run_id == train_runs[0].info.run_id

    # Train, eval and the server ran through the stage entry, each with its resolved request.
    stages = work / "stages"
    assert {f.name for f in stages.glob("*.request.json")} == {"train.request.json", "eval.request.json",
                                                               "serve.request.json"}
    assert orjson.loads((stages / "train.result.json").read_bytes())["adapter"] == str(work / "train" / "adapter")
    assert orjson.loads((stages / "eval.result.json").read_bytes())["verdict"] == "pass"

    # The gate judged what is served: the adapter's answers came from the CPU engine's endpoint,
    # the same server the bench then measured.
    judged = orjson.loads((work / "eval" / "report.json").read_bytes())["sides"]["candidate"]["provider"]
    assert (judged["kind"], judged["engine"], judged["adapter"]) == ("served", "cpu", str(work / "train" / "adapter"))
    assert summary["eval"]["judged"].startswith("cpu engine, through http://127.0.0.1:")
    assert "The adapter's answers came from: cpu engine" in (work / "summary.md").read_text()

    # Served, benched and priced: figures read from the stages' own outputs.
    bench = orjson.loads((work / "bench" / "bench.json").read_bytes())
    assert [lv["concurrency"] for lv in bench["levels"]] == [1, 4]
    assert all(lv["errors"] == 0 and lv["completed"] == 4 for lv in bench["levels"])
    cost = orjson.loads((work / "cost" / "cost.json").read_bytes())
    assert summary["cost"]["full_load_usd_per_1m_output_tokens"] == cost["full_load_usd_per_1m_output_tokens"] > 0
    html = (work / "summary.html").read_text()
    assert "stand-in" in html and "data:image/png;base64," in html  # the loss curve, inlined
    assert f"summary: {work / 'summary.html'}" in out.replace("\n", "")

    # The router, calibrated against the simulated frontier while the adapter was served: the
    # summary shows it beside the adapter alone and the frontier alone, out of sample too.
    route = summary["route"]
    assert route["frontier"]["simulation"] is True and route["examples"] == 8
    assert route["local_only"] and route["frontier_only"] and route["out_of_sample"]["folds"] == 5
    assert (work / "route" / "route.html").is_file()
    md = (work / "summary.md").read_text()
    assert "## Router" in md and "a **simulation**" in md and "Out of sample (5-fold" in md

    # Everything done: another run only re-reads it.
    third = subprocess.run([sys.executable, "-m", "gekro_ft.cli", "pipeline", "demo", "--work", str(work),
                            "--resume", *SHORT], env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stderr.count("done in an earlier run, skipped") == 5


def test_a_failed_gate_stops_before_the_bench_with_exit_1(tmp_path):
    """Resumed after data and training (recorded as done, with a random adapter standing in
    for the trained one): eval runs through the server, the gate fails, nothing is benched or
    priced, the parent run FAILED."""
    from mlflow import MlflowClient

    from gekro_ft.pipeline.config import load_pipeline
    from gekro_ft.pipeline.state import PipelineState
    from serving import make_adapter

    work = tmp_path / "work"
    overrides = ["eval.limit=4", "eval.promote=false"]
    adapter = make_adapter(work / "train" / "adapter")  # random LoRA weights: no JSON comes out
    state = PipelineState(work / "pipeline.json", load_pipeline("demo", overrides).fingerprint())
    state.mark("data", "done", counts={"rows": 300, "usable_rows": 300, "errors": 0, "warnings": 0},
               split={"rows": 300, "train": 270, "eval": 30, "duplicates": 0})
    state.mark("train", "done", adapter=str(adapter), run_id=None, registered_model=None)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-m", "gekro_ft.cli", "pipeline", "demo", "--work", str(work), "--resume",
                           *[a for o in overrides for a in ("--set", o)]],
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "the gate failed: not benched or priced" in done.stderr
    assert done.stderr.count("done in an earlier run, skipped") == 2
    saved = orjson.loads((work / "pipeline.json").read_bytes())
    assert saved["stages"]["eval"]["verdict"] == "fail" and "bench" not in saved["stages"]
    assert not (work / "bench").exists() and not (work / "cost").exists()
    parent = MlflowClient(tracking_uri=uri).get_run(saved["parent_run_id"])
    assert parent.info.status == "FAILED" and parent.data.tags["gekro_ft.verdict"] == "fail"
    assert "Verdict: **FAIL**" in (work / "summary.md").read_text()
