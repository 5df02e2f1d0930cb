"""One batch job, top to bottom: open the output (resuming what is there), pick the engine,
send every row not answered yet, file each answer or error as it comes, then read the whole
output back for the job's figures and checks, write the report and log it to MLflow.

MODEL is an adapter directory or ``models:/NAME@ALIAS`` (run on vLLM's offline engine in
vLLM's environment when asked, or when a GPU build of vLLM is found; else served on the CPU
engine for the job), or, with ``url``, a model on a running OpenAI-compatible endpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from gekro_ft import __version__
from gekro_ft.batch.inputs import BatchRow, count_rows, detect_kind, read_batch_rows
from gekro_ft.batch.job import JobFiles, read_lines
from gekro_ft.batch.records import Result, answer_record, error_record
from gekro_ft.errors import BatchError, Interrupted

SCHEMA_VERSION = 1
ENGINES = ("auto", "endpoint", "vllm")
# The suite metrics that judge an answer alone (no reference): the checks a batch can run.
CHECK_METRICS = ("json_valid", "json_schema")

# (description, rows to do) -> a context whose value advances a display by (rows, output tokens), or is None
Progress = Callable[[str, "int | None"], AbstractContextManager[Callable[[int, int], None] | None]]


@dataclass
class BatchSettings:
    model: str | None  # adapter DIR or models:/NAME@ALIAS; None with url
    input: Path
    output: Path
    url: str | None = None
    served_model: str | None = None  # the model name at ``url``
    api_key_env: str | None = None
    engine: str = "auto"
    input_kind: str | None = None
    schema: str | None = None
    suite: str | None = None
    concurrency: int = 8
    max_tokens: int = 256
    temperature: float = 0.0
    max_retries: int = 3  # the openai client's, on 429, 5xx and lost connections
    limit: int | None = None  # only the first N rows (an estimate's sample)
    report_dir: Path | None = None
    start_timeout_s: float = 600.0

    def check(self) -> None:
        if self.engine not in ENGINES:
            raise BatchError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.url and not self.served_model:
            raise BatchError(f"{self.url} is an endpoint: name its model with --model")
        if not self.url and not self.model:
            raise BatchError("give MODEL (an adapter directory or models:/NAME@ALIAS) or --url and --model")
        if self.url and self.engine == "vllm":
            raise BatchError("--engine vllm runs the adapter in vLLM's offline engine; it takes MODEL, not --url")
        if not self.input.exists():
            raise BatchError(f"{self.input}: no such file")

    @property
    def defaults(self) -> dict[str, Any]:
        """What a request carries when its row does not say (an OpenAI batch body may)."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature}

    def reports(self) -> Path:
        return self.report_dir or self.output.with_name(self.output.name.removesuffix(".jsonl") + ".report")


@dataclass
class Tally:
    """This run's figures, as answers arrive."""

    answered: int = 0
    failed: int = 0
    skipped_done: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors_by_code: Counter = field(default_factory=Counter)


def run_batch(s: BatchSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the report document. Raises :class:`Interrupted`
    (exit 130) after SIGINT/SIGTERM, with every answer received so far written."""
    s.check()
    kind = s.input_kind or detect_kind(s.input)
    checks = _check_metrics(s.suite)
    started, t_start = time.time(), time.perf_counter()
    tally = Tally()
    progress = progress or (lambda label, total: contextlib.nullcontext())
    with JobFiles(s.output, inputs=(s.input,)) as files:
        rows_in = s.limit if s.limit is not None else count_rows(s.input, kind, s.schema)
        with _engine(s) as engine, progress(f"batch {s.input.name}", max(rows_in - files.done_before, 0)) as advance:
            t0 = time.perf_counter()  # the job's clock starts once the engine is up: throughput, not loading
            startup = t0 - t_start

            def on_result(result: Result) -> None:
                if result.ok:
                    files.answer(result.row.id, answer_record(result, kind == "openai-batch"))
                    tally.answered += 1
                    tally.input_tokens += result.input_tokens or 0
                    tally.output_tokens += result.output_tokens or 0
                else:
                    files.error(error_record(result))
                    tally.failed += 1
                    tally.errors_by_code[result.error[0]] += 1
                if advance:
                    advance(1, result.output_tokens or 0)

            stopped = engine.run(_rows_to_send(s, kind, files, tally, on_result), on_result)
            files.flush()
            wall = time.perf_counter() - t0
    if stopped is not None:
        raise Interrupted(f"stopped by {signal.Signals(stopped).name}: {tally.answered} answers written to "
                          f"{s.output} this run ({len(files.done)} in all); rerun the same command to continue")
    doc = _report(s, kind, rows_in, engine.describe(), files, tally, checks, started, wall, startup)
    from gekro_ft.batch.report import write_run_report
    from gekro_ft.batch.tracking import maybe_log

    out_dir = s.reports()
    paths = write_run_report(doc, out_dir)
    doc["mlflow"] = maybe_log("run", doc, list(paths.values()))
    if doc["mlflow"]:
        write_run_report(doc, out_dir)
    return doc


def _rows_to_send(s: BatchSettings, kind: str, files: JobFiles, tally: Tally,
                  on_result: Callable[[Result], None]) -> Iterator[BatchRow]:
    """The rows the engine is given: not answered yet and sendable; a row that cannot be sent
    goes to the errors file here, with its line."""
    rows = read_batch_rows(s.input, kind, s.schema)
    if s.limit is not None:
        rows = islice(rows, s.limit)
    for row in rows:
        if row.error is not None:
            on_result(Result(row, error=row.error))
        elif row.id in files.done:
            tally.skipped_done += 1
        else:
            yield row


@contextlib.contextmanager
def _engine(s: BatchSettings) -> Iterator[Any]:
    from gekro_ft.batch.endpoint import EndpointEngine

    if s.url:
        yield EndpointEngine(s.url, s.served_model, api_key=_api_key(s), defaults=s.defaults,
                             concurrency=s.concurrency, max_retries=s.max_retries)
        return
    from gekro_ft.batch.server import SERVED_NAME, adapter_dir, cpu_engine

    adapter = adapter_dir(s.model)
    if s.engine == "vllm" or (s.engine == "auto" and _gpu_vllm_found()):
        from gekro_ft.adapter import adapter_base
        from gekro_ft.batch.offline import OfflineEngine

        base = adapter_base(adapter)
        if not base:
            raise BatchError(f"{adapter} does not name its base model (adapter_config.json, gekro_ft.json)")
        yield OfflineEngine(base, adapter, defaults=s.defaults, log=s.reports() / "vllm.log",
                            start_timeout_s=s.start_timeout_s)
        return
    with cpu_engine(adapter, log=s.reports() / "server.log", max_batch_size=s.concurrency,
                    start_timeout_s=s.start_timeout_s) as url:
        yield EndpointEngine(url, SERVED_NAME, api_key=None, defaults=s.defaults, concurrency=s.concurrency,
                             max_retries=s.max_retries)


def _gpu_vllm_found() -> bool:
    """``--engine auto`` takes vLLM's offline engine when a vLLM built for a GPU is found; its
    CPU build serves fewer tokens/s than the CPU engine on a CPU (benchmarks/README.md)."""
    from gekro_ft.errors import MissingDependencyError
    from gekro_ft.serve.vllm_program import find_vllm_python

    try:
        return not find_vllm_python().cpu
    except MissingDependencyError:
        return False


def _api_key(s: BatchSettings) -> str | None:
    """The key named by ``--api-key-env`` (named for this endpoint, so it may go there, rule 2 allowing)."""
    import os

    from gekro_ft.keys import send_key

    if s.api_key_env and not os.environ.get(s.api_key_env):
        raise BatchError(f"the environment variable {s.api_key_env} (the API key for --url) is not set")
    return send_key(s.url, s.api_key_env, explicit=True)


def _check_metrics(suite: str | None) -> list[Any]:
    if not suite:
        return []
    from gekro_ft.eval.suite import load_suite

    loaded = load_suite(suite)
    metrics = [m for m in loaded.metrics if m.name in CHECK_METRICS]
    if not metrics:
        raise BatchError(f"suite {loaded.name} has no check that judges an answer alone "
                         f"({', '.join(CHECK_METRICS)})")
    return metrics


def answer_text(record: dict[str, Any]) -> str | None:
    """The answer's text in an output line of either shape."""
    if "response" in record:
        try:
            return record["response"]["body"]["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
    return record.get("text")


def _usage(record: dict[str, Any]) -> tuple[int, int, str | None]:
    if "response" in record:
        body = (record.get("response") or {}).get("body") or {}
        usage = body.get("usage") or {}
        choice = (body.get("choices") or [{}])[0]
        return usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, choice.get("finish_reason")
    return record.get("input_tokens") or 0, record.get("output_tokens") or 0, record.get("finish_reason")


def _report(s: BatchSettings, kind: str, rows: int, engine: dict[str, Any], files: JobFiles, tally: Tally,
            checks: list[Any], started: float, wall: float, startup: float) -> dict[str, Any]:
    """The job's figures from the whole output (earlier runs included) and this run's own."""
    answered = in_tok = out_tok = 0
    finish: Counter = Counter()
    passed: Counter = Counter({k: 0 for m in checks for k in m.aggregate_keys})
    for record in read_lines(s.output):
        answered += 1
        i, o, reason = _usage(record)
        in_tok, out_tok = in_tok + i, out_tok + o
        finish[reason or "unknown"] += 1
        if checks:
            text = answer_text(record) or ""
            for m in checks:
                for key, value in m.score_one(text, "").items():
                    if key in m.aggregate_keys:
                        passed[key] += value == 1.0
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "batch-run",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "gekro_ft_version": __version__,
        "model": s.model or s.served_model,
        "engine": engine,
        "input": {"path": str(s.input), "kind": kind, "rows": rows, "sha256": _sha256(s.input)},
        "output": {"path": str(s.output), "errors": str(files.errors)},
        "settings": {"max_tokens": s.max_tokens, "temperature": s.temperature, "concurrency": s.concurrency,
                     "suite": s.suite, "limit": s.limit},
        "this_run": {"answered": tally.answered, "failed": tally.failed, "skipped_done": tally.skipped_done,
                     "torn_bytes_cut": files.torn_bytes, "wall_s": round(wall, 3),
                     "startup_s": round(startup, 3),
                     "input_tokens": tally.input_tokens, "output_tokens": tally.output_tokens,
                     "rows_per_s": tally.answered / wall if wall > 0 else None,
                     "output_tokens_per_s": tally.output_tokens / wall if wall > 0 else None,
                     "errors_by_code": dict(tally.errors_by_code)},
        "job": {"answered": answered, "failed_last_run": tally.failed, "input_tokens": in_tok,
                "output_tokens": out_tok, "finish_reasons": dict(finish),
                "input_tokens_per_row": in_tok / answered if answered else None,
                "output_tokens_per_row": out_tok / answered if answered else None},
        "checks": ({"suite": s.suite, "checked": answered,
                    "passed": dict(passed), "share": {k: v / answered for k, v in passed.items()} if answered else {}}
                   if checks else None),
    }


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
