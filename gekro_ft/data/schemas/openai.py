"""OpenAI chat fine-tuning rows: ``{"messages": [{"role", "content", ...}], "tools": [...]}``."""

from __future__ import annotations

from typing import Any

from gekro_ft.data.conversation import Conversation, ToolCall, Turn, join_parts, positional_id
from gekro_ft.data.schemas.fields import Problems, arguments_text, text_field, weight_field

NAME = "openai"
KEYS = ("messages",)  # a row with none of these is not of this schema
TOP_LEVEL = ("messages", "tools", "functions", "parallel_tool_calls")
MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "weight",
                "function_call", "refusal"}
# "developer" is the newer spelling of "system"; "function" the legacy tool result.
ROLE_MAP = {"system": "system", "developer": "system", "user": "user",
            "assistant": "assistant", "tool": "tool", "function": "tool"}


def matches(row: dict) -> bool:
    msgs = row.get("messages")
    return isinstance(msgs, list) and (not msgs or not isinstance(msgs[0], dict)
                                       or "from" not in msgs[0])


def read(row: dict) -> tuple[Conversation | None, Problems]:
    problems: Problems = []
    msgs = row.get("messages")
    if msgs is None:
        return None, [("missing-field", "row has no 'messages'")]
    if not isinstance(msgs, list):
        return None, [("wrong-type", f"'messages' is {type(msgs).__name__}, not a list")]
    tools = row.get("tools", row.get("functions"))
    conv = Conversation(turns=[], tools=tools, extra=extra_fields(row))
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            problems.append(("wrong-type", f"{where} is {type(m).__name__}, not an object"))
            continue
        if not MESSAGE_KEYS.issuperset(m):
            for key in (k for k in m if k not in MESSAGE_KEYS):  # row order, not a set's (salted)
                problems.append(("unrecognized-key", f"{where} has unrecognized key '{key}'"))
        raw_role = m.get("role")
        if raw_role is None:
            problems.append(("missing-field", f"{where} has no 'role'"))
            continue
        role = ROLE_MAP.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            problems.append(("unknown-role", f"{where} role {raw_role!r} is not one of "
                                             "system, user, assistant, tool"))
            continue
        turn = _read_turn(m, role, where, problems)
        if turn is None:
            continue
        if role == "system" and i == 0 and turn.content is not None:
            conv.system = turn.content
        else:
            conv.turns.append(turn)
    return conv, problems


def extra_fields(row: dict) -> dict[str, Any]:
    """The row's top-level fields that OpenAI's format does not define, carried through unchanged."""
    return {k: v for k, v in row.items() if k not in TOP_LEVEL}


def _read_turn(m: dict, role: str, where: str, problems: Problems) -> Turn | None:
    tool_calls = _read_tool_calls(m, where, problems) if role == "assistant" else None
    content, parts = _read_content(m, where, problems, required=not tool_calls)
    if content is None and not tool_calls:
        return None
    tool_call_id = m.get("tool_call_id")
    name = m.get("name")
    return Turn(role=role, content=content, parts=parts, tool_calls=tool_calls,
                tool_call_id=tool_call_id if isinstance(tool_call_id, str) else None,
                name=name if isinstance(name, str) else None,
                weight=weight_field(m, where, problems))


def _read_content(m: dict, where: str, problems: Problems, required: bool):
    content = m.get("content")
    if isinstance(content, list):  # content parts: only text is trainable here
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                problems.append(("non-string-content",
                                 f"{where} content[{j}] is {kind!r}; only text parts are supported"))
                return None, None
        return join_parts(texts), tuple(texts) if len(texts) > 1 else None
    return text_field(m, "content", where, problems, required=required), None


def _read_tool_calls(m: dict, where: str, problems: Problems) -> list[ToolCall] | None:
    raw = m.get("tool_calls")
    if raw is None and isinstance(m.get("function_call"), dict):  # legacy single call
        raw = [{"function": m["function_call"]}]
    if raw is None:
        return None
    if not isinstance(raw, list):
        problems.append(("invalid-tool-call", f"{where} tool_calls is not a list"))
        return None
    calls = []
    for j, c in enumerate(raw):
        cw = f"{where} tool_calls[{j}]"
        fn = c.get("function") if isinstance(c, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(("invalid-tool-call", f"{cw} has no function name"))
            continue
        args = arguments_text(fn.get("arguments", "{}"), cw, problems)
        if args is not None:
            calls.append(ToolCall(name=name, arguments=args, id=c.get("id")))
    return calls or None


def write(conv: Conversation) -> tuple[dict[str, Any], list[str]]:
    """Return the row and what could not be carried (always nothing: OpenAI holds everything)."""
    messages: list[dict[str, Any]] = []
    if conv.system is not None:
        messages.append({"role": "system", "content": conv.system})
    n_calls = 0
    for t in conv.turns:
        m: dict[str, Any] = {"role": t.role}
        if t.parts:
            m["content"] = [{"type": "text", "text": p} for p in t.parts]
        else:
            m["content"] = t.content
        if t.tool_calls:
            m["tool_calls"] = []
            for c in t.tool_calls:
                m["tool_calls"].append({"id": c.id or positional_id(n_calls), "type": "function",
                                        "function": {"name": c.name, "arguments": c.arguments}})
                n_calls += 1
        if t.tool_call_id is not None:
            m["tool_call_id"] = t.tool_call_id
        if t.name is not None:
            m["name"] = t.name
        if t.weight is not None:
            m["weight"] = t.weight
        messages.append(m)
    row: dict[str, Any] = {"messages": messages}
    if conv.tools is not None:
        row["tools"] = conv.tools
    row.update(conv.extra)
    return row, []
