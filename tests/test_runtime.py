"""Device and dtype choice (gekro_ft.runtime) and the one loader for "base model + adapters"
(gekro_ft.models.load_model) that eval, the CPU engine and export share.

CUDA is pretended here by replacing runtime's two questions to torch; the choices made from
the answers are real. A `gpu` test checks the real thing on a CUDA machine."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

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


@pytest.fixture
def loads(monkeypatch):
    """Record what transformers is asked to load (nothing is loaded)."""
    import transformers

    seen: list[dict] = []

    class Model:
        def eval(self):
            seen[-1]["eval"] = True
            return self

    def from_pretrained(source, **kw):
        seen.append({"source": source, **kw})
        return Model()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda source, **kw: SimpleNamespace(padding_side="right"))
    return seen


def test_the_loader_uses_the_best_device_unless_told(machine, loads):
    import torch

    from gekro_ft.models import load_model

    machine(cuda=True)
    load_model("m")
    machine(cuda=False)
    load_model("m")
    load_model("m", device="cpu", dtype="bfloat16")
    assert [(s["device_map"], s["dtype"], s["eval"]) for s in loads] == [
        ({"": "cuda"}, torch.bfloat16, True), ({"": "cpu"}, torch.float32, True),
        ({"": "cpu"}, torch.bfloat16, True)]


def test_eval_generates_on_the_best_device(machine, loads):
    import torch

    from gekro_ft.eval.local import LocalGenerator

    machine(cuda=True)
    generator = LocalGenerator("m")
    assert generator.device == "cuda" and generator.tokenizer.padding_side == "left"
    assert (loads[-1]["device_map"], loads[-1]["dtype"]) == ({"": "cuda"}, torch.bfloat16)
    machine(cuda=False)
    assert LocalGenerator("m").device == "cpu" and loads[-1]["dtype"] == torch.float32


class _Loaded(Exception):
    pass


@pytest.fixture
def load_calls(monkeypatch):
    """Stop a caller at its load_model call and keep the arguments."""
    import gekro_ft.models

    calls = []

    def load_model(base_source, adapters=None, **kw):
        calls.append({"base_source": base_source, "adapters": adapters, **kw})
        raise _Loaded

    monkeypatch.setattr(gekro_ft.models, "load_model", load_model)
    return calls


def test_the_cpu_engine_keeps_the_cpu_and_its_configured_dtype(machine, loads, load_calls, tmp_path):
    from gekro_ft.serve.cpu_engine import CPUEngine

    machine(cuda=True)  # a GPU in the machine does not move the CPU engine
    with pytest.raises(_Loaded):
        CPUEngine("m", {"t": tmp_path}, dtype="bfloat16")
    assert load_calls == [{"base_source": "m", "adapters": {"t": tmp_path}, "device": "cpu",
                           "dtype": "bfloat16"}]


def test_export_merges_in_its_dtype(machine, loads, load_calls, tmp_path):
    from gekro_ft.adapter import write_manifest
    from gekro_ft.train.export import export_merged

    machine(cuda=True)
    write_manifest(tmp_path, {"base_model": {"name": "b", "source": "/models/b", "kind": "local"}})
    with pytest.raises(_Loaded):
        export_merged(tmp_path, tmp_path / "merged", dtype="bfloat16")
    assert load_calls == [{"base_source": "/models/b", "adapters": {"default": tmp_path}, "device": "cpu",
                           "dtype": "bfloat16"}]


@pytest.mark.slow
def test_the_loader_attaches_every_adapter_on_cpu(machine, tmp_path):
    import torch

    from gekro_ft.models import load_model, resolve_model
    from tests.serving import make_adapter

    machine(cuda=False)
    a, b = make_adapter(tmp_path / "a", seed=1), make_adapter(tmp_path / "b", seed=2, r=4)
    model = load_model(resolve_model("smollm2-135m-instruct").source, {"a": a, "b": b})
    assert set(model.peft_config) == {"a", "b"} and model.active_adapter == "a"
    assert model.peft_config["b"].r == 4 and not model.training
    weights = model.get_base_model().model.embed_tokens.weight
    assert (weights.device.type, weights.dtype) == ("cpu", torch.float32)


@pytest.mark.gpu
def test_the_loader_puts_the_bundled_model_on_cuda_in_bfloat16(tmp_path):
    import torch

    from gekro_ft.models import load_model, resolve_model
    from tests.serving import make_adapter

    assert runtime.best_device() == "cuda" and runtime.default_inference_dtype("cuda") == "bfloat16"
    source = resolve_model("smollm2-135m-instruct").source
    model = load_model(source)
    params = list(model.parameters())
    assert {p.device.type for p in params} == {"cuda"} and {p.dtype for p in params} == {torch.bfloat16}
    assert not model.training
    ids = torch.tensor([[1, 9690, 198, 31530, 2]], device="cuda")
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()

    tuned = load_model(source, {"t": make_adapter(tmp_path / "t")})
    base = {n: p for n, p in tuned.named_parameters() if "lora_" not in n}
    assert {p.device.type for p in tuned.parameters()} == {"cuda"}  # the adapter follows the base
    assert {p.dtype for p in base.values()} == {torch.bfloat16}
    with torch.no_grad():
        assert torch.isfinite(tuned(ids).logits).all()
