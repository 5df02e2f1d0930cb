"""The fast path of ``data validate``: a row decoded by msgspec straight into typed structs,
checked on those structs once, for the rows that are plainly well formed.

Most rows of a real file are plain chat turns: strings under known roles, no tool calls, no
per-turn extras. msgspec checks all of that in C while it decodes, so what is left in
Python is the shape of the conversation (looked up by its sequence of roles: a file has few
distinct ones), empty turns, placeholders and the duplicate key. Every row that does not fit
the structs, for any reason, goes through the schema reader and :func:`check_conversation`
as before, so the findings are the same by construction: the structs only ever accept rows
for which the reader would have found nothing, and the shape verdict comes from
:func:`check_conversation` itself. ``tests/test_fast_validate.py`` compares both paths on a
file with every finding code.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, NamedTuple

import msgspec

from gekro_ft.data.checks import check_conversation, placeholder_problems
from gekro_ft.data.conversation import Conversation, Turn, normalized_pieces
from gekro_ft.data.schemas.fields import Problems


class _ShareGPTTurn(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    from_: Literal["human", "user", "gpt", "assistant", "model", "system"] = msgspec.field(name="from")
    value: str


# gc=False: decoded JSON cannot hold a reference cycle, and a block of rows untracked spares
# the collector a pass over every turn (about 10 % of the block path's time)
class _ShareGPTRow(msgspec.Struct, gc=False):  # other top-level keys (ids, tags): not checked
    conversations: list[_ShareGPTTurn]
    system: str | None = None
    tools: Any = None


class _OpenAIMessage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class _OpenAIRow(msgspec.Struct, gc=False):
    messages: list[_OpenAIMessage]
    tools: Any = None
    functions: Any = None


_SHAREGPT_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "system": "system"}
_OPENAI_ROLE = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_DECODERS = {"sharegpt": msgspec.json.Decoder(_ShareGPTRow), "openai": msgspec.json.Decoder(_OpenAIRow)}
SCHEMAS = tuple(_DECODERS)


class Plain(NamedTuple):
    """A plainly well-formed row as the checks need it: no objects per turn."""

    system: str | None
    roles: tuple[str, ...]
    texts: list[str]

    def conversation(self, extra: dict[str, Any] | None = None) -> Conversation:
        """As the schema reader would have read it (``extra``: the row's other top-level fields)."""
        return Conversation([Turn(r, t) for r, t in zip(self.roles, self.texts)], self.system,
                            extra={} if extra is None else extra)


def plain_row(raw: bytes, schema: str | None) -> Plain | None:
    """A JSONL line when it is plainly well formed in ``schema``, else None (then the schema
    reader must read it and say what is wrong)."""
    if schema not in _DECODERS or unchecked_by_structs(raw):  # alpaca, or rows read by shape
        return None
    try:
        row = _DECODERS[schema].decode(raw)
    except msgspec.DecodeError:  # invalid JSON, a wrong type, an unknown role or turn key
        return None
    if schema == "sharegpt":
        if row.tools not in (None, ""):
            return None
        roles = [_SHAREGPT_ROLE[t.from_] for t in row.conversations]
        texts = [t.value for t in row.conversations]
        system = row.system or None
    else:
        if row.tools is not None or row.functions is not None:
            return None
        roles = [_OPENAI_ROLE[m.role] for m in row.messages]
        texts = [m.content for m in row.messages]
        system = None
    # the readers' rule: a system turn first (and, in ShareGPT, no top-level one) is the system
    if system is None and roles and roles[0] == "system":
        system = texts[0]
        roles, texts = roles[1:], texts[1:]
    return Plain(system, tuple(roles), texts)


# digits as 0, exponent marks as e, signs as +: a number too large for a double shows as
# e000 or e+000 (an exponent of three digits) or as a run of 100 digits (with an exponent of
# at most two digits, a finite double has fewer than 310)
_NUMBER_SHAPE = bytes(48 if c in b"0123456789" else 101 if c in b"eE" else 43 if c in b"+-" else 32
                      for c in range(256))


def unchecked_by_structs(raw: bytes) -> bool:
    """Whether the line may hold what msgspec skips unchecked in the fields the structs do not
    read (ids, tags) but orjson, the schema reader's parser, refuses: invalid UTF-8 (surrogates
    written out, overlong forms), or a number too large for a double (``1e400``). Such a row
    goes to the schema reader, which says ``invalid-json`` as the row-by-row path does."""
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return True
    shape = raw.translate(_NUMBER_SHAPE)
    return b"e000" in shape or b"e+000" in shape or b"0" * 100 in shape


@lru_cache(maxsize=4096)
def _shape_problems(roles: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """What :func:`check_conversation` says about a conversation of these roles whose turns all
    have text without placeholders: it depends on nothing else."""
    return tuple(check_conversation(Conversation([Turn(r, "x") for r in roles])))


def check_plain(row: Plain, raw: bytes) -> Problems:
    """:func:`check_conversation` for a row from :func:`plain_row` (no tool calls), with its
    shape looked up rather than worked out again."""
    if not all(t.strip() for t in row.texts):  # empty turns interleave: the full check
        return check_conversation(row.conversation())
    problems = list(_shape_problems(row.roles))
    # '{' may be written \u007b in JSON; without either, the text holds no placeholder
    if b"{{" in raw or b"\\u007" in raw:
        problems.extend(placeholder_problems(row.conversation()))
    return problems


def duplicate_key(row: Plain | Conversation) -> int:
    """The row's key for finding duplicates: :func:`pieces_key` of its normalized pieces
    (:func:`conversation.normalized_pieces`). A str hash is salted per interpreter, so workers
    whose keys must agree are forked from one process or started with one ``PYTHONHASHSEED``
    (:mod:`chunks`).

    Not ``hash(normalized_text)``: a block of rows (:mod:`columnar`) gets the same key from
    its pieces' own hashes, combined with numpy, without joining every row's texts into one
    string and splitting it again (a third of the block path's checks)."""
    if isinstance(row, Plain):
        pieces = normalized_pieces(row.system, ((r, t, None) for r, t in zip(row.roles, row.texts)))
    else:
        pieces = normalized_pieces(row.system, ((t.role, t.text, t.tool_calls) for t in row.turns))
    return pieces_key(pieces)


_MASK = (1 << 64) - 1


def pieces_key(pieces: list[str]) -> int:
    """``sum(hash(piece) * weight(place)) mod 2**64`` as a signed 64-bit number: equal for equal
    piece lists; for different ones, equal only by a collision of 64-bit hashes (each weight
    is odd, so a place's term differs whenever its piece's hash does)."""
    total = 0
    for place, piece in enumerate(pieces):
        total = (total + (hash(piece) & _MASK) * piece_weight(place)) & _MASK
    return total - (1 << 64) if total >> 63 else total


@lru_cache(maxsize=1024)
def piece_weight(place: int) -> int:
    """A fixed odd 64-bit weight per place (splitmix64 of it): the same in every process."""
    z = (place * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) | 1
