"""An eval as an MLflow run: both sides' aggregates, the verdict, the report files, and a
link both ways to the training run that produced the candidate (when it is in this store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXPERIMENT = "gekro-ft-eval"


def log_eval(report: dict[str, Any], paths: dict[str, Path], training_run_id: str | None) -> dict[str, Any]:
    from gekro_ft.tracking import lost_error, lost_server

    try:
        return _log(report, paths, training_run_id)
    except Exception as e:
        if lost_server(e):
            where = Path(next(iter(paths.values()))).parent if paths else "the output directory"
            raise lost_error(e, "logging the eval", hint=f"the report is in {where}; rerun the eval when the "
                             "server is back (endpoint answers are recorded and replayed)") from None
        raise


def _log(report: dict[str, Any], paths: dict[str, Path], training_run_id: str | None) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from gekro_ft.tracking import parent_tags, setup, tracking_uri

    mlflow = setup(EXPERIMENT)
    suite, gate = report["suite"], report["gate"]
    tags = {**parent_tags(), "gekro_ft.kind": "eval", "gekro_ft.verdict": gate["verdict"], "gekro_ft.suite": suite["name"]}
    if training_run_id:
        tags["gekro_ft.training_run_id"] = training_run_id
    with mlflow.start_run(run_name=f"eval-{suite['name']}", tags=tags) as run:
        params = {"suite": suite["name"], "data_sha256": suite["data_sha256"], "examples": suite["examples"],
                  "gate": gate["expression"][:500], "max_tokens": suite["generation"]["max_tokens"],
                  "temperature": suite["generation"]["temperature"]}
        for role, side in report["sides"].items():
            params[f"{role}.spec"] = side["provider"]["spec"][:500]  # specs name key variables, never keys
        mlflow.log_params(params)
        metrics = {"gate_passed": float(gate["verdict"] == "pass")}
        for role, side in report["sides"].items():
            for k, v in side["aggregates"].items():
                if isinstance(v, (int, float)):
                    metrics[f"{role}.{k}"] = float(v)
        mlflow.log_metrics(metrics)
        for p in paths.values():
            mlflow.log_artifact(str(p), artifact_path="report")
        run_id = run.info.run_id
    if training_run_id:  # the other direction: the training run points at its latest eval
        try:
            MlflowClient(tracking_uri=tracking_uri()).set_tag(training_run_id, "gekro_ft.last_eval_run_id", run_id)
        except MlflowException:
            pass  # trained against another tracking store: the eval run's tag still records the link
    return {"run_id": run_id, "experiment": EXPERIMENT}
