"""The multi-process launch's pieces that need no second process (the real launch is in
test_train_processes.py): the launcher command, the recipe key, torch.load onto cpu:N."""

from __future__ import annotations

import io
from pathlib import Path

import pytest


def test_the_launch_runs_the_same_cli_under_accelerate_with_a_port_of_its_own():
    from gekro_ft.train.launch import launch_command

    cmd = launch_command(2, ["train", "r.yaml", "--set", "train.max_steps=3"], port=29555)
    assert cmd[1:3] == ["-m", "gekro_ft.train.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--main_process_port") + 1] == "29555"
    assert "--multi_gpu" in cmd  # accelerate's torch.distributed launcher: the one that starts N processes
    assert cmd[-6:] == ["-m", "gekro_ft.cli", "train", "r.yaml", "--set", "train.max_steps=3"]
    own = launch_command(4, ["train", "r.yaml"], config_file=Path("fsdp.yaml"))
    assert own[own.index("--config_file") + 1] == "fsdp.yaml" and "--multi_gpu" not in own


def test_launcher_config_resolves_against_the_recipe(tmp_path):
    from gekro_ft.recipe import load_recipe

    (tmp_path / "r.yaml").write_text("model: {name: smollm2-135m-instruct}\ndata: {train: d.jsonl}\n"
                                     "train: {max_steps: 2, processes: 2, launcher_config: ds.yaml}\n")
    r = load_recipe(str(tmp_path / "r.yaml"))
    assert r.train.processes == 2 and Path(r.train.launcher_config) == tmp_path / "ds.yaml"


def test_one_process_agrees_with_itself():
    from gekro_ft.train.launch import agree

    assert agree(True) is True and agree(False) is False


def test_checkpoints_load_onto_an_indexed_cpu_device():
    import torch

    from gekro_ft.train.launch import allow_indexed_cpu_devices

    buf = io.BytesIO()
    torch.save({"step": torch.arange(3)}, buf)
    buf.seek(0)
    allow_indexed_cpu_devices()
    loaded = torch.load(buf, map_location=torch.device("cpu", 1), weights_only=True)
    assert loaded["step"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_processes_must_be_positive(cli, bad):
    result = cli("train", "smollm2-135m-cpu", "--processes", bad, "--dry-run")
    assert result.exit_code == 2 and "--processes" in result.output
