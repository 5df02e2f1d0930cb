"""The offline engine: vLLM's ``LLM.generate`` with a ``LoRARequest``, no HTTP in between.

vLLM runs in its own environment (found as ``gekro-ft serve`` finds it: this environment
when it has vLLM, else ``$GEKRO_FT_VLLM``, a ``vllm`` command on PATH, ``./.venv-vllm``), in a
worker process, :mod:`gekro_ft.batch.vllm_worker`, which that environment's Python runs. The
job hands the worker ``chunk_rows`` rows at a time; vLLM schedules a whole chunk with
continuous batching, and each chunk's answers reach the output before the next is sent, so
a stop loses at most one chunk. Prompts are the chat template's rendering of each row's
messages, as the server would render them.

SIGINT and SIGTERM stop the job after the chunk in flight (:class:`gekro_ft.process.StopOnSignal`);
a second one stops it at once. The worker runs in its own session, so a terminal's Ctrl-C
reaches only the job, which then closes the worker's input; a worker still there after the
grace period is killed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

from gekro_ft.batch.inputs import BatchRow
from gekro_ft.batch.records import Result, completion_body
from gekro_ft.errors import BatchError

WORKER = Path(__file__).with_name("vllm_worker.py")


class OfflineEngine:
    kind = "vllm-offline"

    def __init__(self, base_model: str, adapter: Path | None, *, defaults: dict[str, Any], log: Path,
                 chunk_rows: int = 256, max_model_len: int | None = None, max_lora_rank: int | None = None,
                 dtype: str = "auto", start_timeout_s: float = 900.0):
        self.base_model, self.adapter, self.defaults, self.log = base_model, adapter, defaults, log
        self.chunk_rows, self.max_model_len, self.max_lora_rank = chunk_rows, max_model_len, max_lora_rank
        self.dtype, self.start_timeout_s = dtype, start_timeout_s
        self.model = "batch" if adapter else base_model
        self.program: Any = None

    def describe(self) -> dict[str, Any]:
        return {"engine": self.kind, "base_model": self.base_model,
                "adapter": str(self.adapter) if self.adapter else None, "chunk_rows": self.chunk_rows,
                "vllm": self.program.describe() if self.program else None}

    def run(self, rows: Iterator[BatchRow], on_result: Callable[[Result], None]) -> int | None:
        from gekro_ft.process import StopOnSignal

        with self._worker() as worker, StopOnSignal() as stop:
            while chunk := list(islice(rows, self.chunk_rows)):
                for result in worker.generate(chunk, self.defaults):
                    on_result(result)
                if stop.received is not None:
                    return stop.received
        return None

    def config(self) -> dict[str, Any]:
        """What the worker is started with: where vLLM loads the base and the adapter from."""
        from gekro_ft.models import resolve_model

        config: dict[str, Any] = {"model": resolve_model(self.base_model).source, "adapter": None,
                                  "lora_name": self.model, "max_model_len": self.max_model_len, "dtype": self.dtype}
        if self.adapter is not None:
            from gekro_ft.adapter import inspect_adapter
            from gekro_ft.serve.lora import lora_rank_for

            config.update(adapter=str(self.adapter), max_lora_rank=self.max_lora_rank
                          or lora_rank_for([inspect_adapter(self.adapter).max_rank]))
        return config

    @contextlib.contextmanager
    def _worker(self) -> Iterator[_Worker]:
        import os
        import signal

        from gekro_ft.process import stop_process
        from gekro_ft.serve.vllm_program import cpu_env, find_vllm_python

        self.program = find_vllm_python()
        env = {**os.environ, **cpu_env(self.program, kvcache_gib=1, threads_bind="auto", environ=os.environ)}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            # -I: the worker's directory (gekro_ft/batch) must not shadow vLLM's imports
            proc = subprocess.Popen([self.program.path, "-I", str(WORKER), json.dumps(self.config())],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                    start_new_session=True, text=True, encoding="utf-8")
        worker = _Worker(proc, self.log, self.model)
        try:
            worker.wait_ready(self.start_timeout_s)
            yield worker
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # end of input: the worker exits
            stop_process(proc, grace=30.0)
            with contextlib.suppress(ProcessLookupError, PermissionError):  # its session: vLLM's engine process
                os.killpg(proc.pid, signal.SIGKILL)


class _Worker:
    """The job's side of the pipes to one running worker."""

    def __init__(self, proc: subprocess.Popen, log: Path, model: str):
        self.proc, self.log, self.model = proc, log, model

    def wait_ready(self, timeout_s: float) -> None:
        import selectors
        import time

        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            while not sel.select(timeout=1.0):
                if self.proc.poll() is not None:
                    raise self._died("loading the model")
                if time.monotonic() > deadline:
                    raise BatchError(f"vLLM's worker did not load the model within {timeout_s:g} s; "
                                     f"its log is {self.log}")
        self._reply("loading the model")  # {"ready": true, ...}

    def generate(self, chunk: list[BatchRow], defaults: dict[str, Any]) -> list[Result]:
        requests = []
        for n, row in enumerate(chunk):
            body = {**defaults, **(row.body or {})}
            requests.append({"key": n, "messages": body["messages"], "tools": body.get("tools"),
                             "max_tokens": int(body.get("max_completion_tokens") or body.get("max_tokens") or 256),
                             "temperature": body.get("temperature"), "top_p": body.get("top_p"),
                             "seed": body.get("seed"), "stop": body.get("stop")})
        self._send({"rows": requests})
        replies = self._reply(f"answering {len(chunk)} rows")["results"]
        return [self._result(row, reply) for row, reply in zip(chunk, replies)]

    def _result(self, row: BatchRow, reply: dict[str, Any]) -> Result:
        if "error" in reply:
            return Result(row, error=tuple(reply["error"]))
        n_in, n_out = reply["input_tokens"], reply["output_tokens"]
        return Result(row, text=reply["text"], finish_reason=reply["finish_reason"], input_tokens=n_in,
                      output_tokens=n_out,
                      body=completion_body(self.model, reply["text"], reply["finish_reason"], n_in, n_out))

    def _send(self, message: dict[str, Any]) -> None:
        stdin: IO[str] = self.proc.stdin  # type: ignore[assignment]
        try:
            stdin.write(json.dumps(message) + "\n")
            stdin.flush()
        except BrokenPipeError:
            raise self._died("taking rows") from None

    def _reply(self, doing: str) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise self._died(doing)
        return json.loads(line)

    def _died(self, doing: str) -> BatchError:
        """One line: the worker's exit, the last line of its log (a traceback's ends in the
        error itself) and where the rest is."""
        code = self.proc.wait()
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        last = next((line.strip() for line in reversed(lines) if line.strip()), "nothing logged")
        return BatchError(f"vLLM's worker exited ({code}) while {doing}: {last} (its log: {self.log})")

