"""MLflow for bench runs: only when ``MLFLOW_TRACKING_URI`` is set (a bench is often run
against someone else's server, from a machine with no tracking wanted)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

EXPERIMENT = "gekro-ft-bench"
ARTIFACTS = ("bench.json", "bench.md", "bench.html", "bench.png", "requests.jsonl")
_FIGURES = ("request_throughput", "output_tokens_per_s", "total_tokens_per_s", "error_rate", "errors",
            "completed", "requests", "duration_s", "goodput_rps", "achieved_rate", "max_in_flight")


@contextlib.contextmanager
def maybe_run(doc: dict[str, Any]) -> Iterator[Callable[[Path], None]]:
    """Open an MLflow run for ``doc`` (adding ``doc["mlflow"]``) and yield the function that
    logs the written outputs as its artifacts; without a tracking URI, do nothing."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        yield lambda _: None
        return
    from gekro_ft import tracking

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow = tracking.setup(EXPERIMENT)
    s = doc["settings"]
    with mlflow.start_run(run_name=f"bench {s['model']} {s['mode']}", tags=tracking.parent_tags()) as run:
        doc["mlflow"] = {"experiment": EXPERIMENT, "run_id": run.info.run_id}
        mlflow.log_params(params(s))
        mlflow.set_tags({"gekro_ft.stage": "bench", "gekro_ft.engine": doc["engine"],
                         "gekro_ft.model": s["model"], "gekro_ft.command": " ".join(doc["command"])[:5000]})
        for i, level in enumerate(doc["levels"]):
            step = level["concurrency"] if s["mode"] == "concurrency" else i
            mlflow.log_metrics(metrics(level), step=step)

        def log_artifacts(out_dir: Path) -> None:
            for name in ARTIFACTS:
                if (Path(out_dir) / name).is_file():
                    mlflow.log_artifact(str(Path(out_dir) / name))

        yield log_artifacts


def params(settings: dict[str, Any]) -> dict[str, str]:
    """bench.json's settings as MLflow params (they hold the key's variable name, never a key)."""
    out = {}
    for k, v in settings.items():
        if v is None:
            continue
        if isinstance(v, dict):
            v = ",".join(f"{a}={b:g}" for a, b in v.items())
        elif isinstance(v, list):
            v = ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
        out[k] = str(v)[:500]
    return out


def metrics(level: dict[str, Any]) -> dict[str, float]:
    """A level's figures as flat MLflow metrics: ``ttft_ms_p99``, ``request_throughput``..."""
    out = {k: float(level[k]) for k in _FIGURES if level.get(k) is not None}
    if level.get("rate") is not None:
        out["rate"] = float(level["rate"])
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        for stat, value in level[name].items():
            if value is not None:
                out[f"{name}_{stat}"] = float(value)
    return out
