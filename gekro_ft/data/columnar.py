"""``data validate``'s checks on a block of JSONL lines at once, for the rows that are plainly
clean; every other row is left to the row-by-row fast path (:mod:`typed`), so the findings
stay its findings.

Per row, Python now does one thing: msgspec decodes the line into the same structs as
:func:`typed.plain_row`. Everything else is done per block, in C:

- **the bytes** (numpy, one pass with a lookup table): a line is left to the row path when it
  holds any byte outside printable ASCII (a control character, UTF-8 beyond ASCII), a JSON
  escape that can make whitespace or a brace (``\\t \\n \\r \\f \\u``), two spaces in a row,
  or ``{{``. What is left decodes to texts whose only whitespace is single spaces, and
  without a placeholder. This is where exactness comes from: Python's ``str.split()``
  knows 29 whitespace characters (``\\x1c``, ``\\x85``, ``\\u3000``, ...) that Arrow's
  whitespace kernels do not all agree on, so no Arrow whitespace kernel is used; a row that
  could hold one goes through ``str.split`` itself.
- **the texts** (pyarrow): a text that is empty or starts or ends with a space sends its row to
  the row path (``empty-content``, or a key that needs normalizing). Every other text is
  already its own ``" ".join(text.split())``, so the duplicate key is the hash of the texts
  joined as :func:`conversation.normalized_turns` joins them (``binary_join`` per row).
- **the shape**: each row's roles as a string (``"sua"``); the distinct strings of a block
  (a handful) get :func:`typed._shape_problems`'s verdict; a row with any goes to the row path.

Measured on the benchmark's rows (``benchmarks/README.md``): the per-row Python work that was
left (whitespace splitting for the key, building ``Plain`` rows, checking them) is what this
removes; msgspec decoding stays, as the one place acceptance is decided.
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gekro_ft.data import limits, typed

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
_FLAGS[ord(" ")], _FLAGS[ord("{")], _FLAGS[ord("\\")], _FLAGS[ord("[")] = 1 | 8, 2 | 16 | 128, 4, 128
for _c in b"tnrfu":
    _FLAGS[_c] = 32
_FLAGS = bytes(_FLAGS)

_ROLE_LETTER = {"user": "u", "assistant": "a", "system": "s"}
_LETTER_ROLE = {v: k for k, v in _ROLE_LETTER.items()}
_ROLE_NAMES = list(_ROLE_LETTER)  # a role's number is its place here


class _Schema:
    """Where a typed row keeps its turns, roles, texts and top-level system."""

    def __init__(self, turns: str, role: str, text: str, roles: dict[str, str], system: bool,
                 no_tools: Any):
        self.turns, self.role, self.text = attrgetter(turns), attrgetter(role), attrgetter(text)
        self.system = attrgetter("system") if system else None
        self.no_tools = no_tools  # rows with tools: the row path says why (or reads them)
        self.raw_roles = pa.array(list(roles))
        self.canonical = np.array([_ROLE_NAMES.index(r) for r in roles.values()], np.int64)


_SCHEMAS = {
    "sharegpt": _Schema("conversations", "from_", "value", typed._SHAREGPT_ROLE, True,
                        lambda r: r.tools is None or r.tools == ""),
    "openai": _Schema("messages", "role", "content", typed._OPENAI_ROLE, False,
                      lambda r: r.tools is None and r.functions is None),
}
SCHEMAS = tuple(_SCHEMAS)
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
    brackets = np.bincount(np.searchsorted(ends, np.flatnonzero(flags >= 128), side="right"),
                           minlength=len(lines))
    plain &= brackets[:len(lines)] <= limits.MAX_DEPTH
    return plain


def clean_rows(block: bytes, lines: list[bytes], schema: str) -> tuple[np.ndarray, np.ndarray]:
    """(clean, keys) per line: whether the line is a row the row path would find nothing in,
    and for those, its duplicate key (:func:`typed.duplicate_key`'s value)."""
    spec = _SCHEMAS[schema]
    plain = plain_lines(block, lines)
    rows, at = _decode(block, lines, plain, typed._DECODERS[schema])
    fits = [spec.no_tools(r) for r in rows]  # rows with tools: the row path says why (or reads them)
    rows = [r for r, f in zip(rows, fits) if f]
    at = np.array(at, np.int64)[np.array(fits, bool)] if at else np.zeros(0, np.int64)
    clean = np.zeros(len(lines), bool)
    keys = np.zeros(len(lines), np.int64)
    if rows:
        ok, row_keys = _check_decoded(rows, spec)
        clean[at[ok]] = True
        keys[at] = row_keys
    return clean, keys


def _decode(block: bytes, lines: list[bytes], plain: np.ndarray,
            decoder: msgspec.json.Decoder) -> tuple[list[Any], list[int]]:
    """The plain lines that decode into the structs, and their places: a batch of lines at a
    time (``decode_lines``), one at a time for a batch that holds a line that does not fit.

    A batch decodes to as many values as it has lines only when each value is one whole line
    (``decode_lines`` allows nothing but whitespace after a value on its line, and a value
    that spanned lines, or a blank line, would leave fewer), so a line decoded in a batch is
    decoded as it would be alone."""
    rows: list[Any] = []
    at: list[int] = []
    every = np.flatnonzero(plain).tolist()
    for b in range(0, len(every), _BATCH):
        batch = every[b:b + _BATCH]
        try:
            values = decoder.decode_lines(b"\n".join([lines[i] for i in batch]))
        except msgspec.DecodeError:
            values = None
        if values is not None and len(values) == len(batch):
            rows += values
            at += batch
            continue
        for i in batch:
            try:
                rows.append(decoder.decode(lines[i]))
                at.append(i)
            except msgspec.DecodeError:  # not the structs' shape (or blank): the row path says why
                pass
    return rows, at


def _check_decoded(rows: list[Any], spec: _Schema) -> tuple[np.ndarray, np.ndarray]:
    """(clean, key) per decoded row whose bytes are plain."""
    turns = list(map(spec.turns, rows))
    counts = np.fromiter(map(len, turns), np.int64, len(turns))
    offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    texts = pa.array(list(map(spec.text, chain.from_iterable(turns))), pa.string())
    roles = spec.canonical[pc.index_in(pa.array(list(map(spec.role, chain.from_iterable(turns))), pa.string()),
                                       value_set=spec.raw_roles).to_numpy(zero_copy_only=False)]
    systems = pa.nulls(len(rows), pa.string())
    if spec.system is not None:  # ``row.system or None``: an empty system is none
        systems = pa.array(list(map(spec.system, rows)), pa.string())
        systems = pc.if_else(pc.equal(systems, ""), pa.scalar(None, pa.string()), systems)
    # the readers' rule: with no top-level system, a system turn first is the system
    first = offsets[:-1]
    shift = (counts > 0) & pc.is_null(systems).to_numpy(zero_copy_only=False)
    shift[shift] = roles[first[shift]] == _ROLE_NAMES.index("system")
    # a text empty or with a space at an edge: the row path (empty-content, or normalizing)
    odd = ((pc.binary_length(texts).to_numpy(zero_copy_only=False) == 0)
           | _edge_space(texts)).astype(np.int64)
    odd_sum = np.concatenate([[0], np.cumsum(odd)])
    ok = (odd_sum[offsets[1:]] == odd_sum[offsets[:-1]]) & ~_edge_space(pc.fill_null(systems, "x"))
    # the shape, by the roles after the system turn
    kept = np.ones(len(roles), bool)
    kept[first[shift]] = False
    letters = np.array(list("uas"))[roles]
    shapes = pc.binary_join(pa.ListArray.from_arrays(
        pa.array((offsets - np.concatenate([[0], np.cumsum(shift)])).astype(np.int32)),
        pa.array(letters[kept])), "")
    encoded = pc.dictionary_encode(shapes)
    bad_shape = np.array([bool(typed._shape_problems(tuple(_LETTER_ROLE[c] for c in s)))
                          for s in encoded.dictionary.to_pylist()], bool)
    ok &= ~bad_shape[encoded.indices.to_numpy(zero_copy_only=False)]
    return ok, _keys(texts, systems, roles, offsets, shift, kept)


def _edge_space(texts: pa.Array) -> np.ndarray:
    return pc.or_(pc.starts_with(texts, " "), pc.ends_with(texts, " ")).to_numpy(zero_copy_only=False)


def _keys(texts: pa.Array, systems: pa.Array, roles: np.ndarray, offsets: np.ndarray,
          shift: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``hash(normalized_turns(system, turns))`` per row, its texts being normalized already:
    the pieces [system, role, text, role, text, ...] joined by ``\\x1f``, built with one ``take``."""
    n_rows, n_turns = len(systems), len(texts)
    pieces = pa.concat_arrays([pc.fill_null(systems, ""), pa.array(_ROLE_NAMES), texts])
    kept_per_row = np.diff(offsets) - shift
    starts = np.zeros(n_rows + 1, np.int64)
    np.cumsum(1 + 2 * kept_per_row, out=starts[1:])
    take = np.empty(starts[-1], np.int64)
    # the system piece: the top-level one, or the first turn's text when it was shifted out
    take[starts[:-1]] = np.where(shift, n_rows + 3 + offsets[:-1], np.arange(n_rows))
    turn_row = np.repeat(np.arange(n_rows), np.diff(offsets))[kept]
    turn_idx = np.flatnonzero(kept)
    rank = turn_idx - offsets[:-1][turn_row] - shift[turn_row]
    at = starts[:-1][turn_row] + 1 + 2 * rank
    take[at] = n_rows + roles[kept]
    take[at + 1] = n_rows + 3 + turn_idx
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(starts.astype(np.int32)),
                                                     pieces.take(pa.array(take))), "\x1f")
    return np.fromiter(map(hash, joined.to_pylist()), np.int64, n_rows)
