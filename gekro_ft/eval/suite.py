"""Eval suites (``eval/*.yaml``): what to ask, how to generate, how to score, and the gate.

A suite is validated in full before anything is generated, so a broken suite costs
nothing: unknown keys, a missing data file, a bad metric or a gate that does not parse
are all reported at once, each naming its key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gekro_ft.config import ConfigKind
from gekro_ft.errors import GekroError, SuiteError

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
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, description="Per request, retries included in max_retries.")
    max_retries: int = Field(3, ge=0, le=10, description="Retries with backoff on 429, 5xx and connection errors.")


class Cost(_Strict):
    baseline_price: str | None = Field(None, description="Price-table entry for the baseline API "
                                                         "(default: the baseline's model name).")
    candidate_gpu: str | None = Field(None, description="Price-table GPU the candidate is served on.")
    candidate_output_tokens_per_s: float | None = Field(
        None, gt=0, description="Served throughput for the candidate's cost; --bench replaces it with a measured one.")


class Suite(_Strict):
    name: str
    description: str = ""
    data: Path = Field(description="Eval examples in any schema the data stage reads; the last "
                                   "assistant turn of each is the reference.")
    limit: int | None = Field(None, ge=1, description="Use only the first N examples.")
    generation: Generation = Field(default_factory=Generation)
    metrics: list[Any] = Field(min_length=1)
    success: Success = Field(default_factory=Success)
    gate: str
    max_error_rate: float = Field(0.0, ge=0, le=1, description="Failed requests tolerated per side "
                                                               "before the verdict is 'could not decide'.")
    endpoint: Endpoint = Field(default_factory=Endpoint)
    cost: Cost = Field(default_factory=Cost)
    source: Path | None = Field(None, exclude=True)

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path.cwd()

    def data_path(self) -> Path:
        return self.data if self.data.is_absolute() else self.base_dir / self.data

    def built_metrics(self) -> list[Any]:
        from gekro_ft.eval.metrics import build_metrics

        return build_metrics(self.metrics, self.base_dir)

    def parsed_gate(self) -> Any:
        from gekro_ft.eval.gate import parse_gate

        return parse_gate(self.gate)


def find_suite(name_or_path: str | Path) -> Path:
    return SUITES.find(name_or_path)


def load_suite(name_or_path: str | Path) -> Suite:
    """Load and check a suite: schema, data file, metrics and gate, all problems at once."""
    path = find_suite(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SuiteError(str(path), [f"cannot read YAML: {e}"]) from None
    if not isinstance(raw, dict):
        raise SuiteError(str(path), ["the top level must be a mapping"])
    try:
        suite = Suite.model_validate({**raw, "source": path})
    except ValidationError as e:
        raise SuiteError(str(path), [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                                     for err in e.errors()]) from None
    problems = check_suite(suite)
    if problems:
        raise SuiteError(str(path), problems)
    return suite


def with_gate(suite: Suite, gate: str) -> Suite:
    """``suite`` (already checked) judged by another gate expression (``eval --gate``, a
    pipeline's ``eval.gate``); only the new gate needs checking."""
    changed = suite.model_copy(update={"gate": gate})
    problems = _gate_problems(changed, changed.built_metrics())
    if problems:
        raise SuiteError("--gate", problems)
    return changed


def check_suite(suite: Suite) -> list[str]:
    """Every problem with a parsed suite: its data file, metrics, gate and success metric."""
    problems = []
    if not suite.data_path().is_file():
        problems.append(f"data: {suite.data_path()} does not exist")
    try:
        metrics = suite.built_metrics()
    except GekroError as e:
        problems.append(str(e))
        metrics = None
    problems += _gate_problems(suite, metrics)
    if metrics is not None:
        from gekro_ft.eval.metrics import example_score_names

        if suite.success.metric not in example_score_names(metrics):
            problems.append(f"success.metric: {suite.success.metric!r} is not a per-example score of these "
                            f"metrics ({', '.join(example_score_names(metrics))})")
    return problems


def _gate_problems(suite: Suite, metrics: list[Any] | None) -> list[str]:
    """The gate's syntax, and (when the metrics are known) the names it uses."""
    try:
        gate = suite.parsed_gate()
    except GekroError as e:
        return [f"gate: {e}"]
    if metrics is None:
        return []
    from gekro_ft.eval.metrics import aggregate_names

    names = [*aggregate_names(metrics), *SIDE_AGGREGATES]
    try:
        gate.check(names, names)
    except GekroError as e:
        return [f"gate: {e}"]
    return []
