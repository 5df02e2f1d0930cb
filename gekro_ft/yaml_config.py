"""What recipes, pipeline files and serving profiles share: finding a file by path or by
name in a list of directories, reading a YAML mapping with a message that names the line,
and applying ``--set a.b=value`` overrides to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def named_configs(dirs: list[Path], skip: frozenset[str] = frozenset()) -> dict[str, Path]:
    """``*.yaml`` files by name (stem); a name in an earlier directory hides a later one."""
    seen: dict[str, Path] = {}
    for d in dirs:
        for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            if p.stem not in skip:
                seen.setdefault(p.stem, p)
    return seen


def find_config(name_or_path: str | Path, dirs: list[Path], skip: frozenset[str] = frozenset()) -> Path | None:
    """``name_or_path`` itself when it looks like a path (FileNotFoundError when it is not a
    file), else ``NAME.yaml``/``NAME.yml`` in the first of ``dirs`` holding it, else None."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(str(path))
        return path
    if str(name_or_path) in skip:
        return None
    for d in dirs:
        for suffix in (".yaml", ".yml"):
            if (d / f"{name_or_path}{suffix}").is_file():
                return d / f"{name_or_path}{suffix}"
    return None


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
