"""``data validate``: every check on every row, in one streaming pass."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gekro_ft.data import validate_chunks
from gekro_ft.data.checks import check_conversation
from gekro_ft.data.conversation import normalized_text
from gekro_ft.data.detect import Detection, detect_schema
from gekro_ft.data.findings import Finding, Severity, has_errors
from gekro_ft.data.render import length_problems, render
from gekro_ft.data.rows import read_rows
from gekro_ft.data.schemas import NAMES
from gekro_ft.data.source import is_jsonl
from gekro_ft.errors import SchemaError

MIN_EXAMPLES = 10  # OpenAI refuses fine-tuning files with fewer


@dataclass
class ValidationReport:
    path: str
    schema: str | None
    detection: Detection | None
    rows: int = 0
    usable_rows: int = 0  # rows without any error
    findings: list[Finding] = field(default_factory=list)
    model: str | None = None
    max_seq_len: int | None = None

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARNING)

    def by_code(self) -> dict[str, int]:
        return dict(Counter(f.code for f in self.findings).most_common())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "file": self.path,
            "schema": self.schema,
            "detection": self.detection.to_dict() if self.detection else None,
            "model": self.model,
            "max_seq_len": self.max_seq_len,
            "counts": {"rows": self.rows, "usable_rows": self.usable_rows,
                       "errors": self.errors, "warnings": self.warnings, "by_code": self.by_code()},
            "findings": [f.to_dict() for f in self.findings],
        }


def validate_file(path: str | Path, schema: str | None = None, *, tokenizer: Any = None,
                  model: str | None = None, max_seq_len: int | None = None,
                  on_bytes: Callable[[int], None] | None = None, fast: bool = True) -> ValidationReport:
    """Check every row of ``path``. With a ``tokenizer``, also render each row through its
    chat template and check the loss mask and the length against ``max_seq_len``. A file
    without a single row is an error (``no-rows``), not a clean result.

    A JSONL file checked without a model takes the fast path (:mod:`validate_chunks`: typed
    decoding, clean rows checked a block of lines at a time, every free core); ``fast=False``
    reads it row by row through the schema readers, the reference the fast path is tested
    against. Both find the same, in the same words."""
    if schema is not None and schema not in NAMES:
        raise SchemaError(f"unknown schema {schema!r}; choose one of {', '.join(NAMES)}")
    detection = None if schema else detect_schema(path)
    report = ValidationReport(str(path), schema or detection.schema, detection,
                              model=model, max_seq_len=max_seq_len)
    if fast and tokenizer is None and is_jsonl(path):
        report.rows, report.usable_rows, report.findings = validate_chunks.check_file(
            path, report.schema, on_bytes)
        return _whole_file_findings(report)
    # conversation hash -> line (JSONL) or index of its first appearance; ints, not strings,
    # because this is the one structure that grows with the file
    first_seen: dict[int, int] = {}
    for row in read_rows(path, report.schema, on_bytes):
        report.rows += 1
        if row.readable:
            for code, message in check_conversation(row.conv):
                row.finding(code, message)
            here = row.line if row.line is not None else row.index
            first = first_seen.setdefault(hash(normalized_text(row.conv)), here)
            if first != here:
                unit = "line" if row.line is not None else "row"
                row.finding("duplicate-row", f"same conversation as {unit} {first}")
            if tokenizer is not None and not has_errors(row.findings):
                rendered = render(tokenizer, row.conv)
                for code, message in rendered.problems + length_problems(rendered, max_seq_len):
                    row.finding(code, message)
        if not has_errors(row.findings):
            report.usable_rows += 1
        report.findings.extend(row.findings)
    return _whole_file_findings(report)


def _whole_file_findings(report: ValidationReport) -> ValidationReport:
    if report.rows == 0:  # an error, not "too few": nothing at all is not a small dataset
        report.findings.append(Finding("no-rows", "the file holds no rows: it is empty, only whitespace, "
                                                  "or an empty JSON array", None))
    elif report.usable_rows < MIN_EXAMPLES:
        report.findings.append(Finding(
            "too-few-examples", f"only {report.usable_rows} usable rows; OpenAI requires at least "
                                f"{MIN_EXAMPLES}, and a LoRA learns little from so few", None))
    return report
