"""The library's own exception types.

The CLI maps each of them, in one table (``gekro_ft.cli.errors``), to a one-line
message and an exit code. Library code raises these for user mistakes; anything
else escaping is a bug and shows a traceback.
"""

from __future__ import annotations

from pathlib import Path


class GekroError(Exception):
    """Base of every error that a user can fix."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InputFileError(GekroError):
    """An input file cannot be read at all: missing, wrong format, malformed framing."""

    def __init__(self, path: str | Path, message: str, line: int | None = None,
                 hint: str | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}", hint)
        self.path = str(path)
        self.line = line


class SchemaError(GekroError):
    """The schema of a dataset cannot be decided or is not one we support."""


class ModelNotFoundError(GekroError):
    """A base model or tokenizer could not be resolved locally."""


class MissingDependencyError(GekroError):
    """An optional dependency is not installed; the message names the extra."""


class OutputError(GekroError):
    """An output cannot be written (exists, unwritable directory...)."""


class RecipeError(GekroError):
    """A recipe cannot be found, parsed or validated; ``problems`` lists every problem."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


class ProfileError(GekroError):
    """A serving profile or an ``--adapter`` option cannot be found, parsed or validated, or an
    adapter does not fit the profile's base model; ``problems`` lists every problem."""

    def __init__(self, source: str, problems: list[str], hint: str | None = None):
        super().__init__(f"{source}: " + "; ".join(problems), hint)
        self.source = source
        self.problems = problems


class ServeError(GekroError):
    """A server did not start or become healthy, or refused a runtime adapter change."""


class PreflightError(GekroError):
    """A training run would fail or waste the night: bad data, or it will not fit in memory."""


class TrainingInterrupted(GekroError):
    """SIGINT/SIGTERM: a checkpoint was saved and the MLflow run ended as KILLED."""


class PipelineError(GekroError):
    """A pipeline file is wrong (the message names the file and every bad key), or a stage
    failed (the message names the stage and where its output is)."""


class PipelineInterrupted(TrainingInterrupted):
    """SIGINT/SIGTERM during a pipeline: the running stage stopped cleanly; --resume continues."""
