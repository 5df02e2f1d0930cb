"""``data convert``: stream rows from one schema into another, whole output or none."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from gekro_ft.atomic import atomic_output, check_output
from gekro_ft.data.detect import resolve_schema
from gekro_ft.data.findings import Finding
from gekro_ft.data.rows import read_rows
from gekro_ft.data.schemas import NAMES, SCHEMAS, Unconvertible
from gekro_ft.errors import SchemaError


@dataclass
class ConvertResult:
    source: str
    target: str
    from_schema: str
    to_schema: str
    rows: int = 0
    written: int = 0
    refused: int = 0  # unreadable rows and rows the target cannot express
    dropped: Counter = field(default_factory=Counter)  # field -> rows that lost it
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "from": self.from_schema,
                "to": self.to_schema, "rows": self.rows, "written": self.written,
                "refused": self.refused, "dropped": dict(self.dropped),
                "findings": [f.to_dict() for f in self.findings]}


def convert_file(source: str | Path, target: str | Path, to: str, from_schema: str | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> ConvertResult:
    """Convert ``source`` into JSONL of schema ``to`` at ``target``.

    Rows that cannot be read, or that ``to`` cannot express, are refused with a finding
    and not written; the rest are. ``target`` appears only when the whole pass succeeded.
    """
    if to not in NAMES:
        raise SchemaError(f"unknown target schema {to!r}; choose one of {', '.join(NAMES)}")
    check_output(target, inputs=(source,))  # before reading: refused at once, nothing written
    schema, _ = resolve_schema(source, from_schema)
    result = ConvertResult(str(source), str(target), schema, to)
    write = SCHEMAS[to].write
    with atomic_output(target, inputs=(source,)) as out:
        for row in read_rows(source, schema, on_bytes):
            result.rows += 1
            if not row.readable:
                result.refused += 1
                result.findings.extend(row.findings)
                continue
            try:
                obj, dropped = write(row.conv)
            except Unconvertible as e:
                result.refused += 1
                row.finding("unconvertible", str(e))
                result.findings.extend(row.findings)
                continue
            for name in dropped:
                result.dropped[name] += 1
                row.finding("dropped-field", f"{name} dropped: {to} cannot express it")
            result.findings.extend(f for f in row.findings if f.code == "dropped-field")
            out.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
            result.written += 1
    return result
