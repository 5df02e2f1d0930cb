"""``gekro-ft pipeline``: data → train → eval (gate, promote) → serve + bench → cost → summary.

Each stage is the real command in its own process (``python -m gekro_ft.cli …``): its
progress shows as it would in a terminal, its memory (a GPU's included) is returned
before the next stage loads a model, and what it writes is what the next stage and the
summary read — nothing here computes a figure of its own.

MLflow: one parent run per pipeline; train, eval and bench open their own runs as its
children (``GEKRO_FT_PARENT_RUN_ID`` in their environment), and the pipeline logs the
data and cost stages as child runs itself. ``--resume`` reopens the same parent run and
skips every stage ``pipeline.json`` records as done; training continues from its checkpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.atomic import atomic_output
from gekro_ft.errors import PipelineError, PipelineInterrupted
from gekro_ft.pipeline.config import Pipeline
from gekro_ft.pipeline.state import PipelineState
from gekro_ft.pipeline.summary import write_summary

STAGES = ("data", "train", "eval", "bench", "cost")


@dataclass
class PipelineOutcome:
    summary: dict[str, Any]
    summary_path: Path
    exit_code: int  # 0 all done and the gate passed; 1 the gate failed (stopped before serving)


class _Runner:
    """Runs stage commands and forwards SIGTERM to the one running, so it stops cleanly
    (training saves a checkpoint). SIGINT from a terminal reaches the whole process group
    already, so it is not forwarded: training reads a second SIGINT as "stop now"."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.child: subprocess.Popen | None = None
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Runner:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        if self.child is None or self.child.poll() is not None:
            raise PipelineInterrupted(f"stopped by {signal.Signals(signum).name}", hint="run again with --resume")
        if signum == signal.SIGTERM:
            self.child.send_signal(signum)

    def gekro(self, args: list[Any], stdout: Path | None = None) -> int:
        """Run ``gekro-ft ARGS`` to completion; its exit code, or PipelineInterrupted on a signal."""
        cmd = [sys.executable, "-m", "gekro_ft.cli", *map(str, args)]
        # stdout to a file that appears only when the command ran to its end, never half written
        with atomic_output(stdout) if stdout else nullcontext() as sink:
            self.child = subprocess.Popen(cmd, env=self.env, stdout=sink)
            try:
                code = self.child.wait()
            finally:
                self.child = None
            if self.received is not None:
                raise PipelineInterrupted(f"`gekro-ft {args[0]}` stopped by {signal.Signals(self.received).name}",
                                          hint="run again with --resume")
        return code


def run_pipeline(p: Pipeline, work: Path, resume: bool = False,
                 say: Callable[[str], None] = print) -> PipelineOutcome:
    """Run (or with ``resume``, continue) ``p`` in ``work``; see the module docstring."""
    from gekro_ft import tracking

    preflight(p)
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    state = PipelineState.open(work, p.fingerprint(), resume)
    uri = tracking.tracking_uri()
    parent = _ParentRun(uri, p, state)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, tracking.PARENT_ENV: parent.run_id,
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    stages = _Stages(p, work, state, parent, say)
    started = time.time() - sum(s.get("seconds", 0) for s in state.stages.values())
    status = "FAILED"
    try:
        with _Runner(env) as runner:
            stages.runner = runner
            stages.run("data", stages.data)
            stages.run("train", stages.train)
            verdict = stages.run("eval", stages.eval)["verdict"]
            if verdict == "pass" and p.serve:
                stages.run("bench", stages.bench)
                if p.cost:
                    stages.run("cost", stages.cost)
            elif verdict != "pass":
                say(f"the gate failed: not serving (see {work / 'eval' / 'report.md'})")
        status, exit_code = ("FINISHED", 0) if verdict == "pass" else ("FAILED", 1)
    except PipelineInterrupted:
        status = "KILLED"
        raise
    finally:
        summary = _summary(p, work, state, uri, time.time() - started)
        summary_path = write_summary(summary, work)
        parent.finish(status, summary, [work / "summary.md", work / "summary.html", work / "summary.json"])
        say(f"summary: {summary_path}")
    return PipelineOutcome(summary, summary_path, exit_code)


def preflight(p: Pipeline) -> None:
    """Load everything the stages will, so a typo in a gate or a price name fails now,
    not after a night of training."""
    from gekro_ft.eval.suite import load_suite, with_gate
    from gekro_ft.recipe import load_recipe

    load_recipe(p.train.recipe, p.train.set)
    suite = load_suite(p.eval.suite)
    if p.eval.gate:
        with_gate(suite, p.eval.gate)
    if p.serve and p.serve.profile:
        from gekro_ft.serve.profile import load_profile

        load_profile(p.serve.profile)
    if p.cost:
        from gekro_ft.cost.prices import load_prices

        table = load_prices(p.cost.prices)
        table.gpu_price(p.cost.gpu)
        for name in p.cost.compare:
            table.api_price(name)


class _ParentRun:
    """The pipeline's MLflow run, opened through the client: the stages run in other
    processes, so there is no active run to hold here."""

    def __init__(self, uri: str, p: Pipeline, state: PipelineState):
        from mlflow import MlflowClient
        from mlflow.entities import Param

        from gekro_ft import tracking

        self.client = MlflowClient(tracking_uri=uri)
        if state.parent_run_id:
            self.run_id = state.parent_run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self.experiment_id = self.client.get_run(self.run_id).info.experiment_id
            return
        self.experiment_id = tracking.setup(p.experiment).get_experiment_by_name(p.experiment).experiment_id
        tags = {"gekro_ft.kind": "pipeline", "gekro_ft.fingerprint": state.fingerprint}
        if commit := tracking.git_commit():
            tags["gekro_ft.git_commit"] = commit
        run = self.client.create_run(self.experiment_id, run_name=p.name, tags=tags)
        self.run_id = run.info.run_id
        from gekro_ft.eval.metrics import flatten

        params = {".".join(k): v for k, v in flatten(p.model_dump()).items() if v is not None}
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
        state.parent_run_id = self.run_id
        state.save()

    def child(self, stage: str, params: dict[str, Any], metrics: dict[str, float], artifacts: list[Path]) -> str:
        """A finished child run for a stage that opens none of its own (data, cost)."""
        from mlflow.entities import Metric, Param

        run = self.client.create_run(self.experiment_id, run_name=stage,
                                     tags={"mlflow.parentRunId": self.run_id, "gekro_ft.stage": stage})
        now = int(time.time() * 1000)
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()],
                              metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        for a in artifacts:
            self.client.log_artifact(run.info.run_id, str(a))
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    def finish(self, status: str, summary: dict[str, Any], artifacts: list[Path]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        figures = {f"candidate.{k}": v for k, v in summary["eval"].get("candidate", {}).items()}
        figures |= {f"baseline.{k}": v for k, v in summary["eval"].get("baseline", {}).items()}
        for k in ("full_load_usd_per_1m_output_tokens", "usd_per_1m_useful_output_tokens", "tokens_per_s"):
            figures[k] = summary["cost"].get(k)
        metrics = [Metric(k, float(v), now, 0) for k, v in figures.items() if isinstance(v, (int, float))]
        self.client.log_batch(self.run_id, metrics=metrics)
        if summary["eval"].get("verdict"):
            self.client.set_tag(self.run_id, "gekro_ft.verdict", summary["eval"]["verdict"])
        for a in artifacts:
            if a.exists():
                self.client.log_artifact(self.run_id, str(a))
        self.client.set_terminated(self.run_id, status)


class _Stages:
    """One method per stage; each returns what ``pipeline.json`` records for it."""

    def __init__(self, p: Pipeline, work: Path, state: PipelineState, parent: _ParentRun, say: Callable[[str], None]):
        self.p, self.work, self.state, self.parent, self.say = p, work, state, parent, say
        self.runner: _Runner | None = None

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        n = f"{STAGES.index(name) + 1}/{len(STAGES)} {name}"
        if self.state.done(name):
            self.say(f"{n}: done in an earlier run, skipped")
            return self.state.stages[name]
        self.say(f"{n}: {fn.__doc__.strip().splitlines()[0]}")
        started = time.time()
        self.state.mark(name, "running")
        try:
            result = fn()
        except PipelineInterrupted:
            self.state.mark(name, "interrupted")
            raise
        except Exception as e:
            self.state.mark(name, "failed", error=str(e)[:500])
            raise
        self.state.mark(name, "done", seconds=round(time.time() - started, 1), **result)
        return self.state.stages[name]

    def _gekro(self, args: list[Any], stdout: Path | None = None, ok: tuple[int, ...] = (0,)) -> int:
        code = self.runner.gekro(args, stdout)
        if code not in ok:
            raise PipelineError(f"stage command `gekro-ft {' '.join(map(str, args[:2]))}` exited with {code}",
                                hint="its message is above; fix it and run again with --resume")
        return code

    def data(self) -> dict[str, Any]:
        """validate the dataset against the recipe's model and split off the eval-loss set"""
        from gekro_ft.recipe import load_recipe

        recipe = load_recipe(self.p.train.recipe, self.p.train.set)
        d, out = self.p.data, self.work / "data"
        out.mkdir(exist_ok=True)
        max_len = d.max_seq_len or recipe.model.max_seq_len
        code = self._gekro(["data", "validate", d.file, "--model", recipe.model.name, "--max-seq-len", max_len,
                            "--json"], stdout=out / "validate.json", ok=(0, 1))
        found = orjson.loads((out / "validate.json").read_bytes())
        if code == 1:
            raise PipelineError(f"{d.file}: {found['counts']['errors']} rows with errors "
                                f"({', '.join(found['counts']['by_code'])})",
                                hint=f"see {out / 'validate.json'}, or run `gekro-ft data validate {d.file}`")
        self._gekro(["data", "split", d.file, "--eval-frac", d.eval_frac, "--seed", d.seed, "--out-dir", out,
                     "--json"], stdout=out / "split.json")
        split = orjson.loads((out / "split.json").read_bytes())
        self.parent.child("data", {"file": d.file, "model": recipe.model.name, "max_seq_len": max_len},
                          {k: split[k] for k in ("rows", "train", "eval", "duplicates", "unreadable")}
                          | {"warnings": found["counts"]["warnings"]}, [out / "validate.json", out / "split.json"])
        return {"counts": found["counts"], "split": {k: split[k] for k in ("rows", "train", "eval", "duplicates")}}

    def train(self) -> dict[str, Any]:
        """QLoRA training from the recipe (continues from its newest checkpoint)"""
        from gekro_ft.adapter import MANIFEST, read_manifest
        from gekro_ft.train.run import latest_checkpoint

        out = self.work / "train"
        if not (out / "adapter" / MANIFEST).exists():  # else it finished before a kill reached the state file
            data = self.work / "data"
            args = ["train", self.p.train.recipe, "--output-dir", out, "--set", f"data.train={data / 'train.jsonl'}",
                    "--set", "data.eval_frac=null", "--set", f"data.eval={data / 'eval.jsonl'}"]
            args += [a for o in self.p.train.set for a in ("--set", o)]
            if latest_checkpoint(out) is not None:
                self.say(f"    resuming from {latest_checkpoint(out).name}")
                args.append("--resume")
            self._gekro(args)
        m = read_manifest(out / "adapter")
        return {"adapter": str(out / "adapter"), "run_id": m.get("mlflow_run_id"),
                "registered_model": m["recipe"]["tracking"].get("registered_model")}

    def eval(self) -> dict[str, Any]:
        """the adapter against the baseline on the eval suite; promote it if the gate passes"""
        e, out = self.p.eval, self.work / "eval"
        args = ["eval", e.suite, "--candidate", self.state.stages["train"]["adapter"], "--out", out,
                "--recordings", e.recordings or self.work / "recordings"]
        if e.baseline:
            args += ["--baseline", e.baseline] + (["--baseline-model", e.baseline_model] if e.baseline_model else [])
        args += (["--promote"] if e.promote else []) + (["--limit", e.limit] if e.limit else [])
        args += ["--gate", e.gate] if e.gate else []
        code = self._gekro(args, ok=(0, 1))
        report = orjson.loads((out / "report.json").read_bytes())
        return {"verdict": "pass" if code == 0 else "fail", "report": str(out / "report.json"),
                "promotion": report.get("promotion")}

    def bench(self) -> dict[str, Any]:
        """serve the champion and measure it under load"""
        from gekro_ft.eval.suite import load_suite
        from gekro_ft.serve.profile import load_profile
        from gekro_ft.process import stop_process, wait_healthy

        s, b = self.p.serve, self.p.bench
        promotion = self.state.stages["eval"].get("promotion") or {}
        source = f"models:/{promotion['name']}@champion" if promotion.get("name") else self.state.stages["train"]["adapter"]
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = ["serve", *([s.profile] if s.profile else []), *(["--engine", s.engine] if s.engine else []),
               "--host", "127.0.0.1", "--port", port, "--adapter", f"{s.adapter_name}={source}"]
        key_env = load_profile(s.profile).api_key_env if s.profile else None
        self.say(f"    {s.adapter_name}={source} at {url} (log: {self.work / 'serve.log'})")
        with open(self.work / "serve.log", "wb") as log:
            server = subprocess.Popen([sys.executable, "-m", "gekro_ft.cli", *map(str, cmd)], env=self.runner.env,
                                      stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(url, s.start_timeout_s, server)
            prompts = load_suite(self.p.eval.suite).data_path()
            self._gekro(["bench", "--url", url, "--model", s.adapter_name, "--prompts", prompts,
                         "--concurrency", ",".join(map(str, b.concurrency)), "--requests", b.requests,
                         "--max-tokens", b.max_tokens, "--out", self.work / "bench",
                         *(["--api-key-env", key_env] if key_env and os.environ.get(key_env) else [])])
        finally:
            stop_process(server, grace=60)
        return {"bench": str(self.work / "bench" / "bench.json"), "served": source}

    def cost(self) -> dict[str, Any]:
        """what an output costs on the serving machine, against the APIs"""
        c, out = self.p.cost, self.work / "cost"
        self._gekro(["cost", "report", "--bench", self.work / "bench" / "bench.json", "--gpu", c.gpu,
                     *[a for m in c.compare for a in ("--compare", m)], "--overhead", c.overhead,
                     "--eval", self.work / "eval" / "report.json", *(["--prices", c.prices] if c.prices else []),
                     "--out", out])
        figures = orjson.loads((out / "cost.json").read_bytes())
        keep = ("full_load_usd_per_1m_output_tokens", "usd_per_1m_useful_output_tokens", "tokens_per_s")
        self.parent.child("cost", {"gpu": c.gpu, "overhead": c.overhead, "compare": ",".join(c.compare)},
                          {k: figures[k] for k in keep if isinstance(figures.get(k), (int, float))},
                          [out / "cost.json", out / "cost.md", out / "cost.html"])
        return {"cost": str(out / "cost.json")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes()) if path.exists() else {}


def _summary(p: Pipeline, work: Path, state: PipelineState, tracking_uri: str, seconds: float) -> dict[str, Any]:
    """Everything the summary shows, read back from what the stages wrote."""
    from gekro_ft.adapter import read_manifest

    manifest = read_manifest(work / "train" / "adapter", missing_ok=True)
    report = _read(work / "eval" / "report.json")
    cost = _read(work / "cost" / "cost.json")
    sides, gate = report.get("sides", {}), report.get("gate", {})
    return {
        "schema_version": 1,
        "pipeline": p.name,
        "duration_s": round(seconds, 1),
        "stages": {k: v.get("status") for k, v in state.stages.items()},
        "mlflow": {"tracking_uri": tracking_uri, "parent_run_id": state.parent_run_id},
        "data": state.stages.get("data", {}),
        "training": {"metrics": manifest.get("metrics", {}), "run_id": manifest.get("mlflow_run_id"),
                     "max_steps": manifest.get("recipe", {}).get("train", {}).get("max_steps"),
                     "recipe": p.train.recipe},
        "eval": {"verdict": gate.get("verdict"), "gate": gate.get("expression"), "reason": gate.get("reason"),
                 "examples": report.get("suite", {}).get("examples"), "baseline_spec": p.eval.baseline,
                 "candidate": sides.get("candidate", {}).get("aggregates", {}),
                 "baseline": sides.get("baseline", {}).get("aggregates", {}),
                 "baseline_is_stand_in": p.eval.baseline_is_stand_in, "promotion": report.get("promotion")},
        "cost": {"gpu": p.cost.gpu if p.cost else None, "tokens_per_s": cost.get("tokens_per_s"),
                 "hourly": cost.get("gpu_hourly"),
                 "full_load_usd_per_1m_output_tokens": cost.get("full_load_usd_per_1m_output_tokens"),
                 "usd_per_1m_useful_output_tokens": cost.get("usd_per_1m_useful_output_tokens"),
                 "apis": cost.get("apis", [])},
        "paths": {name: str(path) for name, path in {
            "adapter": work / "train" / "adapter", "eval report": work / "eval" / "report.html",
            "bench report": work / "bench" / "bench.html", "cost report": work / "cost" / "cost.html",
            "state": work / "pipeline.json"}.items() if path.exists()},
    }
