"""``data convert`` from ShareGPT to OpenAI on a block of JSONL lines at once, for the rows that
are plainly well formed; every other row is left to the row path (:func:`convert.fast_rows`),
so the output bytes stay its bytes.

A plain row (it decodes into :mod:`typed`'s structs, without tools) is written by the row path
as ``orjson.dumps({"messages": [{"role": r, "content": t}, ...], **extra})``: no weights, names
or tool calls can be in it, and nothing is dropped. The same bytes are made here in one of two
ways:

- a block whose rows share their keys (:mod:`uniform`, the usual case): each row becomes a
  struct of the output's shape, its other top-level fields carried as raw JSON already as
  orjson writes them, and msgspec encodes the block a line per row (msgspec writes strings
  as orjson does: ``tests/test_fast_validate.py`` compares the bytes). About 2.5 times
  faster than the pieces below.
- any other block: the output put together from pieces, as orjson writes a dict: each text
  dumped by orjson (one ``map`` per block), the role pieces fixed, the row's other top-level
  fields (read as raw JSON by msgspec) dumped by orjson as the row path dumps them.

A row with a top-level ``messages`` of its own (``extra`` would overwrite the written one)
goes to the row path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, chain
from operator import attrgetter

import msgspec
import numpy as np
import orjson

from gekro_ft.data import columnar, line_blocks, typed, uniform
from gekro_ft.data.schemas import sharegpt

SUPPORTED = (("sharegpt", "openai"),)  # (from, to)
_TOP_LEVEL = frozenset(sharegpt.TOP_LEVEL)
_ROLE_PIECE = {raw: b'{"role":"%s","content":' % role.encode()
               for raw, role in typed._SHAREGPT_ROLE.items()}
_ROLE_QUOTE = {raw: piece + b'"' for raw, piece in _ROLE_PIECE.items()}


@dataclass(frozen=True)
class Converted:
    plain: np.ndarray  # per line: converted here
    out: bytes  # those rows' output side by side, each ending in a newline
    ends: np.ndarray  # where each of them ends in ``out``
    lines: list[bytes] | None  # the block's lines, when they were split (the row path needs them)


def convert_block(block: bytes) -> Converted:
    """The block's plain rows converted; when its rows share their keys (:mod:`uniform`), in a
    few calls for the whole block, else a line at a time into pieces joined once."""
    rows = uniform.decode(block, "sharegpt", written=True)
    if rows is not None and "messages" not in rows.raw_keys:
        return _uniform(rows)
    lines = line_blocks.split_lines(block)
    plain, out, ends = _by_line(lines, block)
    return Converted(plain, out, ends, lines)


def _uniform(block: uniform.Block) -> Converted:
    """Each plain row as a struct of the output's shape (``messages``, then the raw fields as
    they were, in their order, already as orjson writes them), encoded by msgspec a line each
    (its strings come out as orjson writes them: ``tests/test_fast_validate.py``). Built with
    ``map`` over the block, not a loop per row: that loop was a third of convert's time."""
    rows, width = block.rows, len(block.raw_keys)
    fits = columnar.SHAREGPT.without_tools(rows)
    turns = list(map(_TURNS, rows))
    ends = list(accumulate(map(len, turns)))
    flat = list(chain.from_iterable(turns))
    messages = list(map(_Message, map(typed._SHAREGPT_ROLE.__getitem__, map(_FROM, flat)), map(_VALUE, flat)))
    per_row = list(map(messages.__getitem__, map(slice, [0, *ends[:-1]], ends)))
    systems = list(map(_SYSTEM, rows))
    if systems.count(None) + systems.count("") != len(rows):
        for ms, system in zip(per_row, systems):
            if system:  # a top-level system is the first message
                ms.insert(0, _Message("system", system))
    values = block.canonical
    if width == 1:
        written = list(map(_output_struct(block.raw_keys), per_row, values))
    else:
        columns = [values[k::width] for k in range(width)]
        written = list(map(_output_struct(block.raw_keys), per_row, *columns))
    if fits is not None:
        written = [w for w, f in zip(written, fits) if f]
    out = _ENCODER.encode_lines(written)
    plain = np.ones(len(rows), bool) if fits is None else np.array(fits, bool)
    # msgspec writes a newline inside a string as \n: the only newlines are the rows' own
    return Converted(plain, out, np.flatnonzero(np.frombuffer(out, np.uint8) == 10) + 1, None)


class _Message(msgspec.Struct, gc=False):
    role: str
    content: str


_ENCODER = msgspec.json.Encoder()


@lru_cache(maxsize=256)
def _output_struct(raw_keys: tuple[str, ...]) -> type:
    fields = [("messages", list[_Message])] + [(f"raw_{i}", msgspec.Raw) for i in range(len(raw_keys))]
    rename = {"messages": "messages"} | {f"raw_{i}": k for i, k in enumerate(raw_keys)}
    return msgspec.defstruct("OpenAIRow", fields, rename=rename, gc=False)


def _by_line(lines: list[bytes], block: bytes) -> tuple[np.ndarray, bytes, np.ndarray]:
    """(plain, out, ends) for a block whose rows differ in their keys: the lines that decode
    into :mod:`typed`'s structs, a batch of lines at a time, written from pieces."""
    rows, at = columnar.decode(lines, np.flatnonzero(columnar.within_limits(block, lines)).tolist(),
                               typed._DECODERS["sharegpt"], block)
    keep = at
    if (no_tools := columnar.SHAREGPT.without_tools(rows)) is not None:
        keep = [i for i, f in zip(at, no_tools) if f]
        rows = [r for r, f in zip(rows, no_tools) if f]
    raws, _ = columnar.decode(lines, keep, uniform.FIELDS, block)  # each decodes: it did above
    extras = [[(k, v) for k, v in raw.items() if k not in _TOP_LEVEL] for raw in raws]
    fits = np.fromiter(("messages" not in raw for raw in raws), bool, len(raws))
    if not fits.all():
        rows = [r for r, f in zip(rows, fits) if f]
        extras = [e for e, f in zip(extras, fits) if f]
        keep = [i for i, f in zip(keep, fits) if f]
    plain = np.zeros(len(lines), bool)
    plain[keep] = True
    if not rows:
        return plain, b"", np.zeros(0, np.int64)
    out, ends = _write(rows, extras)
    return plain, out, ends


def _write(rows: list[typed._ShareGPTRow],
           extras: list[list[tuple[str, msgspec.Raw]]]) -> tuple[bytes, np.ndarray]:
    """The rows' output, each row's pieces placed in one array and joined once:
    ``{"messages":[`` + per message (``,``, role, text, ``}``) + ``]`` + per extra field
    (``,"key":``, value) + ``}\n``. A top-level system is the first message; a system turn
    first is written as the same message whether or not the reader lifted it out."""
    turns = list(map(_TURNS, rows))
    systems = [r.system for r in rows]
    has_system = np.fromiter(map(bool, systems), bool, len(rows))
    n_msgs = np.fromiter(map(len, turns), np.int64, len(rows)) + has_system
    n_extra = np.fromiter(map(len, extras), np.int64, len(rows))
    size = 3 + 4 * n_msgs + 2 * n_extra  # pieces per row
    start = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(size, out=start[1:])
    pieces = np.empty(int(start[-1]), object)
    pieces[start[:-1]] = _ROW_START
    close = start[:-1] + 1 + 4 * n_msgs
    pieces[close] = b"]"
    pieces[start[1:] - 1] = b"}\n"
    # messages: the first of a row has no comma before it
    msg_start = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(n_msgs, out=msg_start[1:])
    msg_row = np.repeat(np.arange(len(rows)), n_msgs)
    at = start[:-1][msg_row] + 1 + 4 * (np.arange(int(msg_start[-1])) - msg_start[:-1][msg_row])
    pieces[at] = b","
    pieces[at[msg_start[:-1][n_msgs > 0]]] = b""
    system_msg = msg_start[:-1][has_system]
    turn_msg = np.ones(int(msg_start[-1]), bool)
    turn_msg[system_msg] = False
    flat = list(chain.from_iterable(turns))
    texts = list(map(_VALUE, flat))
    n_texts = len(texts)
    texts += (s for s in systems if s)
    role_piece, dumped = _ROLE_PIECE, _string_contents(texts)
    if dumped is None:  # some text needs escaping: each one dumped on its own
        dumped = list(map(orjson.dumps, texts))
        pieces[at + 3] = b"}"
    else:  # the quotes are in the pieces around the text
        role_piece = _ROLE_QUOTE
        pieces[at + 3] = b'"}'
    pieces[at[system_msg] + 1] = role_piece["system"]
    pieces[at[system_msg] + 2] = dumped[n_texts:]
    pieces[at[turn_msg] + 1] = list(map(role_piece.__getitem__, map(_FROM, flat)))
    pieces[at[turn_msg] + 2] = dumped[:n_texts]
    if n_extra.any():  # as the row path writes them: parsed by orjson, then dumped
        extra_row = np.repeat(np.arange(len(rows)), n_extra)
        extra_start = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(n_extra, out=extra_start[1:])
        rank = np.arange(int(extra_start[-1])) - extra_start[:-1][extra_row]
        at = close[extra_row] + 1 + 2 * rank
        pairs = list(chain.from_iterable(extras))
        pieces[at] = [_key_piece(k) for k, _ in pairs]
        values = orjson.loads(b"[" + b",".join(v for _, v in pairs) + b"]")
        pieces[at + 1] = list(map(orjson.dumps, values))
    out = b"".join(pieces.tolist())
    # orjson writes a newline inside a string as \n: the only newlines are the rows' own
    return out, np.flatnonzero(np.frombuffer(out, np.uint8) == 10) + 1


_ROW_START = b'{"messages":['
_TURNS, _FROM, _VALUE = attrgetter("conversations"), attrgetter("from_"), attrgetter("value")
_SYSTEM = attrgetter("system")


def _string_contents(strings: list[str]) -> list[bytes] | None:
    """What orjson writes between the quotes of each string, from one ``dumps`` of them all;
    None when some string needed an escape. orjson escapes only ``"``, ``\\`` and control
    characters, each into more than one byte, so when the dump is as long as the strings'
    UTF-8 plus quotes, commas and brackets, nothing was escaped and ``","`` occurs only
    between strings."""
    dumped = orjson.dumps(strings)
    joined = "".join(strings)
    size = len(joined) if joined.isascii() else len(joined.encode("utf-8"))
    if len(dumped) != size + 3 * len(strings) + 1:
        return None
    return dumped[2:-2].split(b'","') if strings else []


@lru_cache(maxsize=1024)
def _key_piece(key: str) -> bytes:
    return b"," + orjson.dumps(key) + b":"
