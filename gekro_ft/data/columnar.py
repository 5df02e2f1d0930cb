"""``data validate``'s checks on a block of JSONL lines at once, for the rows that are plainly
clean; every other row is left to the row-by-row fast path (:func:`validate_chunks.check_row`),
so the findings stay its findings.

Per row, Python does little more than msgspec's decoding into the same structs as
:func:`typed.plain_row` (``decode_lines``, a batch of lines a call). The rest is done per block:

- **the bytes** (one ``translate`` to bit flags, a few numpy passes): a line is left to the row
  path when it holds any byte outside printable ASCII (a control character, UTF-8 beyond
  ASCII), a JSON escape that can make whitespace or a brace (``\\t \\n \\r \\f \\u``),
  two spaces in a row, ``{{``, more brackets than the depth limit, or what msgspec would skip
  unchecked (:func:`typed.unchecked_by_structs`). What is left decodes to texts whose only
  whitespace is single spaces and that hold no placeholder. This is where exactness comes
  from: Python's ``str.split()`` knows 29 whitespace characters (``\\x1c``, ``\\x85``,
  ``\\u3000``, ...); none of them can be in such a text, so no other definition of
  whitespace (Arrow's, a regex's) is ever relied on: a row that could hold one goes through
  ``str.split`` itself.
- **the texts** (numpy over the texts as one buffer): a text that is empty or starts or ends
  with a space sends its row to the row path (``empty-content``, or a key that needs
  normalizing). Every other text is already its own ``" ".join(text.split())``, so the
  duplicate key (:func:`typed.duplicate_key`: the pieces' hashes weighted by place) comes
  from the texts' own hashes, combined per row with numpy.
- **the shape**: each row's roles after the system turn as a number (two bits a turn); the
  distinct numbers of a block (a handful) get :func:`typed._shape_problems`'s verdict; a row
  with any problem goes to the row path.

Tried and dropped (``benchmarks/README.md``): pyarrow for the texts and the keys (its first
conversion of a Python object imports pandas: 45 MB and 0.7 s more per process, which the
memory target could not carry), ``pyarrow.json`` for decoding (slower than msgspec here),
regexes and ``bytes.find`` per pattern over the block (several times the numpy passes).
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from gekro_ft.data import limits, line_blocks, typed, uniform

# Each byte as bit flags, so that one translate and three numpy passes over a block find every
# line to leave to the row path (numpy table lookups, or bytes.find per pattern, took three to
# four times as long). Low three bits: what the byte is as the first of a pair (space, '{',
# backslash); next three: as the second (space, '{', an escape letter that can make whitespace
# or '{': t n r f u). A pair is to leave when first & (second >> 3) is not zero: two spaces,
# '{{', or one of those escapes. 64: a byte that is never plain (a control byte or non-ASCII);
# 128: a bracket, counted for the depth limit.
_FLAGS = bytearray(256)
_FLAGS[:32] = b"\x40" * 32
_FLAGS[128:] = b"\x40" * 128
_FLAGS[ord("\n")] = 0
_FLAGS[ord(" ")], _FLAGS[ord("\\")], _FLAGS[ord("[")] = 1 | 8, 4, 128
_FLAGS[ord("{")] = 2 | 16 | 128
for _c in b"tnrfu":
    _FLAGS[_c] = 32
_FLAGS = bytes(_FLAGS)

# In decoded text: a space (1) or '{' (2) twice in a row, or any control character (4).
_TEXT_FLAGS = bytearray(256)
_TEXT_FLAGS[:32] = b"\x04" * 32
_TEXT_FLAGS[ord(" ")], _TEXT_FLAGS[ord("{")] = 1, 2
_TEXT_FLAGS = bytes(_TEXT_FLAGS)


def _maybe_irregular(data: bytes) -> bool:
    """Whether ASCII ``data`` holds a control character, two spaces or ``{{``: one pass for the
    first, and the pairs read as 16-bit numbers at even and at odd offsets (``bytes.find`` for
    a pair of spaces, a byte that is everywhere in text, took nine times as long)."""
    if (np.frombuffer(data, np.uint8) < 32).any():
        return True
    for offset in (0, 1):
        pairs = np.frombuffer(data, "<u2", count=(len(data) - offset) // 2, offset=offset)
        if ((pairs == 0x2020) | (pairs == 0x7B7B)).any():
            return True
    return False

_ROLE_LETTER = {"user": "u", "assistant": "a", "system": "s"}
_LETTER_ROLE = {v: k for k, v in _ROLE_LETTER.items()}
_ROLE_NAMES = list(_ROLE_LETTER)  # a role's number is its place here


class _Schema:
    """Where a typed row keeps its turns, roles, texts and top-level system."""

    def __init__(self, turns: str, role: str, text: str, roles: dict[str, str], system: bool,
                 tools: dict[str, tuple[Any, ...]]):
        self.turns, self.role, self.text = attrgetter(turns), attrgetter(role), attrgetter(text)
        self.system = attrgetter("system") if system else None
        self.tools = tools  # per tool field, the values that mean none
        self.role_number = {raw: _ROLE_NAMES.index(role) for raw, role in roles.items()}

    def without_tools(self, rows: list[Any]) -> list[bool] | None:
        """Per row, whether it has no tools (rows with tools: the row path says why, or reads
        them); None when none has any (counted in C, the usual case)."""
        fits = None
        for name, none in self.tools.items():
            values = list(map(attrgetter(name), rows))
            if sum(map(values.count, none)) == len(values):
                continue
            row_fits = [any(v is n or v == n for n in none) for v in values]
            fits = row_fits if fits is None else [a and b for a, b in zip(fits, row_fits)]
        return fits


_SCHEMAS = {
    "sharegpt": _Schema("conversations", "from_", "value", typed._SHAREGPT_ROLE, True,
                        {"tools": (None, "")}),
    "openai": _Schema("messages", "role", "content", typed._OPENAI_ROLE, False,
                      {"tools": (None,), "functions": (None,)}),
}
SCHEMAS = tuple(_SCHEMAS)
SHAREGPT = _SCHEMAS["sharegpt"]  # convert's block path asks it which rows have tools
_BATCH = 256  # lines per decode_lines call: a line that does not fit sends its batch line by line


def plain_lines(block: bytes, lines: list[bytes]) -> np.ndarray:
    """Per line of ``block`` (``lines``: its lines, newlines cut), whether its bytes are plain
    (see the module's doc), it is not too deep (by its brackets) and not too large."""
    flags = np.frombuffer(block.translate(_FLAGS), np.uint8)
    lengths = np.fromiter(map(len, lines), np.int64, len(lines))
    ends = np.cumsum(lengths + 1)  # one past each line's newline
    if b"\r" in block:  # a CRLF file's CR is JSON whitespace, not a control byte in a text
        raw = np.frombuffer(block, np.uint8)
        crs = np.flatnonzero(raw[:-1] == 13)
        flags = flags.copy()
        flags[crs[raw[crs + 1] == 10]] = 0
    leave = np.flatnonzero((flags[:-1] & (flags[1:] >> 3)) | (flags[:-1] & 64))
    if len(flags) and flags[-1] & 64:
        leave = np.append(leave, len(flags) - 1)
    plain = lengths <= limits.MAX_ROW_BYTES
    plain[np.searchsorted(ends, leave, side="right")] = False
    plain &= _brackets_per_line(flags >= 128, ends) <= limits.MAX_DEPTH
    return plain & _checked_by_structs(block, lines)


def within_limits(block: bytes, lines: list[bytes]) -> np.ndarray:
    """Per line, whether it is neither too large nor possibly too deep (more brackets than the
    depth limit): such a line is left to the row path, which says which."""
    lengths = np.fromiter(map(len, lines), np.int64, len(lines))
    brackets = np.frombuffer(block.translate(_FLAGS), np.uint8) >= 128
    return ((lengths <= limits.MAX_ROW_BYTES) & _checked_by_structs(block, lines)
            & (_brackets_per_line(brackets, np.cumsum(lengths + 1)) <= limits.MAX_DEPTH))


def _checked_by_structs(block: bytes, lines: list[bytes]) -> np.ndarray:
    """Per line, not :func:`typed.unchecked_by_structs`, found for the whole block at once:
    UTF-8 by one ``decode`` (an ASCII block needs none), numbers from the places of its digits
    (a few passes of numpy; the translate and substring search the row path uses took 16 ms a
    4 MiB block, this about a third)."""
    ok = np.ones(len(lines), bool)
    if not block.isascii():
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            ok = np.array([_utf8(line) for line in lines], bool)
    raw = np.frombuffer(block, np.uint8)
    digits = np.flatnonzero((raw - 48) < 10)  # uint8 wraps: only '0'..'9' are below 10
    if len(digits) < 3:
        return ok
    # runs of digits: where each starts, and how long it is
    breaks = np.flatnonzero(np.diff(digits) != 1) + 1
    starts = digits[np.concatenate([[0], breaks])]
    lengths = np.diff(np.concatenate([[0], breaks, [len(digits)]]))
    mark = raw[np.maximum(starts - 1, 0)] | 32
    sign = (mark == 43 | 32) | (mark == 45 | 32)  # '+' and '-' (| 32 leaves them as they are)
    mark = np.where(sign, raw[np.maximum(starts - 2, 0)] | 32, mark)
    big = ((lengths >= 3) & (mark == ord("e")) & (starts >= 1)) | (lengths >= 100)
    if big.any():
        ends = np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)) + 1)
        ok[np.searchsorted(ends, starts[big], side="right")] = False
    return ok


def _brackets_per_line(is_bracket: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(ends, np.flatnonzero(is_bracket), side="right"),
                       minlength=len(ends))[:len(ends)]


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def clean_rows(block: bytes, schema: str) -> tuple[np.ndarray, np.ndarray, list[bytes] | None]:
    """(clean, keys, lines) per line: whether the line is a row the row path would find nothing
    in, for those its duplicate key (:func:`typed.duplicate_key`'s value), and the block's lines
    when they were split (None when its rows share their keys and were decoded whole)."""
    spec = _SCHEMAS[schema]
    whole = uniform.decode(block, schema)
    if whole is not None:  # the texts are checked as decoded, not as written
        lines, rows, at = None, whole.rows, list(range(len(whole.rows)))
        n_lines = len(rows)
    else:
        lines = line_blocks.split_lines(block)
        n_lines = len(lines)
        plain = plain_lines(block, lines)
        rows, at = decode(lines, np.flatnonzero(plain).tolist(), typed._DECODERS[schema], block)
    fits = spec.without_tools(rows)
    if fits is not None:
        rows = [r for r, f in zip(rows, fits) if f]
        at = [i for i, f in zip(at, fits) if f]
    at = np.array(at, np.int64)
    clean = np.zeros(n_lines, bool)
    keys = np.zeros(n_lines, np.int64)
    if rows:
        ok, row_keys = _check_decoded(rows, spec, scan=whole is not None)
        clean[at[ok]] = True
        keys[at] = row_keys
    return clean, keys, lines


def decode(lines: list[bytes], every: list[int], decoder: msgspec.json.Decoder,
           block: bytes | None = None) -> tuple[list[Any], list[int]]:
    """The lines (of ``every``, places in ``lines``) that decode with ``decoder``, and their
    places: a batch of lines at a time (``decode_lines``), one at a time for a line that is not
    plainly one object and for a batch that holds a line that does not fit.

    ``decode_lines`` reads whitespace-separated values, not lines: ``{..} {..}`` on one line
    is two values, a blank line none. So only lines that start with ``{`` and end with ``}``
    (a CR after it allowed) are batched: a value cannot run from one such line into the next
    (inside a value ``}`` is never followed by ``{``, and a string cannot hold a raw newline),
    so each holds at least one value, and a batch that gives as many values as it has lines
    gives one per line, decoded as it would be alone. ``block``: the lines' block, tried whole
    when every line is to be decoded and is such a line (no copy into batches)."""
    if block is not None and len(every) == len(lines) > _BATCH and line_blocks.one_object_per_line(block):
        try:
            values = decoder.decode_lines(block)
        except msgspec.DecodeError:
            values = None
        if values is not None and len(values) == len(lines):
            return values, every
    batchable = [i for i in every if _braced(lines[i])]
    alone = set(every).difference(batchable) if len(batchable) < len(every) else ()
    rows: list[Any] = []
    at: list[int] = []
    for b in range(0, len(batchable), _BATCH):
        batch = batchable[b:b + _BATCH]
        try:
            values = decoder.decode_lines(b"\n".join([lines[i] for i in batch]))
        except msgspec.DecodeError:
            values = None
        if values is not None and len(values) == len(batch):
            rows += values
            at += batch
            continue
        _one_by_one(lines, batch, decoder, rows, at)
    if alone:
        _one_by_one(lines, sorted(alone), decoder, rows, at)
        order = sorted(range(len(at)), key=at.__getitem__)
        rows, at = [rows[k] for k in order], [at[k] for k in order]
    return rows, at


def _one_by_one(lines: list[bytes], which: list[int], decoder: msgspec.json.Decoder,
                rows: list[Any], at: list[int]) -> None:
    for i in which:
        try:
            rows.append(decoder.decode(lines[i]))
            at.append(i)
        except msgspec.DecodeError:  # not the structs' shape (or blank): the row path says why
            pass


def _braced(line: bytes) -> bool:
    return line[:1] == b"{" and (line[-1:] == b"}" or line[-2:] == b"}\r")


def _check_decoded(rows: list[Any], spec: _Schema, scan: bool) -> tuple[np.ndarray, np.ndarray]:
    """(clean, key) per decoded row. ``scan``: its texts are to be checked for what a plain
    line cannot hold (:meth:`_Strings.irregular`); without, its bytes were plain (so its texts
    are ASCII: a character is a byte, and a string's length its length in bytes)."""
    turns = list(map(spec.turns, rows))
    counts = np.fromiter(map(len, turns), np.int64, len(turns))
    offsets = np.zeros(len(rows) + 1, np.int64)  # each row's turns
    np.cumsum(counts, out=offsets[1:])
    texts = _Strings(list(map(spec.text, chain.from_iterable(turns))), scan)
    raw_roles = map(spec.role, chain.from_iterable(turns))
    roles = np.fromiter(map(spec.role_number.__getitem__, raw_roles), np.int64, len(texts))
    # ``row.system or None``: an empty system is none
    systems = _Strings([s or "" for s in map(spec.system, rows)] if spec.system
                       else [""] * len(rows), scan)
    # the readers' rule: with no top-level system, a system turn first is the system
    first = offsets[:-1]
    shift = (counts > 0) & (systems.lengths == 0)
    shift[shift] = roles[first[shift]] == _SYSTEM
    # a text empty or with a space at an edge: the row path (empty-content, or normalizing)
    odd = np.concatenate([[0], np.cumsum((texts.lengths == 0) | texts.edge_space() | texts.irregular)])
    ok = (odd[offsets[1:]] == odd[first]) & ~systems.edge_space() & ~systems.irregular
    # the shape: the roles after the system turn, as a number per row (base 4, a digit a turn)
    kept = np.ones(len(roles), bool)
    kept[first[shift]] = False
    row_of_turn = np.repeat(np.arange(len(rows)), counts)
    rank = np.arange(len(roles)) - first[row_of_turn] - shift[row_of_turn]
    digits = np.where(kept & (rank < _MAX_SHAPE_TURNS), (roles + 1).astype(np.uint64), 0)
    digits <<= (2 * np.clip(rank, 0, _MAX_SHAPE_TURNS - 1)).astype(np.uint64)
    # the sums wrap around; their differences stay exact
    sums = np.concatenate([[0], np.cumsum(digits, dtype=np.uint64)])
    shapes = sums[offsets[1:]] - sums[first]
    ok &= counts - shift <= _MAX_SHAPE_TURNS  # longer: the row path
    distinct, which = np.unique(shapes, return_inverse=True)
    bad_shape = np.array([bool(typed._shape_problems(_roles_of(int(s)))) for s in distinct], bool)
    ok &= ~bad_shape[which.reshape(-1)]
    return ok, _keys(texts, systems, roles, offsets, shift, kept, rank)


_SYSTEM = _ROLE_NAMES.index("system")
_MAX_SHAPE_TURNS = 31  # 2 bits a turn in 64


def _roles_of(shape: int) -> tuple[str, ...]:
    roles = []
    while shape:
        roles.append(_ROLE_NAMES[(shape & 3) - 1])
        shape >>= 2
    return tuple(roles)


class _Strings:
    """ASCII strings as they are, and as one buffer with offsets, for numpy to read.

    ``scan``: the strings may be anything decoded, and ``irregular`` says per string whether it
    holds what a text on a plain line cannot (see the module's doc): a character beyond ASCII
    or below the space (held as ``"\x00"`` in ``strings``: the buffer is ASCII), two spaces
    in a row, or ``{{``. Without, none is."""

    def __init__(self, strings: list[str], scan: bool = False):
        joined = "".join(strings)
        if scan and not joined.isascii():
            strings = [s if s.isascii() else "\x00" for s in strings]
            joined = "".join(strings)
        self.strings = strings
        self.data = joined.encode("ascii")
        self.lengths = np.fromiter(map(len, strings), np.int64, len(strings))
        self.offsets = np.zeros(len(strings) + 1, np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.irregular = self._irregular() if scan else np.zeros(len(strings), bool)

    def _irregular(self) -> np.ndarray:
        out = np.zeros(len(self), bool)
        if not self.data or not _maybe_irregular(self.data):
            return out
        flags = np.frombuffer(self.data.translate(_TEXT_FLAGS), np.uint8)
        found = np.flatnonzero((flags[:-1] & flags[1:] & 3) | (flags[:-1] & 4))
        if flags[-1] & 4:
            found = np.append(found, len(flags) - 1)
        # a pair across two strings marks the first: it only sends a row to the row path
        out[np.searchsorted(self.offsets[1:], found, side="right")] = True
        return out

    def __len__(self) -> int:
        return len(self.lengths)

    def edge_space(self) -> np.ndarray:
        """Per string, whether it starts or ends with a space."""
        if not self.data:
            return np.zeros(len(self), bool)
        raw = np.frombuffer(self.data, np.uint8)
        some = self.lengths > 0
        out = np.zeros(len(self), bool)
        out[some] = (raw[self.offsets[:-1][some]] == 32) | (raw[self.offsets[1:][some] - 1] == 32)
        return out


def _keys(texts: _Strings, systems: _Strings, roles: np.ndarray, offsets: np.ndarray,
          shift: np.ndarray, kept: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """:func:`typed.duplicate_key` per row, its texts being normalized already: the pieces'
    hashes (system, then role and text per turn) weighted by their places and summed per row,
    in 64-bit numbers that wrap as :func:`typed.pieces_key`'s do. ``rank``: each turn's place
    among its row's turns after the system."""
    with np.errstate(over="ignore"):
        text_hash = np.fromiter(map(hash, texts.strings), np.int64, len(texts)).view(np.uint64)
        # the system piece: the top-level one, or the first turn's text when it was lifted out
        system_hash = np.fromiter(map(hash, systems.strings), np.int64, len(systems)).view(np.uint64)
        system_hash[shift] = text_hash[offsets[:-1][shift]]
        place = np.clip(rank, 0, _MAX_SHAPE_TURNS - 1)  # longer rows go to the row path anyway
        terms = _role_hashes()[roles] * _WEIGHTS[1 + 2 * place] + text_hash * _WEIGHTS[2 + 2 * place]
        terms[~kept] = 0
        sums = np.zeros(len(terms) + 1, np.uint64)
        np.cumsum(terms, out=sums[1:])
        # the sums wrap around; their differences stay exact
        keys = system_hash * _WEIGHTS[0] + (sums[offsets[1:]] - sums[offsets[:-1]])
    return keys.view(np.int64)


_WEIGHTS = np.array([typed.piece_weight(i) for i in range(2 * _MAX_SHAPE_TURNS + 1)], np.uint64)


def _role_hashes() -> np.ndarray:
    """hash() of each role's name, in this process's hash seed (read at run time: a worker's
    seed is set before it starts, and this module may have been imported before)."""
    return np.array([hash(r) for r in _ROLE_NAMES], np.int64).view(np.uint64)
