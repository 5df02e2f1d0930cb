"""Alpaca rows: ``{"instruction", "input", "output", "system"?, "history"?}``.

``history`` holds earlier ``[instruction, output]`` pairs (LLaMA-Factory's convention),
so multi-turn chats survive; tool use cannot be expressed and is refused per row.
"""

from __future__ import annotations

from typing import Any

from gekro_ft.data.conversation import Conversation, Turn, join_parts
from gekro_ft.data.schemas.fields import Problems, text_field

NAME = "alpaca"
KEYS = ("instruction", "output")  # a row with none of these is not of this schema
TOP_LEVEL = ("instruction", "input", "output", "system", "history")


class Unconvertible(Exception):
    """This conversation has no Alpaca form; the message says why."""


def matches(row: dict) -> bool:
    return "instruction" in row and "output" in row


def read(row: dict) -> tuple[Conversation | None, Problems]:
    problems: Problems = []
    instruction = text_field(row, "instruction", "row", problems)
    inp = text_field(row, "input", "row", problems, required=False) or ""
    output = text_field(row, "output", "row", problems)
    system = text_field(row, "system", "row", problems, required=False)
    turns: list[Turn] = []
    history = row.get("history") or []
    if not isinstance(history, list):
        problems.append(("wrong-type", "row 'history' is not a list of [instruction, output] pairs"))
        history = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            problems.append(("wrong-type", f"history[{i}] is not an [instruction, output] pair"))
            continue
        for role, value, field in (("user", pair[0], "instruction"), ("assistant", pair[1], "output")):
            if isinstance(value, str):
                turns.append(Turn(role, value))
            else:
                problems.append(("non-string-content",
                                 f"history[{i}] {field} is {type(value).__name__}, not a string"))
    if instruction is None or output is None:
        return None, problems
    parts = (instruction, inp) if inp else None
    turns.append(Turn("user", join_parts(parts) if parts else instruction, parts=parts))
    turns.append(Turn("assistant", output))
    extra = {k: v for k, v in row.items() if k not in TOP_LEVEL}
    return Conversation(turns=turns, system=system, extra=extra), problems


def write(conv: Conversation) -> tuple[dict[str, Any], list[str]]:
    """Raise :class:`Unconvertible` for tool use or turns out of user/assistant order."""
    dropped: list[str] = []
    turns = conv.turns
    if any(t.role in ("tool", "system") or t.tool_calls for t in turns):
        what = "tool calls" if any(t.role == "tool" or t.tool_calls for t in turns) \
            else "a system message after the first turn"
        raise Unconvertible(f"Alpaca cannot express {what}")
    roles = [t.role for t in turns]
    if len(turns) < 2 or roles != ["user", "assistant"] * (len(turns) // 2):
        raise Unconvertible("Alpaca needs alternating user/assistant turns ending on the assistant")
    if conv.tools:
        dropped.append("tools")
    if any(t.weight == 0 for t in turns):
        dropped.append("weight")
    if any(t.name is not None for t in turns):
        dropped.append("name")
    *earlier, user, assistant = turns
    instruction, inp = (user.parts[0], join_parts(user.parts[1:])) if user.parts else (user.text, "")
    row: dict[str, Any] = {"instruction": instruction, "input": inp, "output": assistant.text}
    if conv.system is not None:
        row["system"] = conv.system
    if earlier:
        row["history"] = [[earlier[i].text, earlier[i + 1].text] for i in range(0, len(earlier), 2)]
    row.update(conv.extra)
    return row, dropped
