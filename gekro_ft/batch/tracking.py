"""MLflow for batch jobs and estimates: a run when ``MLFLOW_TRACKING_URI`` is set (a job is
often run far from any tracking store, as a bench is)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

EXPERIMENT = "gekro-ft-batch"


def _metrics(what: str, doc: dict[str, Any]) -> dict[str, float]:
    if what == "run":
        figures = {**{f"run_{k}": v for k, v in doc["this_run"].items()},
                   **{f"job_{k}": v for k, v in doc["job"].items()}}
        for k, v in ((doc.get("checks") or {}).get("share") or {}).items():
            figures[f"check_{k}"] = v
    else:
        figures = {"rows": doc["rows"], "input_tokens_per_row": doc["input_tokens_per_row"],
                   "output_tokens_per_row": doc["output_tokens_per_row"],
                   "local_output_tokens_per_s": doc["local"]["output_tokens_per_s"]}
        for p in doc["providers"]:
            name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{p['provider']}_{p['tier']}")
            figures[f"cost_usd_{name}"] = p["cost_usd"]
            if p["wall_s"] is not None:
                figures[f"wall_s_{name}"] = p["wall_s"]
            if p["tier"] == "standard" and p.get("tokens_from") == "measured":
                figures[f"output_tokens_per_row_{name.removesuffix('_standard')}"] = p["output_tokens_per_row"]
    return {k: float(v) for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def maybe_log(what: str, doc: dict[str, Any], artifacts: list[Path]) -> dict[str, str] | None:
    """Log a batch ``run`` or ``estimate`` document and its files; None without a tracking URI."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    from gekro_ft import tracking

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow = tracking.setup(EXPERIMENT)
    with mlflow.start_run(run_name=f"batch {what} {Path(doc['input']['path']).name}",
                          tags=tracking.parent_tags()) as run:
        mlflow.set_tags({"gekro_ft.stage": "batch", "gekro_ft.batch": what, "gekro_ft.model": str(doc["model"]),
                         "gekro_ft.engine": doc["engine"]["engine"]})
        mlflow.log_params({"input": doc["input"]["path"], "input_kind": doc["input"].get("kind"),
                           "input_sha256": doc["input"].get("sha256"), **{
                               k: v for k, v in (doc.get("settings") or {}).items() if v is not None}})
        mlflow.log_metrics(_metrics(what, doc))
        for path in artifacts:
            mlflow.log_artifact(str(path))
        return {"experiment": EXPERIMENT, "run_id": run.info.run_id}
