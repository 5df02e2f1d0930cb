"""``WORK/pipeline.json``: which stages finished, what they left, and the MLflow parent run.

Written atomically after every stage change, so a crash or a kill leaves the last
finished stage on record and ``--resume`` restarts at the first one that did not finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.atomic import write_bytes_atomic
from gekro_ft.errors import PipelineError

STATE_FILE = "pipeline.json"


@dataclass
class PipelineState:
    path: Path
    fingerprint: str
    parent_run_id: str | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, work: Path, fingerprint: str, resume: bool) -> PipelineState:
        """A new state for a fresh ``work``, or the saved one when resuming the same pipeline."""
        path = work / STATE_FILE
        if not path.exists():
            return cls(path, fingerprint)
        if not resume:
            raise PipelineError(f"{work} already holds a pipeline run ({path})",
                                hint="add --resume to continue it, or choose another --work")
        try:
            saved = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as e:
            raise PipelineError(f"{path}: not valid JSON ({e})", hint="delete it to start over") from None
        if saved.get("fingerprint") != fingerprint:
            raise PipelineError(f"{work} holds a run of a different pipeline (the file or its --set values changed)",
                                hint="resume with the same settings, or choose another --work")
        return cls(path, fingerprint, saved.get("parent_run_id"), saved.get("stages", {}))

    def done(self, stage: str) -> bool:
        return self.stages.get(stage, {}).get("status") == "done"

    def mark(self, stage: str, status: str, **details: Any) -> None:
        self.stages[stage] = {**self.stages.get(stage, {}), "status": status, "at": time.time(), **details}
        self.save()

    def save(self) -> None:
        doc = {"schema_version": 1, "fingerprint": self.fingerprint, "parent_run_id": self.parent_run_id,
               "stages": self.stages}
        write_bytes_atomic(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
