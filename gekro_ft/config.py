"""Config files — recipes, eval suites, serving profiles, pipeline files, the price table:
where they are found, how they are read, and how their problems are reported.

- **Found** by path, or by name (``NAME`` -> ``NAME.yaml``) in ``./FOLDER``, then in the
  directories of ``$GEKRO_FT_…`` (``os.pathsep``-separated), then among the files shipped
  with gekro-ft. The shipped files are the repository's top-level ``recipes/``, ``eval/``,
  ``serve/``, ``pipelines/`` and ``datasets/``; the package reaches them as
  ``gekro_ft/shipped/…`` (links in a checkout, copies in the wheel), so every shipped name
  works after ``pip install`` from any directory.
- **Read** as a YAML mapping, one reader for every kind (:func:`read_yaml`): a syntax error names
  its line; a file over 1 MiB, or one whose aliases expand it past 100,000 values (a YAML
  "billion laughs"), is refused before it is expanded.
- **Relative paths** inside a file are relative to that file, whatever the working
  directory; ``--set`` values are the user's own typing and stay relative to where they are.
- **Validated** by a pydantic model: every problem at once, each naming its key, its line
  in the file when it has one, and for an unknown key the closest known one.
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gekro_ft.errors import ConfigError


def shipped(*parts: str) -> Path:
    """A file or folder shipped with gekro-ft, e.g. ``shipped("recipes")`` (links resolved, so a
    checkout names its own top-level folders)."""
    return Path(str(importlib.resources.files("gekro_ft").joinpath("shipped", *parts))).resolve()


def inside_package(path: str | Path) -> bool:
    """True for a file of an installed gekro-ft (site-packages: not a place to write beside)."""
    package = Path(str(importlib.resources.files("gekro_ft"))).resolve()
    return Path(path).resolve().is_relative_to(package)


@dataclass(frozen=True)
class ConfigKind:
    """One kind of config file and where files of that kind are looked for."""

    what: str  # how messages name it: "recipe", "serving profile", ...
    folder: str  # ./FOLDER first, the shipped FOLDER last
    env: str  # more directories
    error: type[ConfigError]
    skip: frozenset[str] = frozenset()  # stems in the folder that are not of this kind

    def dirs(self) -> list[Path]:
        extra = [Path(p) for p in os.environ.get(self.env, "").split(os.pathsep) if p]
        return [Path(self.folder), *extra, shipped(self.folder)]

    def named(self) -> dict[str, Path]:
        """``*.yaml`` files by name (stem); a name in an earlier directory hides a later one."""
        seen: dict[str, Path] = {}
        for d in self.dirs():
            for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
                if p.stem not in self.skip:
                    seen.setdefault(p.stem, p)
        return seen

    def find(self, name_or_path: str | Path) -> Path:
        """``name_or_path`` itself when it looks like a path, else ``NAME.yaml``/``.yml`` in the
        first of :meth:`dirs` holding it; the kind's error, naming what is known, otherwise."""
        path = Path(name_or_path)
        if path.suffix in (".yaml", ".yml") or os.sep in str(name_or_path) or path.exists():
            if not path.is_file():
                raise self.error(str(name_or_path), ["no such file"])
            return path
        if str(name_or_path) not in self.skip:
            for d in self.dirs():
                for suffix in (".yaml", ".yml"):
                    if (d / f"{name_or_path}{suffix}").is_file():
                        return d / f"{name_or_path}{suffix}"
        known = ", ".join(sorted(self.named())) or "none"
        raise self.error(str(name_or_path), [f"no {self.what} of that name (known: {known})"])

    def read(self, path: Path) -> ConfigFile:
        """The YAML mapping in ``path``, with where each key is (:func:`read_yaml`)."""
        return read_yaml(path, lambda problem: self.error(str(path), [problem]))

    def load(self, name_or_path: str | Path, model: type[BaseModel], overrides: Iterable[str] = (),
             paths: Iterable[str] = (), no_echo: Iterable[str] = ()) -> tuple[Any, Path]:
        """Find, read, resolve the relative ``paths`` (dotted keys, ``*`` for every key of a
        mapping) against the file, apply ``--set`` overrides, validate; returns (model, path)."""
        path = self.find(name_or_path)
        file = self.read(path)
        resolve_paths(file.doc, paths, path.parent)
        try:
            apply_overrides(file.doc, list(overrides))
        except ValueError as e:
            raise self.error("--set", [str(e)]) from None
        return validate(model, file.doc, str(path), self.error, file.lines, no_echo), path


@dataclass
class ConfigFile:
    path: Path
    doc: dict[str, Any]
    lines: dict[tuple[str, ...], int]  # key path -> 1-based line of the key


# A config file is a few KB (the largest shipped one, 2 KB, has under 200 values); these bounds are
# far above any real one and far below what exhausts a machine.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 100_000  # scalars, lists and mappings, counted through aliases


def read_yaml(path: Path, fail: Callable[[str], Exception]) -> ConfigFile:
    """The YAML mapping in ``path``, with where each key is; ``fail(problem)`` is the exception
    raised for a problem (it names the file).

    Guarded, since a config file can come from anywhere: at most :data:`MAX_CONFIG_BYTES`, and
    at most :data:`MAX_CONFIG_VALUES` values once its aliases are expanded. A kilobyte of nested
    anchors (``&a [x, x, ...]``, ``&b [*a, *a, ...]``, ...: "billion laughs") stands for 10^9
    values; PyYAML shares an alias's object rather than copying it, but everything that walks
    the result (line numbers, validation) walks every copy. So the node graph is composed first
    and its expanded size counted, once per node, before anything is constructed."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # not stat(): a device or a pipe has no size
    except OSError as e:
        raise fail(f"cannot read: {e.strerror or e}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise fail(f"larger than {MAX_CONFIG_BYTES >> 10} KiB: not a config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"not UTF-8 text (byte {e.start})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        problem = _expansion_problem(node) if node is not None else None
        if problem:
            raise fail(problem)
        doc = (loader.construct_document(node) if node is not None else None) or {}
        lines = _key_lines(node) if doc else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise fail(f"not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise fail("nested too deeply") from None
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        raise fail(f"the top level must be a mapping, not {type(doc).__name__}")
    return ConfigFile(path, doc, lines)


def _expansion_problem(root: yaml.Node) -> str | None:
    """Why the document under ``root`` is too large once its aliases are expanded (or refers to
    itself), or None. An alias is the very node it names, so each node's expanded size is
    computed once, from its children's (depth first, without recursion)."""
    size: dict[int, int] = {}
    open_: set[int] = set()  # the nodes on the current path
    todo: list[tuple[yaml.Node, bool]] = [(root, False)]
    while todo:
        node, children_done = todo.pop()
        if children_done:
            open_.discard(id(node))
            size[id(node)] = 1 + sum(size[id(c)] for c in _children(node))
            if size[id(node)] > MAX_CONFIG_VALUES:
                return (f"its aliases (*name) expand it past {MAX_CONFIG_VALUES:,} values "
                        f"(at line {node.start_mark.line + 1}); refused before expanding")
        elif id(node) in open_:
            return f"the collection at line {node.start_mark.line + 1} holds an alias to itself"
        elif id(node) not in size:
            open_.add(id(node))
            todo.append((node, True))
            todo.extend((c, False) for c in _children(node) if id(c) not in size)
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _key_lines(node: yaml.Node, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*prefix, str(key.value))
            lines[here] = key.start_mark.line + 1
            lines.update(_key_lines(value, here))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*prefix, str(i))] = item.start_mark.line + 1
            lines.update(_key_lines(item, (*prefix, str(i))))
    return lines


def is_path_like(value: Any, hub_ids: bool = False) -> bool:
    """A string meant as a file path rather than a name or a URI. Where a Hugging Face id
    (``org/name``) may stand (``hub_ids``), only ``./``, ``../``, ``/`` and ``~`` mark a path."""
    if not isinstance(value, str) or not value or ":" in value.split("/")[0]:
        return False  # empty, or a URI: models:/…, http://…, recording:…, openai:…
    if value.startswith(("./", "../", "/", "~")) or value in (".", ".."):
        return True
    return not hub_ids and ("/" in value or value.endswith((".yaml", ".yml", ".json", ".jsonl", ".gz",
                                                               ".parquet", ".jinja")))


def resolve_paths(doc: dict[str, Any], keys: Iterable[str], base: Path) -> None:
    """Make the relative paths at ``keys`` absolute against ``base``. A key is dotted (``a.b``),
    ``a.*`` for every value of a mapping, ``a[].b`` for ``b`` in every item of the list ``a``,
    and ends in ``?`` where a Hub id may stand instead."""
    for key in keys:
        hub_ids = key.endswith("?")
        *parents, last = key.removesuffix("?").split(".")
        nodes: list[Any] = [doc]
        for k in parents:  # ``name[]``: every item of the list at name
            nodes = [n.get(k.removesuffix("[]")) if isinstance(n, dict) else None for n in nodes]
            if k.endswith("[]"):
                nodes = [item for n in nodes if isinstance(n, list) for item in n]
        for node in nodes:
            if isinstance(node, dict):
                _resolve_in(node, last, hub_ids, base)


def _resolve_in(node: dict[str, Any], last: str, hub_ids: bool, base: Path) -> None:
    for k in (list(node) if last == "*" else [last]):
        value = node.get(k)
        if is_path_like(value, hub_ids) and not Path(value).expanduser().is_absolute():
            node[k] = str((base / value).resolve())
        elif isinstance(value, str) and value.startswith("~"):
            node[k] = str(Path(value).expanduser())


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


def validate(model: type[BaseModel], doc: Mapping[str, Any], source: str, error: type[ConfigError],
             lines: Mapping[tuple[str, ...], int] | None = None, no_echo: Iterable[str] = ()) -> Any:
    """``model`` validated from ``doc``; every problem in one ``error`` (see :func:`describe`)."""
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        problems = [describe(err, model, no_echo) for err in e.errors()]
        at = [(lines or {}).get(tuple(str(p) for p in err["loc"])) for err in e.errors()]
        raise error(source, problems, lines=at) from None


def describe(err: Mapping[str, Any], model: type[BaseModel] | None = None, no_echo: Iterable[str] = ()) -> str:
    """One pydantic error as ``key: message``: the value given when it is short and not under
    a ``no_echo`` key (where a secret may have been pasted), the closest known key for an
    unknown one."""
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        known = _fields_at(model, loc[:-1]) if model else []
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.7)
        return f"{key}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if err["type"] == "missing":
        return f"{key}: required"
    if not key:
        return message  # model-level checks name their keys themselves
    secret = any(key == k or key.startswith(k + ".") for k in no_echo)
    show = "input" in err and not isinstance(err["input"], (dict, list)) and not secret
    return f"{key}: {message} (got {err['input']!r})" if show else f"{key}: {message}"


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The keys a model accepts at ``loc`` (aliases as written in files), [] when unknown."""
    current: Any = model
    for part in loc:
        current = _model_in(current)
        if current is None:
            return []
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        current = field.annotation if field else None
    current = _model_in(current)
    return [f.alias or n for n, f in current.model_fields.items()] if current else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model inside an annotation such as ``X``, ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [m for a in typing.get_args(annotation) if (m := _model_in(a))]
        return models[0] if len(models) == 1 else None
    return None
