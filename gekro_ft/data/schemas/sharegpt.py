"""ShareGPT rows: ``{"conversations": [{"from", "value"}], "system": ..., "tools": ...}``.

Tool use follows LLaMA-Factory's convention: a ``function_call`` turn whose value is
the JSON of ``{"name", "arguments"}`` (or a list of them for parallel calls), answered
by ``observation`` turns. We also keep a call's ``id`` inside that JSON and a turn's
``weight`` and ``name`` as extra keys, so openai -> sharegpt -> openai is exact.

A call without an id gets the positional one, ``call_N`` for the conversation's Nth call
(:func:`positional_id`), because OpenAI needs an id to link a result to its call. The writer
leaves out exactly that id again: it says nothing the position does not, so
sharegpt -> openai -> sharegpt gives back rows without ids, and real ids survive.
"""

from __future__ import annotations

import json
from typing import Any

from gekro_ft.data.conversation import Conversation, ToolCall, Turn, positional_id
from gekro_ft.data.limits import loads_nested_json, not_json
from gekro_ft.data.schemas.fields import (Problems, arguments_text, arguments_value, text_field,
                                          weight_field)

NAME = "sharegpt"
KEYS = ("conversations", "messages")  # a row with none of these is not of this schema
TOP_LEVEL = ("conversations", "system", "tools")
TURN_KEYS = {"from", "value", "weight", "name"}
ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
            "model": "assistant", "system": "system", "function_call": "function_call",
            "observation": "tool", "tool": "tool", "function": "tool"}


def matches(row: dict) -> bool:
    if isinstance(row.get("conversations"), list):
        return True
    msgs = row.get("messages")
    return isinstance(msgs, list) and bool(msgs) and isinstance(msgs[0], dict) and "from" in msgs[0]


def read(row: dict) -> tuple[Conversation | None, Problems]:
    problems: Problems = []
    key = "conversations" if "conversations" in row or "messages" not in row else "messages"
    turns = row.get(key)
    if turns is None:
        return None, [("missing-field", "row has no 'conversations'")]
    if not isinstance(turns, list):
        return None, [("wrong-type", f"'{key}' is {type(turns).__name__}, not a list")]
    conv = Conversation(turns=[], extra=extra_fields(row, key))
    conv.system = text_field(row, "system", "row", problems, required=False) or None
    conv.tools = _read_tools(row.get("tools"), problems)
    pending_ids: list[str] = []  # ids of the last tool calls, answered in order
    n_calls = 0
    for i, t in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(t, dict):
            problems.append(("wrong-type", f"{where} is {type(t).__name__}, not an object"))
            continue
        if not TURN_KEYS.issuperset(t):  # no set built for the usual two-key turn
            for k in (k for k in t if k not in TURN_KEYS):  # row order, not a set's (salted)
                problems.append(("unrecognized-key", f"{where} has unrecognized key '{k}'"))
        raw_role = t.get("from")
        if raw_role is None:
            problems.append(("missing-field", f"{where} has no 'from'"))
            continue
        role = ROLE_MAP.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            problems.append(("unknown-role", f"{where} from {raw_role!r} is not one of human, gpt, "
                                             "system, function_call, observation"))
            continue
        value = text_field(t, "value", where, problems)
        if value is None:
            continue
        weight = weight_field(t, where, problems)
        name = t.get("name") if isinstance(t.get("name"), str) else None
        if role == "function_call":
            calls = _read_calls(value, where, problems, n_calls)
            if calls is None:
                continue
            n_calls += len(calls)
            pending_ids = [c.id for c in calls]
            prev = conv.turns[-1] if conv.turns else None
            # A gpt turn directly before its function_call is one assistant message.
            if prev is not None and prev.role == "assistant" and not prev.tool_calls:
                prev.tool_calls = calls
            else:
                conv.turns.append(Turn("assistant", None, tool_calls=calls, weight=weight))
            continue
        if role == "system" and i == 0 and conv.system is None:
            conv.system = value
            continue
        turn = Turn(role, value, weight=weight, name=name)
        if role == "tool" and pending_ids:
            turn.tool_call_id = pending_ids.pop(0)
        conv.turns.append(turn)
    return conv, problems


def extra_fields(row: dict, key: str = "conversations") -> dict[str, Any]:
    """The row's top-level fields that ShareGPT does not define, carried through unchanged."""
    return {k: v for k, v in row.items() if k not in TOP_LEVEL and k != key}


def _read_tools(raw: Any, problems: Problems) -> list | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = loads_nested_json(raw)
        except ValueError as e:
            problems.append(("wrong-type", f"row 'tools' is a string but {not_json(e)}"))
            return None
    if not isinstance(raw, list):
        problems.append(("wrong-type", "row 'tools' is not a list"))
        return None
    return raw


def _read_calls(value: str, where: str, problems: Problems, first: int) -> list[ToolCall] | None:
    try:
        obj = loads_nested_json(value)
    except ValueError as e:
        problems.append(("invalid-tool-call", f"{where} function_call value is {not_json(e)}"))
        return None
    items = obj if isinstance(obj, list) else [obj]
    calls = []
    for j, c in enumerate(items):
        name = c.get("name") if isinstance(c, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(("invalid-tool-call", f"{where} call {j} has no function name"))
            return None
        args = arguments_text(c.get("arguments", {}), f"{where} call {j}", problems)
        if args is None:
            return None
        calls.append(ToolCall(name=name, arguments=args, id=c.get("id") or positional_id(first + j)))
    return calls


def write(conv: Conversation) -> tuple[dict[str, Any], list[str]]:
    dropped: list[str] = []
    out: list[dict[str, Any]] = []
    if conv.system is not None:
        out.append({"from": "system", "value": conv.system})
    n_calls = 0
    for t in conv.turns:
        if t.parts:
            dropped.append("content parts (joined into one value)")
        if t.role == "assistant":
            if t.content is not None:
                out.append(_turn("gpt", t.content, t))
            if t.tool_calls:
                calls = []
                for c in t.tool_calls:
                    call = {"name": c.name, "arguments": arguments_value(c.arguments)}
                    if c.id and c.id != positional_id(n_calls):  # a made-up id does not leak out
                        call["id"] = c.id
                    calls.append(call)
                    n_calls += 1
                value = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
                # the weight rides on the first turn that carries this message
                out.append(_turn("function_call", value, t if t.content is None else None))
        else:
            tag = {"user": "human", "system": "system", "tool": "observation"}[t.role]
            out.append(_turn(tag, t.text, t))
    row: dict[str, Any] = {"conversations": out}
    if conv.tools is not None:
        row["tools"] = json.dumps(conv.tools, ensure_ascii=False)
    row.update(conv.extra)
    return row, sorted(set(dropped))


def _turn(tag: str, value: str, src: Turn | None) -> dict[str, Any]:
    d: dict[str, Any] = {"from": tag, "value": value}
    if src is not None:
        if src.weight is not None:
            d["weight"] = src.weight
        if src.name is not None:
            d["name"] = src.name
    return d
