"""``gekro-ft pipeline``: data → train → eval (gate, promote) → serve + bench → cost → summary.

The pipeline calls the library. What loads a model runs in a process of its own through
one entry (``python -m gekro_ft.pipeline.stage NAME REQUEST RESULT``: the resolved config
in, the stage's result out, both JSON), so its memory — a GPU's included — is returned
before the next stage loads one: training, eval and the server. Data, bench and cost run
here. One signal path covers every child, the server included (:class:`process.Children`).
The verdict is read from the eval report; what a stage wrote is what the next stage and
the summary read — nothing here computes a figure of its own.

MLflow: one parent run per pipeline; train, eval and bench open their own runs as its
children (``GEKRO_FT_PARENT_RUN_ID``), and the pipeline logs the data and cost stages as
child runs itself. ``--resume`` reopens the same parent run and skips every stage
``pipeline.json`` records as done; training continues from its checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.atomic import write_bytes_atomic
from gekro_ft.errors import GekroError, PipelineConfigError, PipelineError, PipelineInterrupted
from gekro_ft.pipeline.config import Pipeline
from gekro_ft.pipeline.state import PipelineState
from gekro_ft.pipeline.summary import cost_decision, write_summary
from gekro_ft.process import Children

STAGES = ("data", "train", "eval", "bench", "cost")


@dataclass
class PipelineOutcome:
    summary: dict[str, Any]
    summary_path: Path
    exit_code: int  # 0 all done and the gate passed; 1 the gate failed (stopped before serving)


@dataclass
class Loaded:
    """Everything the stages use, loaded once by :func:`preflight`."""

    recipe: Any  # recipe.Recipe, p.train.set applied
    recipe_name: str
    suite: Any  # eval.suite.Suite, p.eval.gate applied
    profile: Any  # serve.profile.Profile, or None: the CPU defaults
    prices: Any  # cost.prices.PriceTable, or None without a cost stage


def preflight(p: Pipeline) -> Loaded:
    """Load everything the stages will, so a typo in a gate, a price name or a name the server
    would refuse fails now, not after a night of training: every problem found (recipe, suite
    and gate, profile and adapter name, prices) in one PipelineConfigError, each naming its key."""
    from gekro_ft.eval.suite import load_suite, with_gate
    from gekro_ft.recipe import find_recipe, load_recipe

    problems: list[str] = []

    def attempt(key: str, load: Callable[[], Any]) -> Any:
        try:
            return load()
        except GekroError as e:
            said = " ".join(str(e).split()).removeprefix("--gate: ")  # the gate comes from the file here
            problems.append(f"{key}: {said}")
            return None

    recipe = attempt("train.recipe", lambda: load_recipe(p.train.recipe, p.train.set))
    suite = attempt("eval.suite", lambda: load_suite(p.eval.suite))
    if p.eval.gate and suite is not None:
        suite = attempt("eval.gate", lambda: with_gate(suite, p.eval.gate))
    elif p.eval.gate:
        from gekro_ft.eval.gate import parse_gate

        attempt("eval.gate", lambda: parse_gate(p.eval.gate))  # its syntax, at least
    profile = prices = None
    if p.serve and p.serve.profile:
        from gekro_ft.serve.profile import load_profile

        profile = attempt("serve.profile", lambda: load_profile(p.serve.profile))
    if profile is not None:  # the name itself was checked with the file; here, against the base's name
        from gekro_ft.serve.adapters import name_problem

        if clash := name_problem(p.serve.adapter_name, profile.served_name):
            problems.append(f"serve.adapter_name: {clash} (profile {p.serve.profile})")
    if p.cost:
        from gekro_ft.cost.prices import load_prices

        prices = attempt("cost.prices", lambda: load_prices(p.cost.prices))
        if prices is not None:
            attempt("cost.gpu", lambda: prices.gpu_price(p.cost.gpu))
            for i, name in enumerate(p.cost.compare):
                attempt(f"cost.compare[{i}]", lambda name=name: prices.api_price(name))
        from gekro_ft.cost.operating_point import parse_slo
        from gekro_ft.cost.traffic import read_traffic

        attempt("cost.slo", lambda: parse_slo([f"{k}={v}" for k, v in p.cost.slo.items()]))
        if p.cost.traffic:  # its shape and values; the tokens per request come from the bench later
            attempt("cost.traffic", lambda: read_traffic(p.cost.traffic, output_tokens_per_request=1))
    if p.route and suite is not None:
        _check_route(p, suite, prices, attempt, problems)
    if problems:
        raise PipelineConfigError(p.source, problems, hint="nothing has run; fix these and run again")
    return Loaded(recipe, find_recipe(p.train.recipe).stem, suite, profile, prices)


def _check_route(p: Pipeline, suite: Any, prices: Any, attempt: Callable[[str, Callable[[], Any]], Any],
                 problems: list[str]) -> None:
    """The route stage's frontier and price, checked before anything runs."""
    r = p.route
    if r.frontier and r.frontier.startswith("reference:"):
        from gekro_ft.eval.reference import reference_frontier

        attempt("route.frontier", lambda: reference_frontier(r.frontier))
    price = r.frontier_price or suite.cost.baseline_price
    if price is None:
        problems.append("route.frontier_price: name the price-table entry the frontier is billed as "
                        "(the suite has no cost.baseline_price)")
    elif prices is not None:
        attempt("route.frontier_price", lambda: prices.api_price(price))


def run_pipeline(p: Pipeline, work: Path, resume: bool = False,
                 say: Callable[[str], None] = print) -> PipelineOutcome:
    """Run (or with ``resume``, continue) ``p`` in ``work``; see the module docstring."""
    from gekro_ft import tracking

    loaded = preflight(p)
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    state = PipelineState.open(work, p.fingerprint(), resume)
    uri = tracking.tracking_uri()
    parent = _ParentRun(uri, p, state)
    stages = _Stages(p, loaded, work, state, parent, say)
    started = time.time() - sum(s.get("seconds", 0) for s in state.stages.values())
    status, verdict = "FAILED", None
    env = {"MLFLOW_TRACKING_URI": uri, tracking.PARENT_ENV: parent.run_id,
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    try:
        with _environ(env), Children(_interrupted, env=dict(os.environ)) as children:
            stages.children = children
            stages.run("data", stages.data)
            stages.run("train", stages.train)
            try:  # the candidate is served before it is judged; the same server then takes the bench
                verdict = stages.run("eval", stages.eval)["verdict"]
                if verdict == "pass" and p.serve:
                    stages.run("bench", stages.bench)
            finally:
                stages.stop_serving()
            if verdict == "pass" and p.serve and p.cost:
                stages.run("cost", stages.cost)
            elif verdict != "pass":
                what = "failed" if verdict == "fail" else "could not decide"
                say(f"the gate {what}: not benched or priced (see {work / 'eval' / 'report.md'})")
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


def _interrupted(signum: int) -> PipelineInterrupted:
    return PipelineInterrupted(f"stopped by {signal.Signals(signum).name}", hint="run again with --resume")


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ while the pipeline runs: the stages run here log their MLflow
    runs under the parent as the stage processes do."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
        for k in ("compute_only_usd_per_1m_output_tokens", "full_load_usd_per_1m_output_tokens",
                  "usd_per_1m_useful_output_tokens", "tokens_per_s"):
            figures[k] = summary["cost"].get(k)
        figures["average_utilization"] = (summary["cost"].get("fleet") or {}).get("average_utilization")
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

    def __init__(self, p: Pipeline, loaded: Loaded, work: Path, state: PipelineState, parent: _ParentRun,
                 say: Callable[[str], None]):
        self.p, self.loaded, self.work, self.state, self.parent, self.say = p, loaded, work, state, parent, say
        self.children: Children | None = None
        self.server: subprocess.Popen | None = None
        self.url: str | None = None  # where the candidate is served, once it is

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

    def _files(self, name: str, request: dict[str, Any]) -> tuple[Path, Path]:
        folder = self.work / "stages"
        write_bytes_atomic(folder / f"{name}.request.json", orjson.dumps(request, option=orjson.OPT_INDENT_2))
        result = folder / f"{name}.result.json"
        result.unlink(missing_ok=True)
        return folder / f"{name}.request.json", result

    def _stage(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        """Run stage NAME in a process of its own to its end; its result."""
        request_path, result_path = self._files(name, request)
        code = self.children.run([sys.executable, "-m", "gekro_ft.pipeline.stage", name, str(request_path),
                                  str(result_path)])
        result = orjson.loads(result_path.read_bytes()) if result_path.exists() else {}
        if code != 0 or "error" in result:
            said = (result.get("error") or {}).get("message") or f"exited with {code}"
            raise PipelineError(f"the {name} stage failed: {said}",
                                hint="fix it and run again with --resume")
        return result

    def data(self) -> dict[str, Any]:
        """validate the dataset against the recipe's model and split off the eval-loss set"""
        from gekro_ft.data.render import require_template
        from gekro_ft.data.split import split_file
        from gekro_ft.data.validate import validate_file
        from gekro_ft.models import load_tokenizer

        recipe = self.loaded.recipe
        d, out = self.p.data, self.work / "data"
        max_len = d.max_seq_len or recipe.model.max_seq_len
        template = Path(recipe.model.chat_template).read_text() if recipe.model.chat_template else None
        tokenizer = load_tokenizer(recipe.model.name, template)
        require_template(tokenizer, recipe.model.name)
        found = validate_file(d.file, tokenizer=tokenizer, model=recipe.model.name, max_seq_len=max_len).to_dict()
        write_bytes_atomic(out / "validate.json", orjson.dumps(found, option=orjson.OPT_INDENT_2))
        if found["counts"]["errors"]:
            raise PipelineError(f"{d.file}: {found['counts']['errors']} rows with errors "
                                f"({', '.join(found['counts']['by_code'])})",
                                hint=f"see {out / 'validate.json'}, or run `gekro-ft data validate {d.file}`")
        split = split_file(d.file, out, d.eval_frac, d.seed).to_dict()
        write_bytes_atomic(out / "split.json", orjson.dumps(split, option=orjson.OPT_INDENT_2))
        self.parent.child("data", {"file": d.file, "model": recipe.model.name, "max_seq_len": max_len},
                          {k: split[k] for k in ("rows", "train", "eval", "duplicates", "unreadable")}
                          | {"warnings": found["counts"]["warnings"]}, [out / "validate.json", out / "split.json"])
        return {"counts": found["counts"], "split": {k: split[k] for k in ("rows", "train", "eval", "duplicates")}}

    def train(self) -> dict[str, Any]:
        """QLoRA training from the recipe (continues from its newest checkpoint)"""
        from gekro_ft.adapter import MANIFEST, read_manifest
        from gekro_ft.recipe import Recipe

        out, data = self.work / "train", self.work / "data"
        if not (out / "adapter" / MANIFEST).exists():  # else it finished before a kill reached the state file
            doc = self.loaded.recipe.resolved()
            doc["data"].update(train=str(data / "train.jsonl"), eval=str(data / "eval.jsonl"), eval_frac=None,
                               sources=None)  # the pipeline trains on its own data file, split above
            self._stage("train", {"recipe": Recipe.model_validate(doc).resolved(), "name": self.loaded.recipe_name,
                                  "output_dir": str(out), "data_validated": True})
        m = read_manifest(out / "adapter")
        return {"adapter": str(out / "adapter"), "run_id": m.get("mlflow_run_id"),
                "registered_model": m["recipe"]["tracking"].get("registered_model")}

    def eval(self) -> dict[str, Any]:
        """the adapter, as served, against the baseline on the eval suite; promote it if the gate passes"""
        e, out = self.p.eval, self.work / "eval"
        # With a serve stage the gate judges what production runs: the server's answers for the
        # adapter. Without one, the adapter is generated in-process on this machine's best device.
        served = {"served_at": self.serve(), "candidate_model": self.p.serve.adapter_name,
                  "candidate_key_env": self._server_key_env() or None} if self.p.serve else {}
        self._stage("eval", {"suite": str(self.loaded.suite.source), "gate": e.gate, "limit": e.limit,
                             "candidate": self.state.stages["train"]["adapter"], "baseline": e.baseline,
                             "baseline_model": e.baseline_model, "out_dir": str(out),
                             "recordings": e.recordings or str(self.work / "recordings"), "promote": e.promote,
                             **served})
        report = orjson.loads((out / "report.json").read_bytes())  # the verdict is the report's
        provider = report["sides"]["candidate"]["provider"]
        return {"verdict": report["gate"]["verdict"], "report": str(out / "report.json"),
                "promotion": report.get("promotion"), "judged": _judged(provider)}

    def serve(self) -> str:
        """Start serving the trained adapter (once); its OpenAI base URL."""
        if self.url:
            return self.url
        s = self.p.serve
        source = self.state.stages["train"]["adapter"]
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        overrides = {"host": "127.0.0.1", "port": port, "adapters": {s.adapter_name: source},
                     **({"engine": s.engine} if s.engine else {})}
        request, result = self._files("serve", {"profile": s.profile, "overrides": overrides})
        self.say(f"    serving {s.adapter_name}={source} at {url} (log: {self.work / 'serve.log'})")
        with open(self.work / "serve.log", "ab") as log:
            self.server = self.children.start([sys.executable, "-m", "gekro_ft.pipeline.stage", "serve",
                                               str(request), str(result)], stdout=log, stderr=subprocess.STDOUT)
        from gekro_ft.process import wait_healthy

        wait_healthy(url, s.start_timeout_s, self.server)
        self.url = f"{url}/v1"
        return self.url

    def stop_serving(self) -> None:
        if self.server is not None:
            self.children.stop(self.server, grace=60)
            self.server, self.url = None, None

    def _server_key_env(self) -> str:
        profile = self.loaded.profile
        return profile.api_key_env if profile and profile.api_key() else ""  # never another service's key

    def bench(self) -> dict[str, Any]:
        """measure the served adapter under load"""
        from gekro_ft.bench.loadgen import run_bench
        from gekro_ft.bench.settings import BenchSettings
        from gekro_ft.progress import level_progress

        s, b = self.p.serve, self.p.bench
        url = self.serve()
        settings = BenchSettings(url=url.removesuffix("/v1"), model=s.adapter_name, out_dir=self.work / "bench",
                                 prompts=self.loaded.suite.data_path(), concurrency=list(b.concurrency),
                                 requests=b.requests, max_tokens=b.max_tokens, api_key_env=self._server_key_env())
        settings.check()
        with level_progress() as progress:
            run_bench(settings, progress)
        # the router is calibrated against the adapter while it is served
        route = self.route(url) if self.p.route and self.p.cost else None
        return {"bench": str(self.work / "bench" / "bench.json"), "served": self.state.stages["train"]["adapter"],
                **({"route": route} if route else {})}

    def route(self, url: str) -> str:
        """calibrate the router on the eval set: the adapter first, the baseline on doubt"""
        from gekro_ft.progress import count_progress
        from gekro_ft.route.calibrate import run_calibration

        r, suite = self.p.route, self.loaded.suite
        frontier = r.frontier or self.p.eval.baseline
        frontier_model = r.frontier_model or (self.p.eval.baseline_model if not r.frontier else None)
        self.say(f"    route: calibrating the router against {frontier}")
        run_calibration(str(suite.source), local_url=url, local_model=self.p.serve.adapter_name,
                        frontier=frontier, frontier_model=frontier_model,
                        frontier_price=r.frontier_price or suite.cost.baseline_price, out_dir=self.work / "route",
                        metric=r.metric, margin=r.margin, local_gpu=self.p.cost.gpu, local_tokens_per_s=None,
                        bench=self.work / "bench" / "bench.json", local_usd_per_1m=None,
                        requests_per_month=r.requests_per_month, prices=self.p.cost.prices, limit=self.p.eval.limit,
                        folds=r.folds, progress=count_progress)
        return str(self.work / "route" / "route.json")

    def cost(self) -> dict[str, Any]:
        """what an output costs on the serving machine, against the APIs"""
        from gekro_ft.cost.prices import gpu_hourly
        from gekro_ft.cost.report import write_cost_report

        from gekro_ft.cost.operating_point import parse_slo
        from gekro_ft.cost.ownership import Labour
        from gekro_ft.cost.report import CostOptions

        c, out = self.p.cost, self.work / "cost"
        hourly, note = gpu_hourly(self.loaded.prices, c.gpu)
        write_cost_report(self.work / "bench" / "bench.json", out, CostOptions(
            hourly, c.gpu, note, list(c.compare), Path(c.prices) if c.prices else None, c.overhead,
            slo=parse_slo([f"{k}={v}" for k, v in c.slo.items()]), eval_report=self.work / "eval" / "report.json",
            traffic=c.traffic, labour=Labour(c.labour)))
        figures = orjson.loads((out / "cost.json").read_bytes())
        keep = ("compute_only_usd_per_1m_output_tokens", "full_load_usd_per_1m_output_tokens",
                "usd_per_1m_useful_output_tokens", "tokens_per_s")
        self.parent.child("cost", {"gpu": c.gpu, "overhead": c.overhead, "compare": ",".join(c.compare)},
                          {k: figures[k] for k in keep if isinstance(figures.get(k), (int, float))},
                          [out / "cost.json", out / "cost.md", out / "cost.html"])
        return {"cost": str(out / "cost.json")}


def _judged(provider: dict[str, Any]) -> str:
    """Which engine produced the answers the gate judged, in words."""
    if provider.get("kind") == "served":
        return f"{provider.get('engine')} engine, through {provider.get('base_url')}"
    if provider.get("kind") == "local":
        return "in-process generation (transformers + PEFT)"
    return str(provider.get("kind"))


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
                 "baseline_is_stand_in": p.eval.baseline_is_stand_in, "promotion": report.get("promotion"),
                 "judged": state.stages.get("eval", {}).get("judged")},
        "cost": {"gpu": p.cost.gpu if p.cost else None, "tokens_per_s": cost.get("tokens_per_s"),
                 "hourly": cost.get("gpu_hourly"), "overhead": cost.get("overhead"),
                 "compute_only_usd_per_1m_output_tokens": cost.get("compute_only_usd_per_1m_output_tokens"),
                 "full_load_usd_per_1m_output_tokens": cost.get("full_load_usd_per_1m_output_tokens"),
                 "usd_per_1m_useful_output_tokens": cost.get("usd_per_1m_useful_output_tokens"),
                 "apis": cost.get("apis", []), **cost_decision(cost)},
        "route": _route_summary(_read(work / "route" / "route.json")),
        "paths": {name: str(path) for name, path in {
            "adapter": work / "train" / "adapter", "eval report": work / "eval" / "report.html",
            "bench report": work / "bench" / "bench.html", "cost report": work / "cost" / "cost.html",
            "route report": work / "route" / "route.html", "route profile": work / "route" / "route-profile.yaml",
            "state": work / "pipeline.json"}.items() if path.exists()},
    }


def _route_summary(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The blended figures beside local-only and frontier-only (the baseline alone)."""
    if not doc:
        return None
    keep = ("escalation_rate", "quality", "usd_per_1m_output_tokens", "usd_per_1m_useful_output_tokens",
            "score", "threshold")
    oos = doc.get("out_of_sample") or {}
    return {"metric": doc["inputs"]["metric"], "margin": doc["inputs"]["margin"], "saving": doc["saving"],
            "frontier": doc["inputs"]["frontier"], "examples": doc["inputs"]["examples"],
            "out_of_sample": {k: oos[k] for k in ("folds", "intervals", "within_margin") if k in oos},
            **{k: {f: doc[k][f] for f in keep if f in doc[k]} if doc[k] else None
               for k in ("chosen", "local_only", "frontier_only")}}
