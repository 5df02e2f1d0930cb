"""The fast path of ``data validate`` for JSONL without a model: byte-range chunks of the file
checked in worker processes (one core each), merged in order. Within a chunk the file is read
in blocks of lines (:mod:`line_blocks`); a block's plainly clean rows are checked at once
(:mod:`columnar`), its other rows one by one (:func:`check_row`), in file order.

A chunk returns its findings and, per readable row, a duplicate key (:func:`typed.duplicate_key`,
a str hash: the workers share one hash seed, so their keys agree). The merge offsets
each chunk's rows and lines by those before it and finds duplicates across the whole file at
once, on the keys in file order (:func:`duplicates_of`: the first row with a key is the original,
the later ones are duplicates of it), so a duplicate in another chunk is found as in one pass.
Findings come out in the order, and with the words, of the row-by-row path.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gekro_ft.data import chunks, columnar, limits, line_blocks, typed
from gekro_ft.data.checks import check_conversation
from gekro_ft.data.findings import Finding, has_errors
from gekro_ft.data.rows import Row, read_unparsed
from gekro_ft.data.source import RawRow

@dataclass
class ChunkResult:
    rows: int = 0
    lines: int = 0  # lines consumed, blank ones included, to offset the next chunk's
    usable: int = 0  # rows without errors (duplicates are warnings: they do not count)
    findings: list[Finding] = field(default_factory=list)
    keys: array = field(default_factory=lambda: array("q"))  # per readable row, in order
    where: array = field(default_factory=lambda: array("q"))  # that row's index
    lines_of: array = field(default_factory=lambda: array("q"))  # and its line


def check_chunk(path: str, span: tuple[int, int] | None, on_bytes: Callable[[int], None] | None,
                schema: str | None) -> ChunkResult:
    """Every check but duplicates on the rows of ``span`` (None: the whole file), read in
    blocks of lines: the plainly clean rows of a block are checked at once (:mod:`columnar`),
    the others one by one (:func:`check_row`), in file order."""
    out = ChunkResult()
    lines_done = 0
    # twice convert's blocks: the per-block numpy work is a smaller share of each (6 % fewer
    # instructions in all); convert gains nothing from larger ones
    for block in line_blocks.iter_blocks(path, on_bytes, span, 2 * line_blocks.BLOCK_BYTES):
        if block is line_blocks.TOO_LARGE:
            lines_done += 1
            check_row(RawRow(out.rows, lines_done, error=limits.size_message(),
                             code="row-too-large"), schema, out)
            out.rows += 1
            continue
        if schema in columnar.SCHEMAS:
            clean, keys, lines = columnar.clean_rows(block, schema)
        else:
            lines = line_blocks.split_lines(block)
            clean, keys = np.zeros(len(lines), bool), np.zeros(len(lines), np.int64)
        n_lines = len(clean)
        others = np.flatnonzero(~clean).tolist()
        if others and lines is None:
            lines = line_blocks.split_lines(block)
        has_key = clean.copy()
        row_of = np.ones(n_lines, np.int64)  # 1 for a line that is a row, 0 for a blank one
        last, blanks = n_lines - 1, 0
        for i in others:
            raw = lines[i] + b"\n" if i < last or block.endswith(b"\n") else lines[i]
            if not raw.strip():
                row_of[i] = 0
                blanks += 1
                continue
            index, line = out.rows + i - blanks, lines_done + i + 1
            if len(lines[i]) > limits.MAX_ROW_BYTES:  # ended in the block it grew into
                raw = RawRow(index, line, error=limits.size_message(), code="row-too-large")
            else:
                raw = RawRow(index, line, raw)
            key = check_row(raw, schema, out)
            if key is not None:
                has_key[i], keys[i] = True, key
        index = out.rows + np.cumsum(row_of) - 1
        out.usable += int(clean.sum())
        out.keys.frombytes(keys[has_key].tobytes())
        out.where.frombytes(index[has_key].tobytes())
        line_of = lines_done + 1 + np.flatnonzero(has_key)
        out.lines_of.frombytes(line_of.astype(np.int64).tobytes())
        out.rows += int(row_of.sum())
        lines_done += n_lines if block.endswith(b"\n") else n_lines - 1  # its newlines
    out.lines = lines_done
    return out


def check_row(raw: RawRow, schema: str | None, out: ChunkResult) -> int | None:
    """One row's checks, its findings and usable count into ``out``; its duplicate key when it
    is readable (the caller places it among the block's)."""
    key = None
    if raw.error is None and limits.too_deep(raw.value):
        raw = RawRow(raw.index, raw.line, error=limits.depth_message(), code="nesting-too-deep")
    if raw.error is None and (plain := typed.plain_row(raw.value, schema)) is not None:
        problems = typed.check_plain(plain, raw.value)
        if not problems:  # nothing to say, no objects to build
            out.usable += 1
            return typed.duplicate_key(plain)
        row = Row(raw.index, raw.line, plain.conversation(), [])
    else:  # the schema reader says what is wrong, as on the row-by-row path
        row = read_unparsed(raw, schema)
        problems = check_conversation(row.conv) if row.readable else []
    readable = row.readable  # as read: a row whose shape is wrong still counts for duplicates
    for code, message in problems:
        row.finding(code, message)
    if readable:
        key = typed.duplicate_key(row.conv)
    if not has_errors(row.findings):
        out.usable += 1
    out.findings.extend(row.findings)
    return key


def check_file(path: str | Path, schema: str,
               on_bytes: Callable[[int], None] | None = None) -> tuple[int, int, list[Finding]]:
    """(rows, usable rows, findings) of ``path``, duplicates included, on every core."""
    cut = chunks.spans_for(path)
    if cut is None:
        return merge([check_chunk(str(path), None, on_bytes, schema)])
    # the workers share one hash seed, so that their duplicate keys (str hashes) agree
    return merge(chunks.in_workers(check_chunk, str(path), cut, on_bytes, (schema,), same_hash_seed=True))


def merge(parts: list[ChunkResult]) -> tuple[int, int, list[Finding]]:
    """The chunks' results as one pass over the file would have them."""
    rows = usable = line_off = index_off = 0
    findings: list[Finding] = []
    keys, where, lines = [], [], []
    for p in parts:
        findings.extend(f.moved(index_off, line_off) for f in p.findings)
        keys.append(np.frombuffer(p.keys, dtype=np.int64))
        where.append(np.frombuffer(p.where, dtype=np.int64) + index_off)
        lines.append(np.frombuffer(p.lines_of, dtype=np.int64) + line_off)
        rows, usable = rows + p.rows, usable + p.usable
        index_off, line_off = index_off + p.rows, line_off + p.lines
    all_keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    all_where = np.concatenate(where) if where else all_keys
    all_lines = np.concatenate(lines) if lines else all_keys
    dups, original = duplicates_of(all_keys)
    duplicates = [Finding("duplicate-row", f"same conversation as line {int(all_lines[o])}",
                          int(all_where[i]), int(all_lines[i])) for i, o in zip(dups.tolist(), original.tolist())]
    # a row's duplicate finding comes after its other findings, as in the row-by-row pass
    merged = list(heapq.merge(findings, duplicates, key=lambda f: f.index))
    return rows, usable, merged


def duplicates_of(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(later, first): the places of the keys seen before, in order, and of each one's first.

    A plain sort says whether any key repeats (15 ms for 1M keys; ``np.unique`` with the
    first places and the inverse took 280 ms, most of a 2-core validate's merge); only the
    keys that do are then placed."""
    ordered = np.sort(keys)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    involved = np.flatnonzero(np.isin(keys, repeated))  # file order
    _, first, inverse = np.unique(keys[involved], return_index=True, return_inverse=True)
    original = involved[first[inverse.reshape(-1)]]
    later = original != involved
    return involved[later], original[later]
