"""Training for real on the CPU: the bundled model, bitsandbytes 4-bit, PEFT, TRL, a real MLflow store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import DATASETS

TICKETS = DATASETS / "ticket-extraction" / "openai.jsonl"


def train_cmd(out, *overrides):
    base = ["train.max_steps=4", "train.save_steps=2", "train.eval_steps=4", "train.logging_steps=1",
            "train.batch_size=2", f"data.train={TICKETS}", "data.eval_frac=0.05",
            "tracking.registered_model=test-adapter", "tracking.experiment=tests"]
    cmd = [sys.executable, "-m", "gekro_ft.cli", "train", "smollm2-135m-cpu", "-o", str(out)]
    for o in base + list(overrides):
        cmd += ["--set", o]
    return cmd


@pytest.fixture
def mlflow_env(tmp_path):
    db = tmp_path / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    return env, f"sqlite:///{db}"


def test_dry_run_prints_the_plan(cli, tmp_path):
    result = cli("train", "smollm2-135m-cpu", "--dry-run", "-o", tmp_path / "out", "--set", f"data.train={TICKETS}")
    assert result.exit_code == 0, result.output
    assert "backend: hf (auto: no CUDA device" in result.output
    assert "data: 270 train rows" in result.output and "30 eval rows" in result.output
    assert "memory: ~" in result.output
    assert not (tmp_path / "out").exists()


def test_preflight_refuses_bad_data_naming_codes(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(TICKETS.read_text() + '{"messages": [{"role": "user", "content": "q"}]}\n')
    result = cli("train", "smollm2-135m-cpu", "--dry-run", "--set", f"data.train={bad}")
    assert result.exit_code == 2
    assert f"Error (preflight): data.train ({bad}) has 1 errors: no-assistant-turn x1" in result.output


def test_preflight_refuses_missing_files_and_bad_overrides(cli):
    result = cli("train", "smollm2-135m-cpu", "--dry-run", "--set", "data.train=nope.jsonl")
    assert result.exit_code == 2 and "data.train: no such file nope.jsonl" in result.output
    result = cli("train", "smollm2-135m-cpu", "--dry-run", "--set", "train.batchsize=3")
    assert result.exit_code == 2 and "train.batchsize: unknown key" in result.output


def test_preflight_refuses_packing_for_a_model_with_linear_attention(cli, tmp_path):
    """Linear-attention layers ignore the per-row mask that keeps packed rows apart."""
    import shutil

    from transformers import Qwen3NextConfig

    from gekro_ft.models import bundled_model_dir

    model = tmp_path / "tiny-qwen3-next"
    shutil.copytree(bundled_model_dir("smollm2-135m-instruct"), model,
                    ignore=shutil.ignore_patterns("*.safetensors"))  # the tokenizer; no weights are read
    Qwen3NextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
                    num_key_value_heads=1, vocab_size=49152).save_pretrained(model)
    result = cli("train", "smollm2-135m-cpu", "--dry-run", "--set", f"model.name={model}",
                 "--set", "data.packing=true", "--set", f"data.train={TICKETS}")
    assert result.exit_code == 2, result.output
    assert "data.packing:" in result.output and "linear_attention layers" in result.output
    assert "set data.packing=false" in result.output
    result = cli("train", "smollm2-135m-cpu", "--dry-run", "--set", f"model.name={model}",
                 "--set", "data.packing=false", "--set", f"data.train={TICKETS}")
    assert result.exit_code == 0 and "preflight OK" in result.output, result.output


@pytest.mark.slow
def test_train_interrupt_resume_track_register(tmp_path, mlflow_env):
    from mlflow import MlflowClient

    env, uri = mlflow_env
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(out), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 600
    while not (out / "checkpoints" / "checkpoint-2").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Error (interrupted): stopped by signal" in stderr and "--resume" in stderr
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).info.status == "KILLED"
    stopped_at = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    assert 2 <= stopped_at < 4
    assert not (out / "adapter").exists()

    done = subprocess.run(train_cmd(out) + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    run = client.get_run(run_id)  # the same run, continued
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 4 and steps[0] == 1  # no step trained twice
    state = json.loads((out / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4

    # The adapter directory contract
    adapter = out / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "gekro_ft.json"):
        assert (adapter / name).exists(), name
    manifest = json.loads((adapter / "gekro_ft.json").read_text())
    assert manifest["mlflow_run_id"] == run_id and manifest["backend"] == "hf"
    assert manifest["recipe"]["train"]["max_steps"] == 4 and len(manifest["recipe_hash"]) == 16
    assert manifest["metrics"]["eval_loss"] > 0 and "torch" in manifest["versions"]
    tok_cfg = json.loads((adapter / "tokenizer_config.json").read_text())
    assert "chat_template" in tok_cfg or (adapter / "chat_template.jinja").exists()

    # MLflow: params, tags, metrics, artifacts, registry
    assert run.data.params["train.max_steps"] == "4" and run.data.params["lora.r"] == "16"
    assert run.data.tags["gekro_ft.backend"] == "hf" and len(run.data.tags["gekro_ft.dataset_hash"]) == 64
    assert {"loss", "eval_loss", "learning_rate", "peak_memory_mb", "final_train_loss"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in artifacts
    version = client.get_model_version("test-adapter", "1")
    assert version.run_id == run_id and version.source.endswith("/adapter")

    # It loads unchanged in PEFT and changes the model's answers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(manifest["base_model"]["source"])
    tuned = PeftModel.from_pretrained(base, str(adapter))
    assert tuned.peft_config["default"].r == 16

    # Merged export computes what base + adapter computes
    import torch

    from gekro_ft.train.export import export_merged

    merged_dir = export_merged(adapter, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    ids = torch.tensor([[1, 9690, 198, 31530, 2]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, tuned(ids).logits, atol=1e-3)
    assert (merged_dir / "gekro_ft.json").exists() and (merged_dir / "tokenizer.json").exists()
