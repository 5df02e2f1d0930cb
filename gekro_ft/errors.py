"""Every exception type of the library, each with the word a user reads and its exit code.

The CLI turns them, in one table (``gekro_ft.cli.errors``), into one line on stderr:
``Error (KIND): message (hint)`` and exits with ``EXIT_CODE``. Library code raises these
for user mistakes; anything else escaping is a bug and shows a traceback.

Exit codes across the CLI: 0 success, 1 the checked thing failed (findings with errors,
a failed gate: not an exception), 2 the command could not do its job, 130 stopped by a
signal (resumable).

Families: a :class:`ConfigError` is any config file the user wrote or named (recipe, eval
suite and its metrics and gate, serve profile, pipeline file, price table), so each says
which kind of file it is instead of borrowing another kind's word.
"""

from __future__ import annotations

from pathlib import Path


class GekroError(Exception):
    """Base of every error that a user can fix."""

    kind = "error"
    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


# --- inputs and outputs ------------------------------------------------------------------

class InputFileError(GekroError):
    """An input file cannot be read at all: missing, wrong format, malformed framing."""

    kind = "cannot read input"

    def __init__(self, path: str | Path, message: str, line: int | None = None,
                 hint: str | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}", hint)
        self.path = str(path)
        self.line = line


class SchemaError(GekroError):
    """The schema of a dataset cannot be decided or is not one we support."""

    kind = "schema"


class DataError(GekroError):
    """A row or a setting of the data stage that cannot be used (a row number out of range...)."""

    kind = "data"


class TemplateMissingError(GekroError):
    """The tokenizer has no chat template and none was given."""

    kind = "chat template"


class OutputError(GekroError):
    """An output cannot be written (exists, unwritable directory...)."""

    kind = "cannot write output"


class ModelNotFoundError(GekroError):
    """A base model or tokenizer could not be resolved locally."""

    kind = "model not found"


class MissingDependencyError(GekroError):
    """An optional dependency is not installed; the message names the extra."""

    kind = "missing dependency"


class KeyRefusedError(GekroError):
    """An API key would travel where it must not (plain HTTP to another machine; see gekro_ft.keys)."""

    kind = "api key"


# --- config files ------------------------------------------------------------------------

class ConfigError(GekroError):
    """A config file cannot be found, parsed or validated; ``problems`` lists every problem,
    each naming its key. ``lines`` (same length, None where unknown) says where in the file
    each one is; the message shows them."""

    kind = "config"

    def __init__(self, source: str, problems: list[str] | str, hint: str | None = None,
                 lines: list[int | None] | None = None):
        problems = [problems] if isinstance(problems, str) else list(problems)
        lines = list(lines) if lines is not None else [None] * len(problems)
        shown = [f"{p} (line {n})" if n is not None else p for p, n in zip(problems, lines)]
        super().__init__(f"{source}: " + "; ".join(shown), hint)
        self.source = source
        self.problems = problems
        self.lines = lines


class RecipeError(ConfigError):
    """A training recipe."""

    kind = "recipe"


class SuiteError(ConfigError):
    """An eval suite (its file, data, metrics or gate)."""

    kind = "eval suite"


class MetricError(SuiteError):
    """A metric spec is wrong, or a reference does not fit a metric."""

    kind = "eval metric"

    def __init__(self, problems: list[str], source: str | None = None):
        super().__init__(source or "metrics", problems)
        if source is None:  # no file to name: the problems speak for themselves
            self.message = "; ".join(self.problems)


class GateError(SuiteError):
    """A gate that does not parse, or cannot be decided on the metrics at hand."""

    kind = "eval gate"

    def __init__(self, message: str, hint: str | None = None):
        GekroError.__init__(self, message, hint)
        self.source, self.problems, self.lines = "gate", [message], [None]


class ProfileError(ConfigError):
    """A serving profile or an ``--adapter`` option cannot be found, parsed or validated, or an
    adapter does not fit the profile's base model."""

    kind = "serve profile"


class RouteProfileError(ConfigError):
    """A route profile (the router's policy) cannot be found, parsed or validated."""

    kind = "route profile"


class PipelineConfigError(ConfigError):
    """A pipeline file."""

    kind = "pipeline file"


class PriceError(ConfigError):
    """A price table cannot be read, or a name is not in it."""

    kind = "price table"

    def __init__(self, message: str, hint: str | None = None):
        GekroError.__init__(self, message, hint)
        self.source, self.problems, self.lines = "prices", [message], [None]


# --- stages ------------------------------------------------------------------------------

class PreflightError(GekroError):
    """A training run would fail or waste the night: bad data, or it will not fit in memory."""

    kind = "preflight"


class TrainingError(GekroError):
    """A training run cannot start or continue (checkpoints in the way, none to resume)."""

    kind = "train"


class EvalError(GekroError):
    """An eval cannot run: an eval example that cannot be scored, a candidate that cannot be promoted."""

    kind = "eval"


class ProviderError(EvalError):
    """A candidate or baseline spec is wrong, or its key or files are missing."""

    kind = "eval provider"


class RegistryError(GekroError):
    """A registered model, version or alias does not exist, or the registry cannot be reached."""

    kind = "registry"


class TrackingError(GekroError):
    """The MLflow tracking server cannot be reached, or stopped answering mid-run (the work done
    so far is kept: a checkpoint for training, the report files for eval)."""

    kind = "tracking"


class ServeError(GekroError):
    """A server did not start or become healthy, or refused a runtime adapter change."""

    kind = "serve"


class BenchError(GekroError):
    """A benchmark cannot run or its file cannot be read."""

    kind = "bench"


class CostError(GekroError):
    """A cost figure cannot be computed from what was given."""

    kind = "cost"


class RouteError(GekroError):
    """The router cannot start, an upstream it needs is unusable, or calibration cannot run."""

    kind = "route"


class BatchError(GekroError):
    """A batch job cannot start: its input, model or output cannot be used (rows that fail go to
    the errors file instead)."""

    kind = "batch"


class PipelineError(GekroError):
    """A pipeline stage failed (the message names the stage and where its output is), or its
    work directory holds another run."""

    kind = "pipeline"


# --- stopped by a signal -----------------------------------------------------------------

class Interrupted(GekroError):
    """SIGINT/SIGTERM: the work stopped cleanly and can be resumed."""

    kind = "interrupted"
    exit_code = 130


class TrainingInterrupted(Interrupted):
    """A checkpoint was saved and the MLflow run ended as KILLED; ``--resume`` continues."""


class PipelineInterrupted(Interrupted):
    """The running stage stopped cleanly; ``--resume`` continues."""


def one_line(exc: GekroError) -> str:
    """What a user reads: ``Error (KIND): message (hint)`` on one line."""
    return f"Error ({exc.kind}): " + " ".join(str(exc).split())  # messages can embed parser output


def error_types() -> list[type[GekroError]]:
    """Every exception type above, most specific first (what the CLI table walks)."""
    seen: list[type[GekroError]] = []
    todo = [GekroError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    own = [c for c in seen if c.__module__ == __name__]
    return sorted(own, key=lambda c: -len(c.__mro__))
