"""The MLflow model registry: adapter versions, the ``champion`` alias, and who replaced whom.

MLflow keeps only the current holder of an alias, so promotion history is recorded
by us, on the registered model (tag ``gekro_ft.alias_history.ALIAS``: the versions
that held it, oldest first) and on each version (who promoted it, when, what it
replaced). Rollback pops that history. Eval verdicts are version tags too, so
``gekro-ft models list`` can show why a version holds its alias.
"""

from __future__ import annotations

import getpass
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.errors import RegistryError

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$")
HISTORY_TAG = "gekro_ft.alias_history.{alias}"


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
    m = _URI.match(uri)
    if not m:
        raise RegistryError(f"{uri!r} is not a registry reference",
                            hint="use models:/NAME@ALIAS or models:/NAME/VERSION")
    return ModelRef(m["name"], m["version"], m["alias"])


def client() -> Any:
    from mlflow import MlflowClient

    from gekro_ft.tracking import tracking_uri

    return MlflowClient(tracking_uri=tracking_uri(), registry_uri=tracking_uri())


def _get_version(c: Any, ref: ModelRef) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return c.get_model_version_by_alias(ref.name, ref.alias)
        return c.get_model_version(ref.name, ref.version)
    except MlflowException as e:
        raise RegistryError(f"{ref} is not in the registry at {_where()}: {e.message}") from None


def _where() -> str:
    from gekro_ft.tracking import shown_uri

    return shown_uri()  # a URI can carry credentials


def resolve_version(uri: str) -> Any:
    """The MLflow ``ModelVersion`` a reference points at."""
    return _get_version(client(), parse_model_uri(uri))


def download_adapter(uri: str) -> Path:
    """The adapter directory behind a registry reference, downloaded once into the cache
    (``$GEKRO_FT_HOME/adapters/NAME/VERSION``); an alias is resolved at call time."""
    import mlflow.artifacts

    from gekro_ft.atomic import atomic_directory
    from gekro_ft.models import cache_root

    version = resolve_version(uri)
    target = cache_root() / "adapters" / version.name / str(version.version)
    if (target / "adapter_config.json").exists():
        return target
    with atomic_directory(target) as tmp:
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp),
                                                       tracking_uri=client().tracking_uri))
        if got != tmp:  # download_artifacts puts the artifact directory under dst_path by its name
            for f in got.iterdir():
                os.replace(f, tmp / f.name)
            got.rmdir()
    if not (target / "adapter_config.json").exists():
        raise RegistryError(f"{uri} (version {version.version}) has no adapter_config.json at {version.source}")
    return target


def _history(c: Any, name: str, alias: str) -> list[str]:
    from mlflow.exceptions import MlflowException

    try:
        model = c.get_registered_model(name)
    except MlflowException:
        raise RegistryError(f"no registered model named {name!r} at {_where()}") from None
    return list(orjson.loads(model.tags.get(HISTORY_TAG.format(alias=alias), "[]")))


def _actor() -> str:
    # CI systems name the person or bot behind a run; fall back to the local user.
    return os.environ.get("GITHUB_ACTOR") or os.environ.get("GITLAB_USER_LOGIN") or getpass.getuser()


def promote(name: str, version: str, alias: str = "champion", reason: str = "") -> dict[str, Any]:
    """Point ``alias`` at ``version`` and record what it replaced; returns what changed."""
    c = client()
    _get_version(c, ModelRef(name, version=str(version)))
    previous = _current(c, name, alias)
    history = _history(c, name, alias)
    if previous == str(version):
        return {"name": name, "alias": alias, "version": str(version), "previous": previous, "changed": False}
    c.set_registered_model_alias(name, alias, str(version))
    c.set_registered_model_tag(name, HISTORY_TAG.format(alias=alias),
                               orjson.dumps([*history, str(version)]).decode())
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key, value in {"promoted_at": now, "promoted_by": _actor(), "replaced": previous or "",
                       "promotion_reason": reason}.items():
        c.set_model_version_tag(name, str(version), f"gekro_ft.{alias}.{key}", value)
    return {"name": name, "alias": alias, "version": str(version), "previous": previous, "changed": True}


def rollback(name: str, alias: str = "champion") -> dict[str, Any]:
    """Give ``alias`` back to the version that held it before the current one."""
    c = client()
    history = _history(c, name, alias)
    current = _current(c, name, alias)
    if current is None:
        raise RegistryError(f"{name} has no {alias!r} alias to roll back")
    # The history ends with the current holder; the one before it is the previous champion.
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise RegistryError(f"{name}@{alias} (version {current}) has no earlier holder recorded")
    previous = history[-1]
    c.set_registered_model_alias(name, alias, previous)
    c.set_registered_model_tag(name, HISTORY_TAG.format(alias=alias), orjson.dumps(history).decode())
    c.set_model_version_tag(name, current, f"gekro_ft.{alias}.rolled_back_at",
                            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return {"name": name, "alias": alias, "version": previous, "previous": current, "changed": True}


def _current(c: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def record_eval(name: str, version: str, verdict: str, eval_run_id: str, report_path: str) -> None:
    """Tag a version with the latest eval verdict behind it."""
    c = client()
    for key, value in {"verdict": verdict, "run_id": eval_run_id, "report": report_path}.items():
        c.set_model_version_tag(name, str(version), f"gekro_ft.eval.{key}", value)


@dataclass
class VersionRow:
    name: str
    version: str
    aliases: list[str] = field(default_factory=list)
    run_id: str | None = None
    created: str = ""
    verdict: str = ""
    eval_run_id: str = ""
    promoted_by: str = ""


def list_versions(name: str | None = None) -> list[VersionRow]:
    """Every version of every registered model (or of ``name``), newest first."""
    c = client()
    query = f"name = '{name}'" if name else None
    rows = []
    aliases: dict[str, dict[str, list[str]]] = {}  # search results leave aliases out: ask each model
    for v in c.search_model_versions(query):
        if v.name not in aliases:
            aliases[v.name] = {}
            for alias, ver in (c.get_registered_model(v.name).aliases or {}).items():
                aliases[v.name].setdefault(str(ver), []).append(alias)
        tags = v.tags or {}
        rows.append(VersionRow(
            v.name, str(v.version), sorted(aliases[v.name].get(str(v.version), [])), v.run_id,
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(v.creation_timestamp / 1000)),
            tags.get("gekro_ft.eval.verdict", ""), tags.get("gekro_ft.eval.run_id", ""),
            tags.get("gekro_ft.champion.promoted_by", "")))
    if name and not rows:
        raise RegistryError(f"no registered model named {name!r} at {_where()}")
    return sorted(rows, key=lambda r: (r.name, -int(r.version)))
