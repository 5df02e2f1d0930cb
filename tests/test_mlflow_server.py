"""Tracking through a real ``mlflow server`` process, as teams run it: train, eval and promote
over HTTP, and a server that goes away mid-run.

One module-scoped server (SQLite backend, artifacts served by the server from its own
directory). The training run loses the server after its second checkpoint, stops with a
one-line error and a checkpoint, and finishes with ``--resume`` once the server is back;
the eval and the promotion then go through the same server. Everything is read back with
the MLflow client over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import DATASETS, REPO, wait_for_file
from serving import free_port

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def mlflow_server(root: Path, port: int):
    """``mlflow server`` on 127.0.0.1:PORT until the block ends (its workers stopped with it)."""
    log = open(root / f"server-{time.monotonic_ns()}.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server",
                             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                             "--artifacts-destination", str(root / "served-artifacts"),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            # its background job runner (for GenAI features) is not needed for tracking
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"mlflow server exited with {proc.returncode}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "mlflow server not healthy after 120 s"
            time.sleep(0.5)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _train_cmd(out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "gekro_ft.cli", "train", "smollm2-135m-cpu", "-o", str(out)]
    for o in ["train.max_steps=8", "train.batch_size=2", "train.save_steps=2", "train.logging_steps=1",
              "data.eval_frac=null", f"data.train={DATASETS / 'ticket-extraction' / 'openai.jsonl'}",
              "tracking.registered_model=tickets", "tracking.experiment=remote"]:
        cmd += ["--set", o]
    return cmd


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    # Fail fast when the server is gone (MLflow's default retries for about four minutes).
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    work = root / "work"
    work.mkdir()
    out = work / "run"

    # 1. Train until the second checkpoint, then take the server away.
    with mlflow_server(root, port):
        proc = subprocess.Popen(_train_cmd(out), cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_for_file(out / "checkpoints" / "checkpoint-2", proc, timeout=900)
    stdout, stderr = proc.communicate(timeout=600)
    lost = {"code": proc.returncode, "stderr": stderr,
            "checkpoints": sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*"))}

    # 2. The server is back (same store, same port): resume, then eval and promote through it.
    with mlflow_server(root, port):
        resumed = subprocess.run(_train_cmd(out) + ["--resume"], cwd=work, env=env, capture_output=True,
                                 text=True, timeout=900)
        suite = root / "suite.yaml"  # two shipped tickets, short answers: the tracking is under test here
        suite.write_text(f"name: remote-smoke\ndata: {REPO / 'eval' / 'ticket-extraction' / 'openai.jsonl'}\n"
                         "limit: 2\ngeneration: {max_tokens: 24, temperature: 0}\nmetrics: [exact_match, json_valid, chrf]\n"
                         "gate: candidate.chrf >= 0\n")
        evaluated = subprocess.run([sys.executable, "-m", "gekro_ft.cli", "eval", str(suite), "--candidate",
                                    "models:/tickets/1", "--promote", "-o", str(work / "eval")],
                                   cwd=work, env=env, capture_output=True, text=True, timeout=900)
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        yield {"root": root, "uri": uri, "out": out, "lost": lost, "resumed": resumed, "evaluated": evaluated,
               "client": client}


def test_losing_the_server_mid_run_stops_with_one_line_and_a_checkpoint(remote):
    lost = remote["lost"]
    assert lost["code"] == 2, lost["stderr"][-3000:]
    last = lost["stderr"].strip().splitlines()[-1]
    assert last.startswith(f"Error (tracking): the MLflow tracking server at {remote['uri']} stopped answering "
                           "while logging step "), last
    assert "--resume" in last and "Traceback" not in lost["stderr"]
    # the step it stopped at was saved: a checkpoint beyond the second
    assert "checkpoint-2" in lost["checkpoints"] and len(lost["checkpoints"]) >= 2, lost["checkpoints"]


def test_resume_finishes_the_same_run_and_uploads_the_adapter_over_http(remote):
    resumed, client = remote["resumed"], remote["client"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("remote").experiment_id])
    assert len(runs) == 1  # resumed, not a second run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # the server stores artifacts, not us
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert max(steps) == 8 and 1 in steps
    files = {f.path for f in client.list_artifacts(run.info.run_id, "adapter")}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/gekro_ft.json"} <= files
    served = remote["root"] / "served-artifacts"
    assert list(served.rglob("adapter_model.safetensors")), "the adapter did not reach the server's store"
    versions = client.search_model_versions("name='tickets'")
    assert [v.version for v in versions] == ["1"] and versions[0].run_id == run.info.run_id


def test_eval_and_promotion_go_through_the_server(remote):
    evaluated, client = remote["evaluated"], remote["client"]
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    champion = client.get_model_version_by_alias("tickets", "champion")
    assert champion.version == "1"
    eval_runs = client.search_runs([client.get_experiment_by_name("gekro-ft-eval").experiment_id])
    assert len(eval_runs) == 1
    assert eval_runs[0].data.metrics["gate_passed"] == 1.0
    assert champion.tags["gekro_ft.eval.run_id"] == eval_runs[0].info.run_id
    reports = {f.path for f in client.list_artifacts(eval_runs[0].info.run_id, "report")}
    assert "report/report.json" in reports
