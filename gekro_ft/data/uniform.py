"""A block of JSONL lines whose rows share their top-level keys, decoded in one msgspec call.

Rows of a dataset nearly always have the same keys (``conversations`` and an ``id``, say).
For such a block, a struct is made from its first row's keys: the schema's own fields typed
as in :mod:`typed`, every other key kept as its raw JSON (``msgspec.Raw``) and required, and
no key beyond those allowed. One ``decode_lines`` then reads the whole block, checks every
row's shape in C, and keeps what the structs do not read without building Python values
for it (skipping it cost msgspec more than keeping it raw).

What msgspec does not check in a raw field, orjson (the schema reader's parser) checks once
per block: the block's raw values parsed as one array. It refuses what the reader refuses
(invalid UTF-8, a number too large for a double); dumped again, that array says whether the
raw values are written as orjson writes them (then they are copied as they are) or must be
written again. A field whose brackets could nest past :data:`limits.MAX_DEPTH` is counted
exactly.

Anything else sends the block back to the per-line path, which says what is wrong: a row
with another key or without one of the first row's, a line that is not one object (blank,
two rows, half a row: :func:`line_blocks.one_object_per_line`), a turn the structs do not
take (tool calls, weights), a raw value orjson refuses, a block past the size limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec
import orjson

from gekro_ft.data import limits, typed
from gekro_ft.data.line_blocks import one_object_per_line

# the schema's own fields, typed, and their defaults (the typed row structs' fields)
_TYPED: dict[str, dict[str, tuple[Any, Any]]] = {
    "sharegpt": {"conversations": (list[typed._ShareGPTTurn], msgspec.NODEFAULT),
                 "system": (str | None, None), "tools": (Any, None)},
    "openai": {"messages": (list[typed._OpenAIMessage], msgspec.NODEFAULT),
               "tools": (Any, None), "functions": (Any, None)},
}
FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])  # a row's top-level fields, each as raw JSON


@dataclass(frozen=True)
class Block:
    rows: list[Any]  # one struct per line: the typed fields by name, the raw ones as ``raw_N``
    raw_keys: tuple[str, ...]  # the keys kept raw, in the first row's order
    canonical: list[msgspec.Raw] | None  # each row's raw values as orjson writes them, row after row


def decode(block: bytes, schema: str, *, written: bool = False) -> Block | None:
    """The block's rows when they share the first row's keys (see the module's doc), else
    None. ``written``: the raw values are to be written out (convert), so they come back as
    orjson writes them and every row must hold them in the first row's order."""
    n_lines = one_object_per_line(block) if len(block) <= limits.MAX_ROW_BYTES else 0
    if not n_lines:
        return None
    newline = block.find(b"\n")
    first = _lines(FIELDS, block if newline < 0 else block[:newline])
    if not first:
        return None
    raw_keys = tuple(k for k in first[0] if k not in _TYPED[schema])
    rows = _lines(_decoder(schema, raw_keys), block)
    if rows is None or len(rows) != n_lines:
        return None
    if not raw_keys:
        return Block(rows, raw_keys, [] if written else None)
    if len(raw_keys) == 1:  # an id, most often: no tuple per row
        values = list(map(_FIRST_RAW, rows))
    else:
        values = list(chain.from_iterable(map(_raw_getter(len(raw_keys)), rows)))
    joined = b"[" + b",".join(values) + b"]"
    if joined.count(b"[") + joined.count(b"{") > limits.MAX_DEPTH and any(
            limits.too_deep(bytes(v), limits.MAX_DEPTH - 1) for v in values):  # the row is a level
        return None
    try:
        parsed = orjson.loads(joined)
    except orjson.JSONDecodeError:
        return None
    if not written:
        return Block(rows, raw_keys, None)
    if len(raw_keys) > 1 and not _same_order(block, raw_keys):
        return None
    canonical = values if orjson.dumps(parsed) == joined else list(map(msgspec.Raw, map(orjson.dumps, parsed)))
    return Block(rows, raw_keys, canonical)


def _lines(decoder: msgspec.json.Decoder, block: bytes) -> list[Any] | None:
    """The block's values, or None when msgspec refuses them. msgspec descends one C call per
    level, raw fields included, and past Python's recursion limit (a row nested ~1,000 deep)
    raises RecursionError: then the per-line path, which measures each line's depth first,
    says ``nesting-too-deep`` where the row-by-row path does."""
    try:
        return decoder.decode_lines(block)
    except (msgspec.DecodeError, RecursionError):
        return None


def _same_order(block: bytes, raw_keys: tuple[str, ...]) -> bool:
    """Whether every row holds the raw keys in the first row's order (a converted row writes
    them in its own order, as the row path does)."""
    wanted = set(raw_keys)
    rows = _lines(FIELDS, block)
    return rows is not None and all(tuple(k for k in row if k in wanted) == raw_keys
                                    for row in rows)


@lru_cache(maxsize=256)
def _decoder(schema: str, raw_keys: tuple[str, ...]) -> msgspec.json.Decoder:
    typed_fields = [(name, kind) if default is msgspec.NODEFAULT else (name, kind, default)
                    for name, (kind, default) in _TYPED[schema].items()]
    # required fields first, as Python's own classes want them
    fields = typed_fields[:1] + [(f"raw_{i}", msgspec.Raw) for i in range(len(raw_keys))] + typed_fields[1:]
    rename = {name: name for name in _TYPED[schema]} | {f"raw_{i}": k for i, k in enumerate(raw_keys)}
    struct = msgspec.defstruct(f"Uniform{schema.capitalize()}Row", fields, rename=rename,
                               forbid_unknown_fields=True, gc=False)
    return msgspec.json.Decoder(struct)


_FIRST_RAW = attrgetter("raw_0")


@lru_cache(maxsize=64)
def _raw_getter(n: int) -> attrgetter:
    """A row's raw values as a tuple, for ``n`` of two or more."""
    return attrgetter(*(f"raw_{i}" for i in range(n)))
