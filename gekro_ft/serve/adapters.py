"""Adapters to serve: ``NAME=DIR_OR_URI`` options, resolving them to directories, reading what
they are (rank, base model), and checking that they fit the base model being served.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.errors import InputFileError, ProfileError
from gekro_ft.train.run import MANIFEST  # written by `gekro-ft train` beside PEFT's files

ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")


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


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter directory says about itself."""

    path: Path
    r: int
    alpha: float
    target_modules: list[str] | str | None
    config_base: str | None  # adapter_config.json: base_model_name_or_path
    manifest_base: dict[str, Any] | None = None  # gekro_ft.json: {"name", "source", "kind"}
    rank_pattern: dict[str, int] = field(default_factory=dict)
    use_dora: bool = False
    modules_to_save: list[str] | None = None
    bias: str = "none"

    @property
    def max_rank(self) -> int:
        """The largest rank of any module (PEFT's rank_pattern can raise some above r)."""
        return max([self.r, *self.rank_pattern.values()])

    def trained_on(self) -> list[str]:
        """The base model as the adapter records it: the manifest's name and source when a
        manifest exists (it says what the user asked for), else PEFT's base_model_name_or_path."""
        if self.manifest_base and self.manifest_base.get("name"):
            return [s for s in (self.manifest_base.get("name"), self.manifest_base.get("source")) if s]
        return [self.config_base] if self.config_base else []


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise InputFileError(path, f"not valid JSON: {e}") from None
    except OSError as e:
        raise InputFileError(path, f"cannot read: {e.strerror}") from None
    if not isinstance(doc, dict):
        raise InputFileError(path, "the top level must be an object")
    return doc


def inspect_adapter(directory: str | Path) -> AdapterInfo:
    """Read ``adapter_config.json`` (and ``gekro_ft.json`` when present) of an adapter directory."""
    directory = Path(directory)
    config_path = directory / "adapter_config.json"
    config = _read_json(config_path)
    peft_type = config.get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        raise InputFileError(config_path, f"peft_type is {peft_type!r}: only LoRA adapters can be served")
    r = config.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise InputFileError(config_path, f"'r' (the LoRA rank) must be a positive integer, got {r!r}")
    rank_pattern = config.get("rank_pattern") or {}
    if not isinstance(rank_pattern, dict) or not all(isinstance(v, int) for v in rank_pattern.values()):
        raise InputFileError(config_path, "'rank_pattern' must map module patterns to integer ranks")
    manifest = None
    if (directory / MANIFEST).is_file():
        base = _read_json(directory / MANIFEST).get("base_model")
        if base is not None and not isinstance(base, dict):
            raise InputFileError(directory / MANIFEST, "'base_model' must be an object with name, source, kind")
        manifest = base
    return AdapterInfo(
        path=directory, r=r, alpha=config.get("lora_alpha", r), target_modules=config.get("target_modules"),
        config_base=config.get("base_model_name_or_path") or None, manifest_base=manifest,
        rank_pattern=dict(rank_pattern), use_dora=bool(config.get("use_dora", False)),
        modules_to_save=config.get("modules_to_save") or None, bias=str(config.get("bias") or "none"))


def base_identities(name: str) -> set[str]:
    """Every spelling of the base model ``name`` that we treat as the same model.

    Normalization: a Hugging Face id is compared case-insensitively (the Hub resolves ids that
    way); the bundled default's name, its Hub id (``smollm2-135m-instruct`` ≡
    ``HuggingFaceTB/SmolLM2-135M-Instruct``) and the directory it is materialized into are one
    model; a local directory is compared by its resolved absolute path.
    """
    from gekro_ft.models import BUNDLED, cache_root

    spelled = name.strip().rstrip("/") or name
    path = Path(spelled).expanduser()
    ids: set[str] = set()
    if spelled.startswith(("/", "~", ".")) or path.exists():
        resolved = path.resolve()
        ids.add(str(resolved))
        for bundled, spec in BUNDLED.items():
            if resolved == (cache_root() / "models" / bundled).resolve():
                ids |= {bundled.lower(), spec.hf_id.lower()}
    else:
        ids.add(spelled.lower())
        for bundled, spec in BUNDLED.items():
            if spelled.lower() in (bundled.lower(), spec.hf_id.lower()):
                ids |= {bundled.lower(), spec.hf_id.lower()}
    return ids


def same_base(profile_base: str, recorded: list[str]) -> bool:
    """True when any recorded spelling names the profile's base model."""
    wanted = base_identities(profile_base)
    return any(base_identities(r) & wanted for r in recorded)


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
            where = MANIFEST if info.manifest_base and info.manifest_base.get("name") else "adapter_config.json"
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
