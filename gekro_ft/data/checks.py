"""Checks on the shape of one canonical conversation, the same for every schema."""

from __future__ import annotations

import re

from gekro_ft.data.conversation import Conversation
from gekro_ft.data.schemas.fields import Problems

# {{name}}, {{ user.name }}: a template variable that was never filled in.
PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][\w.\-]*\s*\}\}")


def check_conversation(conv: Conversation) -> Problems:
    problems: Problems = []
    turns = conv.turns
    roles = [t.role for t in turns]

    for i, t in enumerate(turns):
        if not t.text.strip() and not t.tool_calls:
            problems.append(("empty-content", f"turn {i} ({t.role}) is empty"))
        if t.role == "system":
            problems.append(("system-not-first", f"turn {i} is a system message after the conversation began"))
        if i and t.role == roles[i - 1] and t.role in ("user", "assistant"):
            problems.append(("consecutive-same-role", f"turns {i - 1} and {i} are both {t.role}"))

    problems.extend(_check_tool_results(conv))

    if "user" not in roles:
        problems.append(("no-user-turn", "the conversation has no user turn"))
    if "assistant" not in roles:
        problems.append(("no-assistant-turn", "the conversation has no assistant turn"))
    elif roles[-1] != "assistant":
        problems.append(("not-ending-on-assistant",
                         f"the last turn is {roles[-1]}; an assistant answer should end the row"))

    problems.extend(placeholder_problems(conv))
    return problems


def placeholder_problems(conv: Conversation) -> Problems:
    problems: Problems = []
    for where, text in [("system", conv.system or "")] + [(f"turn {i}", t.text) for i, t in enumerate(conv.turns)]:
        m = PLACEHOLDER.search(text)
        if m:
            problems.append(("template-placeholder", f"{where} contains the placeholder {m.group(0)}"))
    return problems


def _check_tool_results(conv: Conversation) -> Problems:
    problems: Problems = []
    open_calls: set[str | None] = set()  # calls not answered yet
    for i, t in enumerate(conv.turns):
        if t.tool_calls:
            open_calls = {c.id for c in t.tool_calls}
        elif t.role == "tool":
            if not open_calls:
                problems.append(("orphan-tool-result", f"turn {i} is a tool result but no tool call precedes it"))
            elif t.tool_call_id is not None and t.tool_call_id not in open_calls:
                problems.append(("orphan-tool-result",
                                 f"turn {i} answers tool call {t.tool_call_id!r}, which was not made"))
            else:
                open_calls.discard(t.tool_call_id)
        elif t.role in ("user", "assistant"):
            open_calls = set()
    return problems
