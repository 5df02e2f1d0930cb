"""MLflow set-up shared by the stages: where runs go, the link to a pipeline's parent run, and
the adapter's registry version."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

DEFAULT_DB = "mlflow.db"


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else a SQLite file in the working directory (registry included)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


_USERINFO = re.compile(r"//[^/@\s]+@")


def shown_uri(text: str | None = None) -> str:
    """``text`` (the tracking URI by default) with any ``user:password@`` taken out: a URI for
    a server behind basic auth must not reach a log, a report or an exception."""
    return _USERINFO.sub("//***@", tracking_uri() if text is None else text)


def is_server(uri: str | None = None) -> bool:
    return (uri or tracking_uri()).startswith(("http://", "https://"))


def lost_server(exc: BaseException) -> bool:
    """Whether ``exc`` says the tracking server could not be reached (connection refused, reset,
    timed out after MLflow's own retries), as opposed to a request it refused."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, requests.RequestException):
        return True
    return isinstance(exc, MlflowException) and str(exc).startswith("API request to")


def lost_error(exc: BaseException, doing: str, *, hint: str):
    """The TrackingError a stage raises when the server went away while it was ``doing`` something."""
    from gekro_ft.errors import TrackingError

    reason = shown_uri(str(exc).split(" failed with ")[-1]).splitlines()[0][:200]
    return TrackingError(f"the MLflow tracking server at {shown_uri()} stopped answering while {doing} "
                         f"({reason})", hint=hint)


PARENT_ENV = "GEKRO_FT_PARENT_RUN_ID"


def setup(experiment: str) -> Any:
    """Point mlflow at the tracking store and ``experiment`` — or, inside a pipeline, at the
    pipeline's experiment, since MLflow shows child runs only under a parent in the same one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri())
    try:
        parent = os.environ.get(PARENT_ENV)
        if parent:
            mlflow.set_experiment(experiment_id=mlflow.MlflowClient().get_run(parent).info.experiment_id)
            return mlflow
        if mlflow.get_experiment_by_name(experiment) is None:
            try:
                mlflow.create_experiment(experiment, artifact_location=_artifact_root())
            except MlflowException as e:
                if lost_server(e):
                    raise
                # else another process created it first
        mlflow.set_experiment(experiment)
    except Exception as e:
        if lost_server(e):
            raise lost_error(e, "setting up the experiment", hint="start it (mlflow server …), or unset "
                             "MLFLOW_TRACKING_URI to track in ./mlflow.db") from None
        raise
    return mlflow


def _artifact_root() -> str | None:
    """Artifacts beside a SQLite store (``DIR/mlartifacts``), not in whatever directory the
    first run happened to start in; a tracking server decides for itself."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def parent_tags() -> dict[str, str]:
    """Tags that make a run a child of the pipeline run that started this process, if any."""
    parent = os.environ.get(PARENT_ENV)
    return {"mlflow.parentRunId": parent} if parent else {}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def register_adapter(run_id: str, artifact_path: str, name: str, tags: dict[str, str]) -> str:
    """Register the run's adapter artifact as a new version of ``name``; return the version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri())
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    return str(version.version)
