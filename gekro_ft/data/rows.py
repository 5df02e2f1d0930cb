"""Rows of a file as canonical conversations, each with what reading it found."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gekro_ft.data.conversation import Conversation
from gekro_ft.data.findings import Finding, has_errors
from gekro_ft.data.schemas import SCHEMAS, match_schema
from gekro_ft.data.source import RawRow, iter_rows, raw_to_row


@dataclass(slots=True)
class Row:
    index: int
    line: int | None
    conv: Conversation | None  # None when the row could not be read at all
    findings: list[Finding]
    value: Any = None  # the parsed row as it was in the file

    @property
    def readable(self) -> bool:
        """Read without errors: safe to check further, convert, or train on."""
        return self.conv is not None and not has_errors(self.findings)

    def finding(self, code: str, message: str) -> None:
        self.findings.append(Finding(code, message, self.index, self.line))


def read_rows(path: str | Path, schema: str | None,
              on_bytes: Callable[[int], None] | None = None) -> Iterator[Row]:
    """Read every row of ``path`` with ``schema`` (None: each row by its own shape)."""
    for raw in iter_rows(path, on_bytes):
        yield read_row(raw, schema)


def read_row(raw: RawRow, schema: str | None) -> Row:
    """One parsed row read with ``schema`` (None: by its own shape)."""
    row = Row(raw.index, raw.line, None, [])
    if raw.error is not None:
        row.finding(raw.code, raw.error)
    elif not isinstance(raw.value, dict):
        row.finding("not-an-object", f"row is {_json_type(raw.value)}, not an object")
    else:
        row.value = raw.value
        _read_object(row, raw.value, schema)
    return row


def read_unparsed(raw: RawRow, schema: str | None) -> Row:
    """:func:`read_row` of a row whose value is still its JSON line (``parse=False`` readers)."""
    return read_row(raw if raw.error is not None else raw_to_row(raw.value, raw.index, raw.line), schema)


def _read_object(row: Row, value: dict[str, Any], schema: str | None) -> None:
    looks_like = match_schema(value)
    if schema is None or not any(k in value for k in SCHEMAS[schema].KEYS):
        if looks_like is None:
            row.finding("unknown-schema", "row has none of 'messages', 'conversations', "
                                          f"'instruction'+'output' (keys: {_keys(value)})")
            return
        if schema is not None and looks_like != schema:
            keys = "' or '".join(SCHEMAS[schema].KEYS)
            row.finding("missing-field", f"row has no '{keys}': it looks like {looks_like}, "
                                         f"but the file is {schema}")
            return
        schema = looks_like
    row.conv, problems = SCHEMAS[schema].read(value)
    for code, message in problems:
        row.finding(code, message)


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number",
            bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)


def _keys(value: dict) -> str:
    keys = list(value)[:6]
    return ", ".join(map(str, keys)) + (", ..." if len(value) > 6 else "") if keys else "none"
