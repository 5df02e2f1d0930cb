"""``data validate``'s checks on a block of JSONL lines at once, for the rows the structs take;
every other row is left to the row-by-row fast path (:func:`validate_chunks.check_row`), so the
findings stay its findings.

Per row, Python does little more than msgspec's decoding into the same structs as
:func:`typed.plain_row` (the whole block in one call when its rows share their keys,
:mod:`uniform`; else ``decode_lines`` on batches of the lines within the size and depth
limits). The rest is done per block:

- **the texts** (numpy over the ASCII ones as one buffer): a text that may not be its own
  normalized form (``" ".join(text.split())``, the duplicate key's) -- a character beyond
  ASCII or below the space, two spaces in a row, a space at an edge -- is normalized on its
  own; the others already are, so no definition of whitespace but ``str.split``'s (29
  characters: ``\\x1c``, ``\\x85``, ``\\u3000``, ...) is ever relied on. A row goes to the
  row path for what that path may find in its texts: an empty one (``empty-content``) or
  ``{{`` (a placeholder, maybe); also for a blank system turn to lift out, of which the
  readers say nothing (rare; only the row path lifts it). The duplicate key
  (:func:`typed.duplicate_key`: the pieces' hashes weighted by place) comes from the
  normalized texts' hashes, combined per row with numpy.
- **the shape**: each row's roles after the system turn as a number (two bits a turn); the
  distinct numbers of a block (a handful) get :func:`typed._shape_problems`'s verdict; a row
  with any problem goes to the row path.

Texts with newlines, tabs or non-ASCII characters (most real answers) went to the row path
until the texts were normalized here: 200k rows with a multi-line answer each took 11.1 s
against 1.4 s for one-line answers; now 3.6 s (one process; ``benchmarks/README.md``).

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

# '[' and '{' as 128, every other byte as 0: a line with more brackets than the depth limit
# could nest too deep, and is left to the row path (which says whether it does)
_BRACKETS = bytes(128 if c in b"[{" else 0 for c in range(256))

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


_ROLE_NAMES = ["user", "assistant", "system"]  # a role's number is its place here


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


def within_limits(block: bytes, lines: list[bytes]) -> np.ndarray:
    """Per line, whether it is neither too large nor possibly too deep (more brackets than the
    depth limit): such a line is left to the row path, which says which."""
    lengths = np.fromiter(map(len, lines), np.int64, len(lines))
    brackets = np.frombuffer(block.translate(_BRACKETS), np.uint8) >= 128
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
    if whole is not None:
        lines, rows, at = None, whole.rows, list(range(len(whole.rows)))
        n_lines = len(rows)
    else:
        lines = line_blocks.split_lines(block)
        n_lines = len(lines)
        fit = within_limits(block, lines)
        rows, at = decode(lines, np.flatnonzero(fit).tolist(), typed._DECODERS[schema], block)
    fits = spec.without_tools(rows)
    if fits is not None:
        rows = [r for r, f in zip(rows, fits) if f]
        at = [i for i, f in zip(at, fits) if f]
    at = np.array(at, np.int64)
    clean = np.zeros(n_lines, bool)
    keys = np.zeros(n_lines, np.int64)
    if rows:
        ok, row_keys = _check_decoded(rows, spec)
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


def _check_decoded(rows: list[Any], spec: _Schema) -> tuple[np.ndarray, np.ndarray]:
    """(clean, key) per decoded row. A text that is not its own normalized form (a newline,
    a tab, two spaces, a space at an edge, a character beyond ASCII) is normalized on its own
    for the key; a row goes to the row path for what the row path may find in its texts: an
    empty one (``empty-content``) or ``{{`` (a placeholder, maybe), or a blank system turn
    to lift out."""
    turns = list(map(spec.turns, rows))
    counts = np.fromiter(map(len, turns), np.int64, len(turns))
    offsets = np.zeros(len(rows) + 1, np.int64)  # each row's turns
    np.cumsum(counts, out=offsets[1:])
    texts = _Strings(list(map(spec.text, chain.from_iterable(turns))))
    raw_roles = map(spec.role, chain.from_iterable(turns))
    roles = np.fromiter(map(spec.role_number.__getitem__, raw_roles), np.int64, len(texts))
    # ``row.system or None``: an empty system is none
    systems = _Strings([s or "" for s in map(spec.system, rows)] if spec.system else [""] * len(rows))
    # the readers' rule: with no top-level system, a system turn first is the system
    first = offsets[:-1]
    shift = (counts > 0) & (systems.lengths == 0)
    shift[shift] = roles[first[shift]] == _SYSTEM
    odd = np.concatenate([[0], np.cumsum(texts.empty_or_braces())])
    ok = (odd[offsets[1:]] == odd[first]) & ~systems.braces()
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
    """Decoded strings, and as one ASCII buffer with offsets for numpy to read: each string
    that is not ASCII stands in it as ``"\\x00"`` (so ``lengths`` are lengths in the buffer;
    0 still means empty).

    A string is unusual when it may not be its own normalized form (``" ".join(s.split())``,
    the duplicate key's) or may hold ``{{``: a character beyond ASCII or below the space, two
    spaces in a row, a space at an edge, or ``{{``. Only those are normalized one by one, into
    ``normalized`` (place -> text); Python's ``str.split`` knows 29 whitespace characters
    (``\\x1c``, ``\\x85``, ``\\u3000``, ...), and none of them can be in a string that is
    not unusual."""

    def __init__(self, strings: list[str]):
        joined = "".join(strings)
        in_buffer = strings
        if not joined.isascii():
            in_buffer = [s if s.isascii() else "\x00" for s in strings]
            joined = "".join(in_buffer)
        self.strings = strings
        self.data = joined.encode("ascii")
        self.lengths = np.fromiter(map(len, in_buffer), np.int64, len(strings))
        self.offsets = np.zeros(len(strings) + 1, np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        unusual = np.flatnonzero(self._irregular() | self._edge_space()).tolist()
        # the unusual ones, normalized (most files: none, or the texts with a newline)
        self.normalized = {i: " ".join(strings[i].split()) for i in unusual}

    def _irregular(self) -> np.ndarray:
        """Per string, whether it holds a control character (or stands for a non-ASCII
        string), two spaces in a row or ``{{``; a pair across two strings marks the first."""
        out = np.zeros(len(self), bool)
        if not self.data or not _maybe_irregular(self.data):
            return out
        flags = np.frombuffer(self.data.translate(_TEXT_FLAGS), np.uint8)
        bad = np.empty(len(flags), bool)
        np.not_equal((flags[:-1] & flags[1:] & 3) | (flags[:-1] & 4), 0, out=bad[:-1])
        bad[-1] = flags[-1] & 4
        # per string, any of its bytes (an empty string has none: reduceat would give the next's)
        some = self.lengths > 0
        out[some] = np.logical_or.reduceat(bad, self.offsets[:-1][some])
        return out

    def _edge_space(self) -> np.ndarray:
        """Per string, whether it starts or ends with a space."""
        out = np.zeros(len(self), bool)
        if not self.data:
            return out
        raw = np.frombuffer(self.data, np.uint8)
        some = self.lengths > 0
        out[some] = (raw[self.offsets[:-1][some]] == 32) | (raw[self.offsets[1:][some] - 1] == 32)
        return out

    def __len__(self) -> int:
        return len(self.lengths)

    def braces(self) -> np.ndarray:
        """Per string, whether it holds ``{{`` (only an unusual one can)."""
        out = np.zeros(len(self), bool)
        for i in self.normalized:
            out[i] = "{{" in self.strings[i]
        return out

    def empty_or_braces(self) -> np.ndarray:
        """Per string, whether it is empty once normalized (the row path's ``empty-content``:
        ``str.strip`` and ``str.split`` know the same whitespace) or holds ``{{``."""
        out = self.lengths == 0
        for i, text in self.normalized.items():
            out[i] = not text or "{{" in self.strings[i]
        return out

    def hashes(self) -> np.ndarray:
        """Per string, ``hash`` of its normalized form, as unsigned 64-bit numbers."""
        out = np.fromiter(map(hash, self.strings), np.int64, len(self))
        for i, text in self.normalized.items():
            out[i] = hash(text)
        return out.view(np.uint64)


def _keys(texts: _Strings, systems: _Strings, roles: np.ndarray, offsets: np.ndarray,
          shift: np.ndarray, kept: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """:func:`typed.duplicate_key` per row: the normalized pieces'
    hashes (system, then role and text per turn) weighted by their places and summed per row,
    in 64-bit numbers that wrap as :func:`typed.pieces_key`'s do. ``rank``: each turn's place
    among its row's turns after the system."""
    with np.errstate(over="ignore"):
        text_hash = texts.hashes()
        # the system piece: the top-level one, or the first turn's text when it was lifted out
        system_hash = systems.hashes()
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
