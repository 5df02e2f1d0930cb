"""Serving profiles: a base model, the adapters served on it, the engine and its settings.

A profile is YAML validated into :class:`Profile`; unknown keys and bad values are errors
that name the key, all reported at once. It is found by path, or by name in ``./serve``,
``$GEKRO_FT_PROFILES`` and the profiles shipped with gekro-ft; relative adapter directories
(and a ``./`` base model or vLLM executable) in the file are relative to the file. Command-line flags override
it (:func:`load_profile`). The API key itself is never part of a profile: the profile names
the environment variable that holds it, and the key is read at the moment it is needed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from gekro_ft.errors import ProfileError
from gekro_ft.keys import is_loopback
from gekro_ft.models import DEFAULT_MODEL
from gekro_ft.serve.adapters import name_problem, registry_uri_problem
from gekro_ft.config import ConfigKind, resolve_paths, validate
from gekro_ft.serve.lora import SUPPORTED_LORA_RANKS

# serve/prices.yaml is the API price table, not a profile
PROFILES = ConfigKind("serving profile", "serve", "GEKRO_FT_PROFILES", ProfileError, frozenset({"prices"}))
PATH_KEYS = ("adapters.*", "base_model?", "vllm.executable?")
NO_ECHO = ("api_key_env", "vllm.extra_args")  # where a key may have been pasted
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class VllmSection(_Section):
    executable: str | None = Field(None, min_length=1, description="The vllm command, or the Python "
                                   "interpreter of a vLLM environment: a name on PATH or a path (default: "
                                   "$GEKRO_FT_VLLM, else `vllm` on PATH, else ./.venv-vllm/bin/python).")
    max_model_len: int | None = Field(None, ge=16, description="Longest prompt + output in tokens "
                                      "(default: the model's own limit).")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="Share of GPU memory "
                                                 "vLLM may take for weights and KV cache (vLLM's default 0.9).")
    tensor_parallel_size: int | None = Field(None, ge=1, description="GPUs to split the model across.")
    max_lora_rank: int | None = Field(None, description="Largest adapter rank the server accepts "
                                      "(default: the adapters' largest rank, rounded up to one vLLM supports). "
                                      "Set it when larger adapters will be loaded at run time.")
    max_loras: int | None = Field(None, ge=1, description="Adapters usable in one batch "
                                  "(default: the number of adapters).")
    max_cpu_loras: int | None = Field(None, ge=1, description="Adapters kept in CPU memory (>= max_loras).")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weights and activations dtype; adapters trained on a 4-bit base are "
                            "served on the full-precision base.")
    allow_runtime_lora: bool = Field(False, description="Allow loading and unloading adapters on the "
                                     "running server (sets VLLM_ALLOW_RUNTIME_LORA_UPDATING=True).")
    cpu_kvcache_space_gib: int = Field(4, ge=1, description="vLLM's CPU build only: GiB of memory for "
                                       "the KV cache (sets VLLM_CPU_KVCACHE_SPACE unless it is set; "
                                       "vLLM's own default is 4).")
    cpu_threads_bind: str = Field("auto", min_length=1, description="vLLM's CPU build only: the cores its "
                                  "OpenMP threads are bound to (sets VLLM_CPU_OMP_THREADS_BIND unless it "
                                  "is set): auto (vLLM's: one thread per physical core, one core kept for "
                                  "its scheduler), nobind (threads float; OpenMP picks how many), or ids "
                                  "such as 0-3.")
    extra_args: list[str] = Field(default_factory=list, description="More `vllm serve` arguments, "
                                  "passed as they are, last.")

    @field_validator("max_lora_rank")
    @classmethod
    def _supported_rank(cls, v: int | None) -> int | None:
        if v is not None and v not in SUPPORTED_LORA_RANKS:
            raise ValueError(f"vLLM accepts one of {', '.join(map(str, SUPPORTED_LORA_RANKS))}")
        return v

    @field_validator("extra_args")
    @classmethod
    def _no_key_in_argv(cls, v: list[str]) -> list[str]:
        if any(a == "--api-key" or a.startswith("--api-key=") for a in v):
            # Checked without echoing the arguments: the one after --api-key is a secret.
            raise ValueError("--api-key would put the key on the command line, where `ps` shows it; "
                             "name its environment variable in api_key_env instead")
        return v


class CpuSection(_Section):
    max_batch_size: int = Field(8, ge=1, le=256, description="Requests generated together in one batch.")
    batch_wait_ms: float = Field(10, ge=0, le=10_000, description="How long the first request of a batch "
                                 "waits for company.")
    max_tokens_limit: int = Field(512, ge=1, description="Largest max_tokens a request may ask for.")
    max_body_mib: float = Field(4, gt=0, le=1024, description="Largest request body in MiB; a bigger one "
                                "is refused with 413 before it is read.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="CPUs have no fast bfloat16 matmul on most machines.")


class Profile(_Section):
    base_model: str = Field(DEFAULT_MODEL, min_length=1, description="The bundled default's name, "
                            "a Hugging Face id, or a local model directory.")
    engine: Literal["cpu", "vllm"] = Field("cpu", description="vllm on a GPU; cpu for laptops and CI.")
    adapters: dict[str, str] = Field(default_factory=dict, description="NAME -> adapter directory or "
                                     "registry reference (models:/NAME@ALIAS, models:/NAME/VERSION); "
                                     "requests pick one with model=NAME. Relative directories are "
                                     "relative to the profile file.")
    host: str = Field("127.0.0.1", description="Address to listen on; anything but loopback needs an API key.")
    port: int = Field(8000, ge=1, le=65535)
    api_key_env: str | None = Field(None, description="Name of the environment variable that holds "
                                    "the API key (never the key itself).")
    served_model_name: str | None = Field(None, min_length=1, description="The name the base model "
                                          "answers to (default: base_model as written).")
    check_adapter_base: bool = Field(True, description="Refuse adapters whose recorded base model "
                                     "differs from base_model.")
    vllm: VllmSection = Field(default_factory=VllmSection)
    cpu: CpuSection = Field(default_factory=CpuSection)

    _source: str = PrivateAttr("profile")

    @field_validator("adapters")
    @classmethod
    def _adapters_named_and_pointed(cls, v: dict[str, str]) -> dict[str, str]:
        problems = []
        for name, value in v.items():
            problem = name_problem(name)
            if problem is None and not value.strip():
                problem = f"{name!r}: empty; give a directory or models:/NAME@ALIAS"
            elif problem is None and value.startswith("models:/"):
                problem = registry_uri_problem(value)
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("must be the name of an environment variable (letters, digits, _), "
                             "not the key itself")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v.strip() or any(c.isspace() for c in v) or "/" in v:
            raise ValueError("must be an IP address or a host name")
        return v

    @model_validator(mode="after")
    def _cross_checks(self):
        problems = []
        if self.served_name in self.adapters:
            problems.append(f"adapters.{self.served_name}: the base model answers to "
                            f"{self.served_name!r}; pick another adapter name")
        max_loras = self.vllm.max_loras or max(1, len(self.adapters))
        if self.vllm.max_cpu_loras is not None and self.vllm.max_cpu_loras < max_loras:
            problems.append(f"vllm.max_cpu_loras: {self.vllm.max_cpu_loras} must be at least "
                            f"vllm.max_loras ({max_loras}, one per adapter unless set)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def served_name(self) -> str:
        return self.served_model_name or self.base_model

    @property
    def source(self) -> str:
        """Where the profile came from, for messages."""
        return self._source

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The API key from the variable named by ``api_key_env``; None when unset or empty."""
        if not self.api_key_env:
            return None
        return (os.environ if environ is None else environ).get(self.api_key_env) or None

    def check_bind(self, environ: Mapping[str, str] | None = None) -> None:
        """Refuse to listen beyond this machine without an API key."""
        if is_loopback(self.host) or self.api_key(environ):
            return
        if self.api_key_env:
            problem = f"refusing to listen on {self.host} without an API key: {self.api_key_env} is not set"
            hint = f"export {self.api_key_env}=<a long random string>, or serve on 127.0.0.1"
        else:
            problem = f"refusing to listen on {self.host} without an API key: the profile names no api_key_env"
            hint = "set api_key_env: GEKRO_FT_API_KEY in the profile and export that variable, or serve on 127.0.0.1"
        raise ProfileError(self.source, [f"host: {problem}"], hint)

    def resolved(self) -> dict[str, Any]:
        """Every setting, defaults included (names of secrets only, never their values)."""
        return self.model_dump(mode="json")


def list_profiles() -> list[Path]:
    """Profiles by name, the first directory searched winning."""
    return list(PROFILES.named().values())


def find_profile(name_or_path: str) -> Path:
    return PROFILES.find(name_or_path)


def _merge(doc: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Command-line values win; ``adapters`` (and sections given as dicts) merge by key."""
    for key, value in overrides.items():
        if value is None:
            continue
        current = doc.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            doc[key] = {**current, **value}
        else:
            doc[key] = dict(value) if isinstance(value, Mapping) else value


def load_profile(name_or_path: str | None = None, overrides: Mapping[str, Any] | None = None) -> Profile:
    """Load a profile (default: the built-in defaults, no file), apply command-line overrides
    (``engine``, ``host``, ``port``, ``adapters`` merged by name, ...) and validate; every
    problem is reported in one ProfileError."""
    source, doc, lines = "command line", {}, {}
    if name_or_path:
        path = find_profile(name_or_path)
        file = PROFILES.read(path)
        source, doc, lines = str(path), file.doc, file.lines
        resolve_paths(doc, PATH_KEYS, path.parent)
    _merge(doc, overrides or {})
    profile = validate(Profile, doc, source, ProfileError, lines, NO_ECHO)
    profile._source = source
    return profile
