"""What recipes, pipeline files and serving profiles share: reading a YAML mapping with a
message that names the line, and applying ``--set a.b=value`` overrides to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The YAML mapping in ``path``; ValueError with a one-line reason when it is not one."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"the top level must be a mapping of {what}")
    return doc


def parse_override(item: str) -> tuple[list[str], Any]:
    """``train.max_steps=20`` -> (["train", "max_steps"], 20); the value is read as YAML."""
    if "=" not in item:
        raise ValueError(f"{item!r} is not key=value (e.g. train.max_steps=20)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(doc: dict[str, Any], overrides: list[str]) -> None:
    """Set each ``a.b=value`` in ``doc``, creating sections; ValueError naming a bad one."""
    for item in overrides:
        keys, value = parse_override(item)
        node = doc
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ValueError(f"{item!r}: {k} is not a section")
        node[keys[-1]] = value
