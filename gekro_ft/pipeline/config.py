"""The pipeline file: which data, recipe, eval suite and baseline, and how to serve and price.

Relative paths in a pipeline file are read from the file's own directory, so a pipeline
runs the same from any working directory. Unknown keys and bad values are errors that
name the key, all reported at once, like recipes and suites.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from gekro_ft.config import ConfigKind
from gekro_ft.errors import PipelineConfigError

PIPELINES = ConfigKind("pipeline file", "pipelines", "GEKRO_FT_PIPELINES", PipelineConfigError)
# Names (a recipe, a suite, a profile) stay names; paths are relative to the pipeline file.
PATH_KEYS = ("data.file", "train.recipe", "eval.suite", "eval.recordings", "serve.profile", "cost.prices",
             "cost.traffic")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataStage(_Section):
    file: str = Field(description="The team's examples, in any schema the data stage reads.")
    eval_frac: float = Field(0.1, gt=0, lt=1, description="Share held out for the training run's eval loss.")
    seed: int = 0
    max_seq_len: int | None = Field(None, ge=1, description="Checked against truncation (default: the recipe's).")


class TrainStage(_Section):
    recipe: str = Field(description="A recipe name or file.")
    set: list[str] = Field(default_factory=list, description="Recipe overrides, KEY=VALUE as in `train --set`.")


class EvalStage(_Section):
    suite: str = Field(description="An eval suite name or file; its gate decides promotion.")
    baseline: str | None = Field(None, description="openai:MODEL, a URL, base:MODEL, recording:FILE; none: no baseline.")
    baseline_model: str | None = Field(None, description="The model name when baseline is a URL.")
    baseline_is_stand_in: bool = Field(False, description="Label the baseline a stand-in for a frontier API.")
    gate: str | None = Field(None, description="A gate expression that replaces the suite's.")
    limit: int | None = Field(None, ge=1, description="Use only the first N examples of the suite.")
    recordings: str | None = Field(None, description="Where endpoint answers are recorded (default WORK/recordings).")
    promote: bool = Field(True, description="Move `champion` to the adapter when the gate passes.")


class ServeStage(_Section):
    profile: str | None = Field(None, description="A serving profile (serve/*.yaml); none: the CPU defaults.")
    engine: str | None = Field(None, description="vllm or cpu (default: the profile's).")
    adapter_name: str = Field("adapter", description="The name requests use for the champion adapter.")
    start_timeout_s: float = Field(900, gt=0, description="How long the server may take to become healthy.")

    @field_validator("adapter_name")
    @classmethod
    def _a_name_servers_take(cls, name: str) -> str:
        from gekro_ft.serve.adapters import name_problem

        problem = name_problem(name)  # checked now, not by the server after a night of training
        if problem:
            raise ValueError(problem)
        return name


class BenchStage(_Section):
    concurrency: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1, 4, 8], min_length=1)
    requests: int = Field(16, ge=1, description="Requests per concurrency level.")
    max_tokens: int = Field(64, ge=1)


class CostStage(_Section):
    gpu: str = Field(description="The price-table entry for the machine that serves (serve/prices.yaml).")
    compare: list[str] = Field(default_factory=list, description="API price-table entries to compare with.")
    overhead: float = Field(0.0, ge=0, description="Ops, safety and eval overhead as a fraction of the hourly price.")
    prices: str | None = Field(None, description="Your own price table, merged over the shipped one by name.")
    slo: dict[str, float] = Field(default_factory=dict, description="Latency targets the priced bench level must "
                                  "meet, e.g. {ttft_p95_ms: 2000}; none: the fastest level without errors.")
    traffic: str | None = Field(None, description="A week of traffic (CSV day,hour,requests) to size the fleet, "
                                "its utilization and the APIs' bills, or a shipped week: business-hours.")
    labour: float = Field(0.0, ge=0, description="Ops labour, a fraction of an engineer-year (at $150k loaded).")


class RouteStage(_Section):
    frontier: str | None = Field(None, description="What the router escalates to while calibrating, as eval's "
                                 "--baseline takes it: openai:MODEL, a URL, recording:FILE, or "
                                 "reference:SUITE@RATE, a simulated frontier (default: eval.baseline).")
    frontier_model: str | None = Field(None, description="The model at a frontier URL (default: eval.baseline_model "
                                       "when the frontier is the baseline).")
    frontier_price: str | None = Field(None, description="Price-table entry the frontier is billed as "
                                                         "(default: the suite's cost.baseline_price).")
    metric: str | None = Field(None, description="The quality kept within the margin (default: the gate's first).")
    margin: float = Field(0.02, ge=0, description="How far below the baseline alone the router may fall.")
    requests_per_month: float = Field(1e6, gt=0, description="The volume the monthly saving is stated at.")
    folds: int = Field(5, ge=2, description="Cross-validation folds for the out-of-sample figures.")


class Pipeline(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Names the MLflow parent run.")
    data: DataStage
    train: TrainStage
    eval: EvalStage
    serve: ServeStage | None = Field(None, description="Serve the champion, bench it and price it; none: stop after eval.")
    bench: BenchStage = Field(default_factory=BenchStage)
    cost: CostStage | None = None
    route: RouteStage | None = Field(None, description="Calibrate a router (the adapter first, the baseline on "
                                                       "doubt) while the champion is served; needs serve and cost.")
    experiment: str = Field("gekro-ft-pipeline", description="The MLflow experiment of the parent run and its stages.")

    _source: str = PrivateAttr("pipeline")

    @model_validator(mode="after")
    def _route_needs_what_it_compares(self):
        if self.route is not None:
            frontier = self.route.frontier or self.eval.baseline
            missing = [k for k, v in (("serve", self.serve), ("cost", self.cost), ("route.frontier", frontier))
                       if not v]
            if missing:
                raise ValueError(f"route: needs {', '.join(missing)} (the served adapter, its price and what it "
                                 "escalates to; route.frontier defaults to eval.baseline)")
        return self

    @property
    def source(self) -> str:
        """Where the pipeline came from, for messages."""
        return self._source

    def fingerprint(self) -> str:
        """What --resume compares: a changed pipeline is a different run, not a continuation."""
        return hashlib.sha256(orjson.dumps(self.model_dump(), option=orjson.OPT_SORT_KEYS)).hexdigest()


def find_pipeline(name_or_path: str | Path) -> Path:
    return PIPELINES.find(name_or_path)


def load_pipeline(name_or_path: str | Path, overrides: list[str] = ()) -> Pipeline:
    """Load, override (``--set stage.key=value``) and validate a pipeline file."""
    pipeline, path = PIPELINES.load(name_or_path, Pipeline, overrides, PATH_KEYS)
    pipeline._source = str(path)
    base = path.resolve().parent
    if pipeline.eval.baseline and pipeline.eval.baseline.startswith("recording:"):
        recording = Path(pipeline.eval.baseline.removeprefix("recording:")).expanduser()
        pipeline.eval.baseline = f"recording:{recording if recording.is_absolute() else (base / recording).resolve()}"
    if not Path(pipeline.data.file).is_file():
        raise PipelineConfigError(str(path), [f"data.file: {pipeline.data.file} does not exist"])
    return pipeline
