"""``gekro-ft demo``: the shipped ``pipelines/demo.yaml`` — every stage on the embedded
default, on a machine with 2 CPU cores, no GPU and no network.

It is the pipeline with two conveniences for a first run: its work directory and MLflow
store are its own (``work/demo``, ``work/demo/mlflow.db``), and running it again
continues where it stopped instead of asking for ``--resume``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from gekro_ft.pipeline.config import load_pipeline
from gekro_ft.pipeline.run import PipelineOutcome, run_pipeline
from gekro_ft.pipeline.state import STATE_FILE

DEMO_WORK = Path("work/demo")


def run_demo(work: Path = DEMO_WORK, overrides: list[str] = (),
             say: Callable[[str], None] = print) -> PipelineOutcome:
    p = load_pipeline("demo", list(overrides))
    work = Path(work).resolve()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    resume = (work / STATE_FILE).exists()
    if resume:
        say(f"continuing the demo in {work} (delete it to start over)")
    return run_pipeline(p, work, resume=resume, say=say)
