"""What this machine can run: the device, the dtype, and which optional libraries are installed.

Every availability check lives here, so a stage asks one question one way. The library checks
look for a module without importing it (``importlib.util.find_spec``); torch is imported only
inside the functions that ask about CUDA, so importing this module stays cheap and
``gekro-ft --help`` never loads torch.
"""

from __future__ import annotations

import importlib.util


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def is_torch_available() -> bool:
    return _installed("torch")


def is_transformers_available() -> bool:
    return _installed("transformers")


def is_peft_available() -> bool:
    return _installed("peft")


def is_bitsandbytes_available() -> bool:
    return _installed("bitsandbytes")


def is_unsloth_available() -> bool:
    return _installed("unsloth")


def is_vllm_available() -> bool:
    return _installed("vllm")


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device."""
    if not is_torch_available():
        return False
    import torch

    return torch.cuda.is_available()


def best_device() -> str:
    """``"cuda"`` when a CUDA device is available, else ``"cpu"``."""
    return "cuda" if cuda_available() else "cpu"


def _bf16_supported() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()


def resolve_dtype(name: str, device: str) -> str:
    """``name`` unless it is ``"auto"``; auto is bfloat16 on CUDA that supports it, float16 on
    older CUDA, float32 on CPU (few CPUs have fast half-precision matmuls)."""
    if name != "auto":
        return name
    if device.startswith("cuda"):
        return "bfloat16" if _bf16_supported() else "float16"
    return "float32"


def default_inference_dtype(device: str) -> str:
    """The dtype to generate in on ``device`` when nobody chose one: the same rule as a recipe's
    ``model.dtype: auto`` (bfloat16 on CUDA that supports it, float32 on CPU)."""
    return resolve_dtype("auto", device)
