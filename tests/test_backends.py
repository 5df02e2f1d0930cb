"""Backend choice, and the Unsloth path where a GPU exists (marked gpu: CI has none)."""

from __future__ import annotations

import pytest

from gekro_ft import runtime
from gekro_ft.errors import MissingDependencyError
from gekro_ft.train import backends


@pytest.fixture
def machine(monkeypatch):
    """Pretend about what cannot exist here (a CUDA device, unsloth); the choice logic is real."""

    def set_(cuda: bool, unsloth: bool):
        monkeypatch.setattr(runtime, "cuda_available", lambda: cuda)
        monkeypatch.setattr(runtime, "is_unsloth_available", lambda: unsloth)

    return set_


@pytest.mark.parametrize("cuda,unsloth,expected,why", [
    (True, True, "unsloth", "auto: CUDA device and unsloth installed"),
    (True, False, "hf", "auto: unsloth not installed"),
    (False, True, "hf", "auto: no CUDA device"),
    (False, False, "hf", "auto: no CUDA device"),
])
def test_auto_prefers_unsloth_when_it_can_run(machine, cuda, unsloth, expected, why):
    machine(cuda, unsloth)
    name, reason = backends.choose_backend("auto")
    assert name == expected and reason.startswith(why)


def test_asking_for_unsloth_where_it_cannot_run_says_why(machine):
    machine(False, True)
    with pytest.raises(MissingDependencyError, match="no CUDA device"):
        backends.choose_backend("unsloth")
    machine(True, False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'gekro-ft\[unsloth\]'"):
        backends.choose_backend("unsloth")
    assert backends.choose_backend("hf") == ("hf", "train.backend is hf")


@pytest.mark.gpu
def test_unsloth_backend_trains_on_cuda(tmp_path, monkeypatch):
    pytest.importorskip("unsloth")
    from conftest import DATASETS

    from gekro_ft.train.run import preflight, train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    plan, tok, data = preflight("smollm2-135m-cpu", [
        "train.backend=auto", "model.dtype=auto", "train.max_steps=10", "train.save_steps=10",
        f"data.train={DATASETS / 'ticket-extraction' / 'openai.jsonl'}", "tracking.registered_model=null"],
        tmp_path / "out")
    assert plan.backend == "unsloth" and plan.device == "cuda"
    result = train(plan, tok, data)
    assert result.metrics["eval_loss"] < 1.0
    assert (result.adapter_dir / "adapter_model.safetensors").exists()
