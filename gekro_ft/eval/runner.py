"""One eval, top to bottom: load the suite and its examples, generate on both sides,
score them the same way, decide the gate, price each side, write the report, log it
to MLflow, and promote on a pass when asked.

The verdict is one of ``pass`` (exit 0), ``fail`` (exit 1) or ``undecided`` (exit 2).
It fails closed: an empty eval set, failed requests beyond the suite's tolerance, a
gate that cannot be evaluated, anything raised on the way — none of them yields 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gekro_ft import __version__
from gekro_ft.data.conversation import Conversation
from gekro_ft.errors import EvalError, GateError, ProviderError
from gekro_ft.eval.providers import Answer, make_provider, served_provider
from gekro_ft.eval.suite import Suite

SCHEMA_VERSION = 1  # keys are added (intervals, delta, gate notes), never renamed or removed
EXIT = {"pass": 0, "fail": 1, "undecided": 2}

# (label, examples) -> a context whose value advances a display by n answers, or is None.
# The caller brings it (the CLI draws a bar on its console); the library draws nothing.
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None] | None]]


@dataclass
class Example:
    index: int
    line: int | None
    conv: Conversation
    reference: str

    @property
    def id(self) -> str:
        return str(self.conv.extra.get("id", self.index))


def load_examples(suite: Suite) -> list[Example]:
    """The suite's examples; a row that cannot be an eval example is an error naming its line."""
    from gekro_ft.data.detect import resolve_schema
    from gekro_ft.data.findings import has_errors
    from gekro_ft.data.rows import read_rows

    path = suite.data_path()
    schema, _ = resolve_schema(path, None)
    examples = []
    for row in read_rows(path, schema):
        where = f"{path}:{row.line}" if row.line is not None else f"{path} row {row.index}"
        if row.conv is None or has_errors(row.findings):
            first = next(f for f in row.findings if f.severity.value == "error")
            raise EvalError(f"{where}: {first.code}: {first.message}",
                             hint=f"check it with: gekro-ft data validate {path}")
        last = row.conv.turns[-1] if row.conv.turns else None
        if last is None or last.role != "assistant" or not last.text.strip():
            raise EvalError(f"{where}: the last turn must be an assistant answer (the reference)")
        examples.append(Example(row.index, row.line, row.conv, last.text))
        if suite.limit and len(examples) >= suite.limit:
            break
    return examples


@dataclass
class Side:
    role: str
    provider: Any
    answers: list[Answer] = field(default_factory=list)
    per_example: list[dict | None] = field(default_factory=list)
    aggregates: dict[str, float] = field(default_factory=dict)
    success: list[bool | None] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(a.error is not None for a in self.answers)

    def summary(self, n: int) -> dict[str, Any]:
        ok = [a for a in self.answers if a.error is None]
        lat = sorted(a.latency_s for a in ok if a.latency_s is not None)
        scored = [s for s in self.success if s is not None]
        return {
            "provider": self.provider.describe(),
            "examples": n, "answered": len(ok), "errors": self.errors,
            "error_rate": self.errors / n if n else 1.0,
            "error_kinds": dict(Counter(a.error_kind or "error" for a in self.answers if a.error)),
            "from_recording": sum(a.cached for a in self.answers),
            "requests_sent": getattr(self.provider, "requests_sent", 0),
            "aggregates": self.aggregates,
            "success_rate": sum(scored) / len(scored) if scored else None,
            "correct": sum(scored),
            "input_tokens": sum(a.input_tokens or 0 for a in ok),
            "output_tokens": sum(a.output_tokens or 0 for a in ok),
            "latency_s": {"mean": sum(lat) / len(lat), "p50": _pct(lat, 50), "p95": _pct(lat, 95)} if lat else None,
        }


def _pct(values: list[float], p: float) -> float:
    import numpy as np

    return float(np.percentile(values, p))


@dataclass
class EvalOutcome:
    report: dict[str, Any]
    verdict: str
    paths: dict[str, Path]

    @property
    def exit_code(self) -> int:
        return EXIT[self.verdict]


def _score(side: Side, suite: Suite, examples: list[Example]) -> None:
    from gekro_ft.eval.metrics import score, success_rate

    ok = [i for i, a in enumerate(side.answers) if a.error is None]
    side.per_example = [None] * len(examples)
    side.success = [None] * len(examples)
    if not ok:
        return
    per, agg = score(suite.metrics, [side.answers[i].text for i in ok], [examples[i].reference for i in ok])
    key, threshold = suite.success.metric, suite.success.threshold
    for i, scores in zip(ok, per):
        side.per_example[i] = scores
        side.success[i] = success_rate([scores], key, threshold) == 1.0
    side.aggregates = {**agg, "error_rate": side.errors / len(examples),
                       "success_rate": success_rate(per, key, threshold)}


def _intervals(suite: Suite, cand: Side, base: Side | None) -> dict[str, Any] | None:
    from gekro_ft.eval.uncertainty import paired_intervals

    s = suite.intervals
    return paired_intervals(suite.metrics, (suite.success.metric, suite.success.threshold), suite.gate,
                            cand.per_example, base.per_example if base else None,
                            resamples=s.resamples, seed=s.seed, confidence=s.confidence)


def _decide(suite: Suite, cand: Side, base: Side | None, n: int,
            intervals: dict[str, Any] | None = None) -> dict[str, Any]:
    from gekro_ft.eval.uncertainty import bounds, resolution_notes

    if n == 0:
        return {"verdict": "undecided", "reason": "the eval set is empty", "comparisons": []}
    for side in (cand, base):
        if side is not None and side.errors / n > suite.max_error_rate:
            return {"verdict": "undecided", "comparisons": [],
                    "reason": f"{side.role}: {side.errors} of {n} requests failed "
                              f"(max_error_rate {suite.max_error_rate:g})"}
    try:
        v = suite.gate.evaluate(cand.aggregates, base.aggregates if base else None, bounds(intervals))
    except GateError as e:
        return {"verdict": "undecided", "reason": str(e), "comparisons": []}
    comparisons = v.to_dict()["comparisons"]
    for c, iv in zip(comparisons, (intervals or {}).get("comparisons") or []):
        c["difference_interval"] = iv  # of left - right, over the same draws
    return {"verdict": "pass" if v.passed else "fail", "reason": "", "comparisons": comparisons,
            "notes": resolution_notes(comparisons, intervals)}


def registry_target(spec: str, provider: Any) -> tuple[str, str]:
    """The (registered model, version) a candidate is, for promotion; an error if it is none."""
    from gekro_ft import registry

    if spec.startswith("models:/"):
        v = registry.resolve_version(spec)
        return v.name, str(v.version)
    run_id = getattr(provider, "manifest", {}).get("mlflow_run_id")
    if run_id:
        versions = registry.client().search_model_versions(f"run_id = '{run_id}'")
        if versions:
            v = max(versions, key=lambda v: int(v.version))
            return v.name, str(v.version)
    raise ProviderError(f"--promote needs a registered candidate; {spec} is not a registry version",
                        hint="train with tracking.registered_model set, or pass models:/NAME/VERSION")


def default_recordings(suite: Suite) -> Path:
    """Beside the suite (commit them: CI replays them for free), or in gekro-ft's cache for a
    suite read from an installed package."""
    from gekro_ft.config import inside_package
    from gekro_ft.models import cache_root

    if suite.source is not None and inside_package(suite.source):
        return cache_root() / "recordings" / suite.name
    return suite.base_dir / "recordings" / suite.name


def run_eval(suite: Suite, candidate: str, baseline: str | None = None, *, out_dir: Path,
             candidate_model: str | None = None, baseline_model: str | None = None,
             recordings_dir: Path | None = None, record_only: bool = False, promote: bool = False,
             bench: Path | None = None, prices: Path | None = None,
             progress: Progress | None = None, candidate_key_env: str | None = None,
             baseline_key_env: str | None = None, served_at: str | None = None) -> EvalOutcome:
    """Score ``candidate`` (and ``baseline``) on ``suite``. ``*_key_env`` names the variable holding
    that side's API key, for that side alone (gekro_ft.keys). With ``served_at`` (a server's URL)
    the candidate adapter is judged as that server answers for it under ``candidate_model``."""
    recordings_dir = recordings_dir or default_recordings(suite)
    cand = Side("candidate", served_provider(served_at, candidate_model, candidate, suite.endpoint, candidate_key_env)
                if served_at else make_provider(candidate, candidate_model, suite.endpoint, recordings_dir,
                                                record_only, candidate_key_env))
    base = (Side("baseline", make_provider(baseline, baseline_model, suite.endpoint, recordings_dir,
                                           record_only, baseline_key_env))
            if baseline else None)
    target = registry_target(candidate, cand.provider) if promote else None  # fail before paying for anything
    examples = load_examples(suite)
    from gekro_ft.eval.metrics import check_references

    bad = check_references(suite.metrics, [e.reference for e in examples])
    if bad:  # before generating: a broken eval set must not cost an API bill
        i, problem = bad[0]
        raise EvalError(f"{suite.data_path()}:{examples[i].line}: the reference cannot be scored: {problem}"
                         + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    started = time.time()
    progress = progress or (lambda label, total: contextlib.nullcontext())
    for side in (cand, base):
        if side is None:
            continue
        with progress(f"{side.role}: {side.provider.describe()['spec']}", len(examples)) as step:
            side.answers = side.provider.generate([e.conv for e in examples], suite.generation, step)
        _score(side, suite, examples)
    intervals = _intervals(suite, cand, base)
    decision = _decide(suite, cand, base, len(examples), intervals)
    report = _report(suite, examples, cand, base, decision, started, bench, prices, intervals)
    from gekro_ft.eval.report import write_report

    paths = write_report(report, out_dir)
    from gekro_ft.eval.tracking import log_eval

    report["mlflow"] = log_eval(report, paths, cand.provider.describe().get("training_run_id"))
    if target:
        report["promotion"] = _promote(target, decision["verdict"], report, paths["json"])
    elif promote:
        report["promotion"] = None
    paths = write_report(report, out_dir)  # again, now with the MLflow run and promotion in it
    return EvalOutcome(report, decision["verdict"], paths)


def _promote(target: tuple[str, str], verdict: str, report: dict[str, Any],
             report_path: Path) -> dict[str, Any]:
    from gekro_ft import registry

    name, version = target
    run_id = (report.get("mlflow") or {}).get("run_id", "")
    registry.record_eval(name, version, verdict, run_id, str(report_path))
    if verdict != "pass":
        return {"name": name, "version": version, "alias": "champion", "changed": False,
                "reason": f"gate verdict is {verdict}"}
    return registry.promote(name, version, "champion", reason=f"eval {report['suite']['name']} passed (run {run_id})")


def _report(suite: Suite, examples: list[Example], cand: Side, base: Side | None, decision: dict,
            started: float, bench: Path | None, prices: Path | None,
            intervals: dict[str, Any] | None = None) -> dict[str, Any]:
    from gekro_ft.eval.pricing import price_sides

    n = len(examples)
    sides = {"candidate": cand.summary(n)}
    if base:
        sides["baseline"] = base.summary(n)
    for role in sides:
        sides[role]["intervals"] = (intervals or {}).get(role)
    costs = price_sides(suite, sides, bench, prices)
    for role, c in costs.items():
        sides[role]["cost"] = c
    rows = []
    for i, ex in enumerate(examples):
        row = {"index": ex.index, "id": ex.id, "line": ex.line,
               "prompt": ex.conv.prompt_messages()[-1]["content"], "reference": ex.reference}
        for side in (cand, base):
            if side is None:
                continue
            a = side.answers[i]
            row[side.role] = {"text": a.text, "error": a.error, "latency_s": a.latency_s,
                              "input_tokens": a.input_tokens, "output_tokens": a.output_tokens,
                              "correct": side.success[i], "scores": side.per_example[i]}
        if base:
            row["disagree"] = cand.success[i] != base.success[i]
        rows.append(row)
    data = suite.data_path()
    return {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 3),
        "gekro_ft_version": __version__,
        "suite": {"name": suite.name, "path": str(suite.source), "data": str(data),
                  "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(), "examples": n,
                  "generation": suite.generation.model_dump(), "success": suite.success.model_dump(),
                  "metrics": [m.model_dump() for m in suite.metrics], "gate": suite.gate.text,
                  "max_error_rate": suite.max_error_rate},
        "sides": sides,
        # the paired bootstrap: its settings, the examples it drew from, and candidate - baseline
        "intervals": None if intervals is None else {
            k: intervals[k] for k in ("n", "examples", "resamples", "seed", "confidence")},
        "delta": (intervals or {}).get("delta"),
        "gate": {"expression": suite.gate.text, **decision},
        "examples": rows,
    }
