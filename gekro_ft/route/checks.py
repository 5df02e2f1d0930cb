"""Checks on the local answer: the eval suite's own metrics where one exists (json_valid,
json_schema), so an answer the router passes is one the eval would pass; a regex and
required fields besides, which the suite's metrics do not cover."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gekro_ft.eval.metrics import Metric, build_metrics, flatten, parse_json
from gekro_ft.route.profile import Checks


@dataclass(frozen=True)
class CheckSet:
    metrics: list[Metric]  # each scores 1.0 for a pass (reference unused)
    regex: re.Pattern | None
    required: list[tuple[str, ...]]

    def failures(self, answer: str) -> list[str]:
        """The names of the checks ``answer`` fails, in the profile's order ([] = passes)."""
        failed = []
        for m in self.metrics:
            row = m.score_one(answer, "")
            if not all(float(row[k]) >= 1.0 for k in m.example_keys):
                failed.append(m.example_keys[0])
        if self.regex is not None and not self.regex.fullmatch(answer.strip()):
            failed.append("regex")
        if self.required:
            fields = _fields(answer)
            if any(fields.get(path) in (None, "", [], {}) for path in self.required):
                failed.append("required_fields")
        return failed


def _fields(answer: str) -> dict[tuple[str, ...], Any]:
    value = parse_json(answer)
    return flatten(value) if isinstance(value, dict) else {}


def build_checks(checks: Checks | None, base_dir: Path) -> CheckSet:
    if checks is None:
        return CheckSet([], None, [])
    specs: list[Any] = ["json_valid"] if checks.json_valid else []
    if checks.schema_ is not None:
        specs.append({"name": "json_schema", "schema": checks.schema_})
    metrics = build_metrics(specs, base_dir, "checks") if specs else []
    return CheckSet(metrics, re.compile(checks.regex, re.S) if checks.regex else None,
                    [tuple(f.split(".")) for f in checks.required_fields])
