"""How deep and how large one row may be, so a hostile file cannot take the machine's memory.

A file of nested brackets (``'[' * 200000 + ']' * 200000``, 400 KB) once took every data
command past 20 GB: ijson keeps a path prefix per open level, so memory grows with the
square of the depth. Rows are now refused, one by one, when they nest deeper than
:data:`MAX_DEPTH` or are larger than :data:`MAX_ROW_BYTES`; the reader never holds more
than about one row's bytes and goes on with the next row.

The limits are far beyond real chat data: a conversation with tools and a JSON schema
for each nests about ten levels, and a million-token conversation is about 4 MB.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 128  # arrays/objects inside each other; the row itself is level 1
MAX_ROW_BYTES = 16 << 20  # one JSONL line, or one item of a JSON array

# A JSON string, escapes included (unrolled: linear time on any input).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN = frozenset(b"[{")


def too_deep(text: bytes | str, limit: int | None = None) -> bool:
    """Whether the JSON ``text`` nests arrays/objects deeper than ``limit`` (strings skipped).

    Cheap for ordinary rows: only a text with more opening brackets than the limit is scanned.
    """
    limit = MAX_DEPTH if limit is None else limit
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for b in _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth = depth + 1 if b in _OPEN else depth - 1
        if depth > limit:
            return True
    return False


class TooDeep(ValueError):
    """JSON text that nests deeper than :data:`MAX_DEPTH`."""


def loads_nested_json(text: str) -> Any:
    """``json.loads`` for JSON carried inside a row as a string (tool arguments, a tools list):
    :class:`TooDeep` (a ValueError), not a RecursionError, when it nests too deep."""
    if too_deep(text):
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    return json.loads(text)


def not_json(e: ValueError) -> str:
    """What a ValueError from :func:`loads_nested_json` says about the text, for a finding."""
    return str(e) if isinstance(e, TooDeep) else "not valid JSON"


def depth_message() -> str:
    return f"the row nests arrays/objects deeper than {MAX_DEPTH} levels; it was not read"


def size_message() -> str:
    return f"the row is larger than {human_bytes(MAX_ROW_BYTES)}; it was not read"


def human_bytes(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n} bytes"
