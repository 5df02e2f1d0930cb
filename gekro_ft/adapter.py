"""The adapter contract: what `gekro-ft train` writes beside PEFT's files (``gekro_ft.json``),
and the one reading of an adapter directory that every stage shares: its manifest, its rank,
and which base model it belongs to.

The base model an adapter was trained on is the manifest's ``base_model.name`` (what the user
asked for) when a manifest exists, else PEFT's ``base_model_name_or_path`` in
``adapter_config.json``. :func:`adapter_base` and :attr:`AdapterInfo.base` both decide it
through :func:`_recorded_base`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.atomic import write_bytes_atomic
from gekro_ft.errors import InputFileError

MANIFEST = "gekro_ft.json"
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
CONFIG = "adapter_config.json"


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` as ``DIR/gekro_ft.json``; returns its path."""
    path = Path(directory) / MANIFEST
    write_bytes_atomic(path, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return path


def read_manifest(directory: str | Path, *, missing_ok: bool = False) -> dict[str, Any]:
    """``DIR/gekro_ft.json`` as a dict; ``{}`` when it is absent and ``missing_ok`` (an adapter
    trained elsewhere has none). A missing (unless ``missing_ok``) or malformed manifest raises
    an InputFileError naming the path."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        if missing_ok:
            return {}
        raise InputFileError(directory, f"no {MANIFEST}: not an adapter directory written by gekro-ft train")
    manifest = _read_json(path)
    _manifest_base(manifest, path)
    return manifest


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


def _manifest_base(manifest: dict[str, Any], path: Path) -> dict[str, Any] | None:
    base = manifest.get("base_model")
    if base is not None and not isinstance(base, dict):
        raise InputFileError(path, "'base_model' must be an object with name, source, kind")
    return base


def _recorded_base(manifest_base: dict[str, Any] | None, config_base: str | None) -> str | None:
    """The one rule for an adapter's base model (see the module docstring)."""
    return (manifest_base or {}).get("name") or config_base or None


def adapter_base(directory: str | Path) -> str | None:
    """The base model the adapter in ``directory`` was trained on, or None when it does not say."""
    directory = Path(directory)
    manifest = read_manifest(directory, missing_ok=True)
    config_base = _read_json(directory / CONFIG).get("base_model_name_or_path")
    return _recorded_base(_manifest_base(manifest, directory / MANIFEST), config_base)


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

    @property
    def base(self) -> str | None:
        """The base model it was trained on, as :func:`adapter_base` decides it."""
        return _recorded_base(self.manifest_base, self.config_base)

    @property
    def base_from_manifest(self) -> bool:
        return bool(self.manifest_base and self.manifest_base.get("name"))

    def trained_on(self) -> list[str]:
        """Every recorded spelling of :attr:`base`: with a manifest, its name and the source
        the base was loaded from (a local directory may be named either way)."""
        if self.base_from_manifest:
            return [s for s in (self.manifest_base.get("name"), self.manifest_base.get("source")) if s]
        return [self.base] if self.base else []


def inspect_adapter(directory: str | Path) -> AdapterInfo:
    """Read ``adapter_config.json`` (and ``gekro_ft.json`` when present) of an adapter directory."""
    directory = Path(directory)
    config_path = directory / CONFIG
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
    manifest = _manifest_base(read_manifest(directory, missing_ok=True), directory / MANIFEST)
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


def template_record(tokenizer: Any) -> dict[str, Any]:
    """The chat template and the stop token a tokenizer trains with: what ``gekro-ft train``
    records in the manifest, so ``gekro-ft doctor`` can tell later whether an export or a
    server still formats and stops the same way."""
    import hashlib

    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return {"template": template,
            "sha256": hashlib.sha256(template.encode()).hexdigest() if template else None,
            "eos_token": tokenizer.eos_token, "eos_token_id": tokenizer.eos_token_id}
