"""The canonical conversation: the one form every schema reader yields and every writer takes.

Kept deliberately plain (slotted dataclasses, no validation on construction): readers
build it from untrusted rows and report problems as findings, so the model itself must
be able to hold a conversation that is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


@dataclass(slots=True)
class ToolCall:
    name: str
    arguments: str  # a JSON document, as OpenAI sends it
    id: str | None = None


@dataclass(slots=True)
class Turn:
    role: str
    content: str | None
    # The content's text parts when the source kept them apart (OpenAI content parts,
    # Alpaca instruction + input); ``content`` is then their join. Writers that can
    # express parts use them, so alpaca -> openai -> alpaca is exact.
    parts: tuple[str, ...] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None  # on a tool result: the call it answers
    name: str | None = None
    weight: float | None = None  # per-turn train weight (OpenAI: 0 or 1 on assistant turns)

    @property
    def text(self) -> str:
        return self.content or ""


@dataclass(slots=True)
class Conversation:
    turns: list[Turn]
    system: str | None = None
    tools: list[Any] | None = None  # tool definitions (OpenAI `tools`)
    # Top-level fields of the source row that no schema defines (ids, tags...). Every
    # writer carries them through unchanged.
    extra: dict[str, Any] = field(default_factory=dict)

    def messages(self) -> list[dict[str, Any]]:
        """OpenAI-style message dicts, the shape chat templates expect."""
        out: list[dict[str, Any]] = []
        if self.system is not None:
            out.append({"role": "system", "content": self.system})
        for t in self.turns:
            m: dict[str, Any] = {"role": t.role, "content": t.text}
            if t.tool_calls:
                m["tool_calls"] = [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.name, "arguments": c.arguments}}
                    for c in t.tool_calls
                ]
            if t.tool_call_id is not None:
                m["tool_call_id"] = t.tool_call_id
            if t.name is not None:
                m["name"] = t.name
            out.append(m)
        return out

    def prompt(self) -> Conversation:
        """What the model is asked: the conversation up to (not including) its last assistant
        turn, or all of it when it has none."""
        last = max((i for i, t in enumerate(self.turns) if t.role == "assistant"), default=len(self.turns))
        return Conversation(self.turns[:last], self.system, self.tools, self.extra)

    def prompt_messages(self) -> list[dict[str, Any]]:
        """``prompt()`` as OpenAI-style message dicts: what a chat endpoint is sent."""
        return self.prompt().messages()


def positional_id(n: int) -> str:
    """The id a tool call without one gets: ``call_N`` for the conversation's Nth call (from 0).

    A target that needs ids (OpenAI) writes it; one that does not (ShareGPT) leaves exactly
    this id out again, so an id a conversion made up never leaks into a target without ids.
    """
    return f"call_{n}"


PART_SEPARATOR = "\n\n"


def join_parts(parts: list[str] | tuple[str, ...]) -> str:
    """How text parts become one message: the Alpaca convention of instruction, blank line, input."""
    return PART_SEPARATOR.join(p for p in parts if p)


def normalized_text(conv: Conversation) -> str:
    """Whitespace-insensitive identity of a conversation, for de-duplication and leakage checks."""
    return normalized_turns(conv.system, ((t.role, t.text, t.tool_calls) for t in conv.turns))


def normalized_turns(system: str | None, turns: Iterable[tuple[str, str, list[ToolCall] | None]]) -> str:
    """:func:`normalized_text` of a conversation given as (role, text, tool calls) triples."""
    return "\x1f".join(normalized_pieces(system, turns))


def normalized_pieces(system: str | None, turns: Iterable[tuple[str, str, list[ToolCall] | None]]) -> list[str]:
    """The pieces :func:`normalized_turns` joins: the system, then per turn its role, its text
    and its calls, whitespace runs made single spaces."""
    pieces = [" ".join((system or "").split())]
    for role, text, calls in turns:
        pieces.append(role)
        pieces.append(" ".join(text.split()))
        if calls:
            pieces.extend(f"{c.name}({c.arguments})" for c in calls)
    return pieces


def prompt_text(conv: Conversation) -> str:
    """The normalized ``conv.prompt()``: what the model is asked."""
    return normalized_text(conv.prompt())
