"""Device and dtype choice (gekro_ft.runtime) and the availability checks.

CUDA is pretended here by replacing runtime's two questions to torch; the choices made from
the answers are real."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gekro_ft import runtime


@pytest.fixture
def machine(monkeypatch):
    """``machine(cuda, bf16)``: what torch would say about this machine."""

    def set_(cuda: bool, bf16: bool = True) -> None:
        monkeypatch.setattr(runtime, "cuda_available", lambda: cuda)
        monkeypatch.setattr(runtime, "_bf16_supported", lambda: bf16)

    return set_


@pytest.mark.parametrize("cuda, bf16, device, dtype", [
    (True, True, "cuda", "bfloat16"),
    (True, False, "cuda", "float16"),  # pre-Ampere GPUs have no bfloat16
    (False, False, "cpu", "float32"),
    (False, True, "cpu", "float32"),
])
def test_best_device_and_its_dtype(machine, cuda, bf16, device, dtype):
    machine(cuda, bf16)
    assert runtime.best_device() == device
    assert runtime.default_inference_dtype(device) == dtype
    assert runtime.resolve_dtype("auto", device) == dtype
    assert runtime.resolve_dtype("float32", device) == "float32"  # a choice made is kept


def test_availability_checks_import_nothing_heavy():
    code = ("import sys; from gekro_ft import runtime\n"
            "found = [f() for f in (runtime.is_torch_available, runtime.is_transformers_available,\n"
            "         runtime.is_peft_available, runtime.is_bitsandbytes_available,\n"
            "         runtime.is_unsloth_available, runtime.is_vllm_available)]\n"
            "print(found[:2], sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[True, True] []"
