"""``data convert``: stream rows from one schema into another, whole output or none."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson

from gekro_ft.atomic import atomic_output, check_output
from gekro_ft.data import chunks, convert_blocks, limits, line_blocks, typed
from gekro_ft.data.detect import resolve_schema
from gekro_ft.data.findings import Finding
from gekro_ft.data.rows import Row, read_rows, read_unparsed
from gekro_ft.data.schemas import NAMES, SCHEMAS, Unconvertible, openai, sharegpt
from gekro_ft.data.source import RawRow, is_jsonl, iter_jsonl
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
                 on_bytes: Callable[[int], None] | None = None, fast: bool = True) -> ConvertResult:
    """Convert ``source`` into JSONL of schema ``to`` at ``target``.

    Rows that cannot be read, or that ``to`` cannot express, are refused with a finding
    and not written; the rest are. ``target`` appears only when the whole pass succeeded.

    A JSONL file takes the fast path: plain rows decoded by msgspec into typed structs
    (:mod:`typed`) rather than through the schema reader, ShareGPT to OpenAI written a block of
    lines at a time (:mod:`convert_blocks`), on every core (:mod:`chunks`).
    ``fast=False`` reads row by row in this process, the reference it is tested against:
    both write the same bytes and findings."""
    if to not in NAMES:
        raise SchemaError(f"unknown target schema {to!r}; choose one of {', '.join(NAMES)}")
    check_output(target, inputs=(source,))  # before reading: refused at once, nothing written
    schema, _ = resolve_schema(source, from_schema)
    result = ConvertResult(str(source), str(target), schema, to)
    jsonl = fast and is_jsonl(source)
    cut = chunks.spans_for(source) if jsonl else None
    with atomic_output(target, inputs=(source,)) as out:
        if cut is None:
            if jsonl:
                _convert_jsonl(source, schema, to, out, result, on_bytes)
            else:
                _convert_rows(read_rows(source, schema, on_bytes), to, out, result)
            return result
        # every core: each worker writes its range's rows to a part file; the parts are
        # appended in order as they come in (while the workers go on), so the output is byte
        # for byte what one pass writes
        before = [0, 0]  # rows and lines of the parts appended so far

        def append(done: tuple[ConvertResult, str, int]) -> None:
            part, part_path, part_lines = done
            result.rows += part.rows
            result.written += part.written
            result.refused += part.refused
            result.dropped.update(part.dropped)
            result.findings.extend(f.moved(*before) for f in part.findings)
            before[0], before[1] = before[0] + part.rows, before[1] + part_lines
            _append_file(part_path, out)
            os.unlink(part_path)

        with tempfile.TemporaryDirectory(prefix=".gekro-convert-", dir=Path(target).parent) as parts:
            chunks.in_workers(convert_chunk, str(source), cut, on_bytes, (schema, to, parts), on_result=append)
    return result


def _append_file(path: str, out: BinaryIO) -> None:
    """``path``'s bytes appended to ``out``: copied by the kernel (``copy_file_range``, no pass
    through this process) where it can, the rest read and written."""
    out.flush()
    with open(path, "rb") as f:
        size, copied = os.fstat(f.fileno()).st_size, 0
        try:
            while copied < size and (n := os.copy_file_range(f.fileno(), out.fileno(), size - copied)):
                copied += n
        except (AttributeError, OSError):  # not on this platform or filesystem; a full disk
            pass  # says so below, through the output's own writes
        f.seek(copied)
        shutil.copyfileobj(f, out, 1 << 20)


def convert_chunk(source: str, span: chunks.Span, on_bytes: None, schema: str, to: str,
                  parts: str) -> tuple[ConvertResult, str, int]:
    """One byte range of ``source`` converted into a part file in ``parts``: (its result, the
    part's path, the range's lines)."""
    result = ConvertResult(source, "", schema, to)
    path = os.path.join(parts, f"{span[0]:020d}.jsonl")
    with open(path, "wb", buffering=1 << 20) as out:
        _convert_jsonl(source, schema, to, out, result, None, span)
    return result, path, chunks.lines_in(source, span)


def _convert_jsonl(source: str | Path, schema: str, to: str, out: BinaryIO, result: ConvertResult,
                   on_bytes: Callable[[int], None] | None, span: chunks.Span | None = None) -> None:
    """A JSONL file (or a byte range of it) in blocks of lines: the plain rows of a block written
    at once (:mod:`convert_blocks`), the others row by row (:func:`fast_rows`), in file order."""
    if (schema, to) not in convert_blocks.SUPPORTED:
        _convert_rows(fast_rows(source, schema, on_bytes, span), to, out, result)
        return
    extra_fields = sharegpt.extra_fields
    lines_done = 0
    for block in line_blocks.iter_blocks(source, on_bytes, span):
        if block is line_blocks.TOO_LARGE:
            lines_done += 1
            raw = RawRow(result.rows, lines_done, error=limits.size_message(), code="row-too-large")
            _convert_rows([read_unparsed(raw, schema)], to, out, result)
            continue
        converted = convert_blocks.convert_block(block)
        plain, ends = converted.plain, converted.ends
        view = memoryview(converted.out)
        written = blanks = 0  # bytes of ``converted`` written so far; blank lines so far
        first_row, last = result.rows, len(plain) - 1
        others = np.flatnonzero(~plain).tolist()
        lines = converted.lines
        if others and lines is None:  # the block decoded whole: split it for the row path
            lines = line_blocks.split_lines(block)
        for seen, i in enumerate(others):
            if i > seen:  # the plain rows before this line (``seen`` lines before it are not plain)
                out.write(view[written:ends[i - seen - 1]])
                written = int(ends[i - seen - 1])
            raw_line = lines[i] + b"\n" if i < last or block.endswith(b"\n") else lines[i]
            if not raw_line.strip():
                blanks += 1
                continue
            index, line = first_row + i - blanks, lines_done + i + 1
            if len(lines[i]) > limits.MAX_ROW_BYTES:
                raw = RawRow(index, line, error=limits.size_message(), code="row-too-large")
            elif limits.too_deep(raw_line):
                raw = RawRow(index, line, error=limits.depth_message(), code="nesting-too-deep")
            else:
                raw = RawRow(index, line, raw_line)
            _convert_rows([_row(raw, schema, extra_fields)], to, out, result)
        out.write(view[written:])
        n_plain = len(ends)
        result.rows += n_plain
        result.written += n_plain
        lines_done += len(plain) if block.endswith(b"\n") else len(plain) - 1


def fast_rows(source: str | Path, schema: str | None, on_bytes: Callable[[int], None] | None,
              span: chunks.Span | None = None) -> Iterator[Row]:
    """:func:`read_rows` of a JSONL file (or a byte range of it), plain rows read through
    :func:`typed.plain_row`: the same conversations, fields and findings, less Python."""
    extra_fields = {"openai": openai.extra_fields, "sharegpt": sharegpt.extra_fields}.get(schema)
    for raw in iter_jsonl(source, on_bytes, span, parse=False):
        yield _row(raw, schema, extra_fields)


def _row(raw: RawRow, schema: str | None, extra_fields) -> Row:
    """A row as :func:`read_rows` reads it, from a line already checked for size and depth."""
    if raw.error is None and (plain := typed.plain_row(raw.value, schema)) is not None:
        value = orjson.loads(raw.value)  # the other top-level fields travel as they were
        return Row(raw.index, raw.line, plain.conversation(extra_fields(value)), [], value)
    return read_unparsed(raw, schema)


def _convert_rows(rows: Iterable[Row], to: str, out: BinaryIO, result: ConvertResult) -> None:
    write = SCHEMAS[to].write
    for row in rows:
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
