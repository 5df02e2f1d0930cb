"""Exporting an adapter for engines that cannot load LoRA: a merged model, or GGUF via Unsloth."""

from __future__ import annotations

from pathlib import Path

from gekro_ft.adapter import read_manifest, write_manifest
from gekro_ft.atomic import atomic_directory
from gekro_ft.errors import MissingDependencyError
from gekro_ft.runtime import is_unsloth_available


def export_merged(adapter_dir: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Merge the LoRA into its base model in ``dtype`` and save safetensors + tokenizer at ``out_dir``.

    The base is loaded unquantized: merging into 4-bit weights would round the update away.
    """
    from transformers import AutoTokenizer

    from gekro_ft.models import load_model, resolve_model

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    manifest = read_manifest(adapter_dir)
    base = manifest["base_model"]
    # the bundled model's directory is machine-specific: resolve it again here
    source = base["source"] if base["kind"] == "local" else resolve_model(base["name"]).source
    # on the CPU: RAM usually holds an unquantized base in float32 where GPU memory would not
    merged = load_model(source, {"default": adapter_dir}, device="cpu", dtype=dtype).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    with atomic_directory(out_dir) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp, {**manifest, "merged_from": str(adapter_dir), "dtype": dtype})
    return out_dir


def export_gguf(adapter_dir: str | Path, out_dir: str | Path, quantization: str = "q4_k_m") -> Path:
    """GGUF through Unsloth's exporter (it drives llama.cpp's converter); needs unsloth and CUDA."""
    if not is_unsloth_available():
        raise MissingDependencyError("GGUF export uses Unsloth", hint="pip install 'gekro-ft[unsloth]' on a CUDA machine")
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(model_name=str(adapter_dir), load_in_4bit=False)
    model.save_pretrained_gguf(str(out_dir), tokenizer, quantization_method=quantization)
    return Path(out_dir)
