"""Small field readers shared by the schema readers, so every schema words its findings alike."""

from __future__ import annotations

import json
from typing import Any

from gekro_ft.data.limits import loads_nested_json, not_json

Problems = list[tuple[str, str]]  # (finding code, message)


def text_field(obj: dict, key: str, where: str, problems: Problems, *,
               required: bool = True) -> str | None:
    """Return ``obj[key]`` when it is a string; report it missing or mistyped otherwise."""
    if key not in obj or obj[key] is None:
        if required:
            problems.append(("missing-field", f"{where} has no '{key}'"))
        return None
    value = obj[key]
    if not isinstance(value, str):
        problems.append(("non-string-content",
                         f"{where} '{key}' is {type(value).__name__}, not a string"))
        return None
    return value


def weight_field(obj: dict, where: str, problems: Problems) -> float | None:
    if "weight" not in obj or obj["weight"] is None:
        return None
    w = obj["weight"]
    if isinstance(w, bool) or w not in (0, 1):
        problems.append(("invalid-weight", f"{where} weight is {w!r}; it must be 0 or 1"))
        return None
    return w


def arguments_text(value: Any, where: str, problems: Problems) -> str | None:
    """Tool-call arguments as the JSON text OpenAI carries: strings kept verbatim, objects dumped."""
    if isinstance(value, str):
        try:
            loads_nested_json(value)
        except ValueError as e:
            problems.append(("invalid-tool-call", f"{where} arguments are {not_json(e)}"))
            return None
        return value
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    problems.append(("invalid-tool-call",
                     f"{where} arguments are {type(value).__name__}, not a JSON object or string"))
    return None


def arguments_value(text: str) -> Any:
    """The inverse of :func:`arguments_text`: an object when that dumps back to the same text."""
    try:
        obj = loads_nested_json(text)
    except ValueError:
        return text
    return obj if isinstance(obj, dict) and json.dumps(obj, ensure_ascii=False) == text else text
