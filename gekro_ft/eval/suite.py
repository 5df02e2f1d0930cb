"""Eval suites (``eval/*.yaml``): what to ask, how to generate, how to score, and the gate.

A suite is validated in full before anything is generated, so a broken suite costs
nothing: unknown keys, a missing data file, a bad metric or a gate that does not parse
are all reported at once, each naming its key; then the metric names the gate and the
success metric use. Metrics and the gate are parsed once, at load, into typed objects.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from gekro_ft.config import ConfigKind, describe
from gekro_ft.errors import GateError, SuiteError
from gekro_ft.eval.gate import Gate, parse_gate
from gekro_ft.eval.metrics import Metric, MetricList, aggregate_names, example_score_names, metric_problem

SUITES = ConfigKind("eval suite", "eval", "GEKRO_FT_SUITES", SuiteError)


# Aggregates every side has besides its metrics' (the runner adds them); lower error_rate is better.
SIDE_AGGREGATES = ("success_rate", "error_rate")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Generation(_Strict):
    max_tokens: int = Field(128, ge=1, description="Output tokens per answer.")
    temperature: float = Field(0.0, ge=0, le=2, description="0 = greedy, the same answer every run.")
    stop: list[str] = Field(default_factory=list)
    seed: int | None = 0


class Success(_Strict):
    metric: str = Field("exact_match", description="Per-example score that decides 'correct'.")
    threshold: float = Field(1.0, description="An example is correct when its score >= this.")


class Endpoint(_Strict):
    api_key_env: str | None = Field(None, description=(
        "Environment variable holding the API key of whichever side is an endpoint; a provider's "
        "variable (OPENAI_API_KEY) goes only to that provider's host (gekro_ft.keys)."))
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Per request, retries included in max_retries.")
    max_retries: int = Field(3, ge=0, le=10, description="Retries with backoff on 429, 5xx and connection errors.")


class Cost(_Strict):
    baseline_price: str | None = Field(None, description="Price-table entry for the baseline API "
                                                         "(default: the baseline's model name).")
    candidate_gpu: str | None = Field(None, description="Price-table GPU the candidate is served on.")
    candidate_output_tokens_per_s: float | None = Field(
        None, gt=0, description="Served throughput for the candidate's cost; --bench replaces it with a measured one.")


class Intervals(_Strict):
    resamples: int = Field(1000, ge=100, le=100_000, description="Bootstrap draws of the examples.")
    seed: int = Field(0, description="Seeds the draws: the same inputs give the same intervals.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="The intervals' coverage.")


class Suite(_Strict):
    name: str
    description: str = ""
    data: Path = Field(description="Eval examples in any schema the data stage reads; the last "
                                   "assistant turn of each is the reference.")
    limit: int | None = Field(None, ge=1, description="Use only the first N examples.")
    generation: Generation = Field(default_factory=Generation)
    metrics: MetricList = Field(description="Names, or mappings with name: and options (eval/metrics.py).")
    success: Success = Field(default_factory=Success)
    gate: Gate = Field(description="A condition over both sides' aggregates (eval/gate.py); "
                                   "serialized back to its expression.")
    max_error_rate: float = Field(0.0, ge=0, le=1, description="Failed requests tolerated per side "
                                                               "before the verdict is 'could not decide'.")
    endpoint: Endpoint = Field(default_factory=Endpoint)
    cost: Cost = Field(default_factory=Cost)
    intervals: Intervals = Field(default_factory=Intervals, description="The paired bootstrap behind every "
                                 "interval in the report and the gate's .lo/.hi bounds (eval/uncertainty.py).")
    source: Path | None = Field(None, exclude=True)

    @field_validator("data")
    @classmethod
    def _data_exists(cls, data: Path, info: ValidationInfo) -> Path:
        """Checked with the other fields where the suite's directory is known (``load_suite``)."""
        base_dir = (info.context or {}).get("base_dir")
        path = None if base_dir is None else _resolve(base_dir, data)
        if path is not None and not path.is_file():
            raise PydanticCustomError("data_missing", "{path} does not exist", {"path": str(path)})
        return data

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def data_path(self) -> Path:
        return _resolve(self.base_dir, self.data)


def _resolve(base_dir: Path, data: Path) -> Path:
    return data if data.is_absolute() else Path(base_dir) / data


def find_suite(name_or_path: str | Path) -> Path:
    return SUITES.find(name_or_path)


def load_suite(name_or_path: str | Path) -> Suite:
    """Load and check a suite: every field (data file, metrics, gate...), then the names used."""
    path = find_suite(name_or_path)
    file = SUITES.read(path)
    try:  # the context resolves metric files (a JSON Schema) against the suite's directory
        suite = Suite.model_validate({**file.doc, "source": path}, context={"base_dir": path.parent})
    except ValidationError as e:
        errors = e.errors()
        raise SuiteError(str(path), [_describe(err) for err in errors],
                         lines=[file.lines.get(tuple(map(str, err["loc"]))) for err in errors]) from None
    problems = check_suite(suite)
    if problems:
        raise SuiteError(str(path), problems)
    return suite


def _describe(err: ErrorDetails) -> str:
    if err["loc"][0] == "metrics":
        return metric_problem(err, err["loc"][1:])
    return describe(err, Suite)


def with_gate(suite: Suite, gate: str) -> Suite:
    """``suite`` (already checked) judged by another gate expression (``eval --gate``, a
    pipeline's ``eval.gate``); only the new gate needs checking."""
    try:
        parsed = parse_gate(gate)
    except GateError as e:
        raise GateError(f"--gate: {e}") from None
    problems = _gate_problems(parsed, suite.metrics)
    if problems:
        raise GateError("--gate: " + "; ".join(p.removeprefix("gate: ") for p in problems))
    return suite.model_copy(update={"gate": parsed})


def check_suite(suite: Suite) -> list[str]:
    """What a valid suite can still get wrong: names the gate and the success metric use
    that its metrics do not give."""
    problems = _gate_problems(suite.gate, suite.metrics)
    if suite.success.metric not in example_score_names(suite.metrics):
        problems.append(f"success.metric: {suite.success.metric!r} is not a per-example score of these "
                        f"metrics ({', '.join(example_score_names(suite.metrics))})")
    return problems


def _gate_problems(gate: Gate, metrics: list[Metric]) -> list[str]:
    """The metric names the gate uses that these metrics (and every side) do not give."""
    names = [*aggregate_names(metrics), *SIDE_AGGREGATES]
    try:
        gate.check(names, names)
    except GateError as e:
        return [f"gate: {e}"]
    return []
