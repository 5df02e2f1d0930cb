"""Adapters to serve: ``NAME=DIR_OR_URI`` options, resolving them to directories, and checking
that they fit the base model being served (what an adapter is: :mod:`gekro_ft.adapter`).

What "no path traversal" means here:

- An adapter **name** is what a client puts in a request's ``model`` field, and servers use it
  as a key, sometimes as a file name (vLLM's filesystem LoRA resolver looks for
  ``$VLLM_LORA_RESOLVER_CACHE_DIR/NAME``). Names are therefore limited to letters, digits,
  ``.``, ``_`` and ``-``, 64 characters at most, starting with a letter or digit: no separator,
  no leading dot, so a name can never be ``..`` or climb out of a directory.
- A registry reference ``models:/NAME@ALIAS`` becomes a cache directory named after NAME, so
  NAME may not be ``.`` or ``..`` either (the registry's own syntax already forbids ``/``).
- An adapter **directory** given by the operator (profile or command line) is the operator's
  own choice and may be anywhere they can read. A directory that arrives from elsewhere (a
  runtime load request over HTTP) is resolved (``..`` and symlinks followed) and must then lie
  inside an allowed root: pass ``root=`` to :func:`resolve_adapter`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from gekro_ft.adapter import MANIFEST, REQUIRED_FILES, AdapterInfo, inspect_adapter, same_base
from gekro_ft.errors import InputFileError, ProfileError

ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def name_problem(name: str, served_name: str | None = None) -> str | None:
    """Why ``name`` cannot name an adapter, or None when it can."""
    if not ADAPTER_NAME.match(name):
        return (f"{name!r} is not a valid adapter name (1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit)")
    if served_name is not None and name == served_name:
        return f"{name!r} is the name the base model answers to; pick another adapter name"
    return None


def parse_adapter_option(option: str, served_name: str | None = None) -> tuple[str, str]:
    """``"NAME=DIR_OR_URI"`` (a ``--adapter`` value) -> ``(name, value)``, the name checked."""
    name, sep, value = option.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise ProfileError("--adapter", [f"{option!r} is not NAME=DIR_OR_URI "
                                         "(e.g. tickets=out/adapter or tickets=models:/NAME@champion)"])
    problem = name_problem(name, served_name)
    if problem:
        raise ProfileError("--adapter", [problem])
    return name, value


def registry_uri_problem(value: str) -> str | None:
    """Why a ``models:/`` reference cannot be used, or None when it can (syntax only: no registry call)."""
    from gekro_ft.errors import RegistryError
    from gekro_ft.registry import parse_model_uri

    try:
        ref = parse_model_uri(value)
    except RegistryError as e:
        return str(e)
    if ref.name in (".", "..") or "\\" in ref.name:
        return f"{value!r}: {ref.name!r} cannot name a registered model"
    return None


def resolve_adapter(value: str, root: str | Path | None = None) -> Path:
    """The adapter directory behind ``value``: a ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``
    reference (downloaded once from the MLflow registry) or a directory.

    The directory is returned resolved (absolute, symlinks followed) and must hold
    ``adapter_config.json`` and ``adapter_model.safetensors``. With ``root``, it must also lie
    inside ``root``: use that for paths that come from a request rather than from the operator.
    """
    if value.startswith("models:/"):
        problem = registry_uri_problem(value)
        if problem:
            raise ProfileError("adapter", [problem])
        from gekro_ft.registry import download_adapter

        path = Path(download_adapter(value)).resolve()
    else:
        path = Path(value).expanduser().resolve()
    if root is not None:
        allowed = Path(root).expanduser().resolve()
        if not path.is_relative_to(allowed):
            raise InputFileError(value, f"resolves outside the allowed adapter root {allowed}")
    if not path.is_dir():
        raise InputFileError(value, "no such adapter directory")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise InputFileError(path, f"not a LoRA adapter directory: no {' or '.join(missing)}",
                             hint="pass the adapter directory that `gekro-ft train` writes (OUT/adapter)")
    return path


def check_adapters_match(base_model: str, adapters: dict[str, AdapterInfo], source: str = "adapters") -> None:
    """Raise one ProfileError listing every adapter that was trained on another base model
    (or does not say which one), before a server spends minutes loading."""
    problems = []
    for name, info in adapters.items():
        recorded = info.trained_on()
        if not recorded:
            problems.append(f"adapter {name!r} ({info.path}) does not name its base model "
                            f"(no {MANIFEST}, no base_model_name_or_path in adapter_config.json)")
        elif not same_base(base_model, recorded):
            where = MANIFEST if info.base_from_manifest else "adapter_config.json"
            problems.append(f"adapter {name!r} ({info.path}) was trained on {recorded[0]!r} ({where}), "
                            f"not on the base served here, {base_model!r}")
    if problems:
        raise ProfileError(source, problems,
                           hint="serve each adapter on the base it was trained on, or set "
                                "check_adapter_base: false when both names are the same model")


def prepare_adapters(base_model: str, adapters: Mapping[str, str], *, check_base: bool = True,
                     source: str = "adapters") -> dict[str, AdapterInfo]:
    """Resolve every adapter of a profile (registry references are downloaded once), read what
    each one is, and check that all fit ``base_model``; engine-neutral."""
    infos = {name: inspect_adapter(resolve_adapter(value)) for name, value in adapters.items()}
    if check_base:
        check_adapters_match(base_model, infos, source)
    return infos
