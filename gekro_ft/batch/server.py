"""The CPU engine started for a job's adapter, in a process of its own, the way ``gekro-ft
serve`` starts it (:func:`gekro_ft.serve.launch.serve` on a profile with this adapter).

It runs in its own session: a Ctrl-C in the terminal reaches the job alone, which cancels
what is in flight and writes what it has before it stops the server.

    python -m gekro_ft.batch.server OVERRIDES.json    # what the job runs; not for users
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

SERVED_NAME = "batch"  # the name the adapter is served under, for the job alone


def adapter_dir(spec: str) -> Path:
    """An adapter directory, or the one a ``models:/NAME@ALIAS`` reference resolves to now."""
    from gekro_ft.errors import BatchError

    if spec.startswith("models:/"):
        from gekro_ft.registry import download_adapter

        return download_adapter(spec)
    path = Path(spec)
    if (path / "adapter_config.json").is_file():
        return path
    raise BatchError(f"{spec} is neither an adapter directory (no adapter_config.json) nor models:/NAME@ALIAS",
                     hint="or give a running endpoint with --url and --model")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def cpu_engine(adapter: Path, *, log: Path, max_batch_size: int = 8,
               start_timeout_s: float = 600.0) -> Iterator[str]:
    """Serve ``adapter`` on the CPU engine while the block runs; yields its base URL (``…/v1``)."""
    from gekro_ft.adapter import adapter_base
    from gekro_ft.process import stop_process, wait_healthy

    port = _free_port()
    overrides: dict[str, Any] = {"engine": "cpu", "host": "127.0.0.1", "port": port,
                                 "adapters": {SERVED_NAME: str(Path(adapter).resolve())},
                                 "cpu": {"max_batch_size": max_batch_size}}
    base = adapter_base(adapter)
    if base:
        overrides["base_model"] = base
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gekro_ft.batch.server", orjson.dumps(overrides).decode()],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, start_timeout_s, proc)
        yield url + "/v1"
    finally:
        stop_process(proc, grace=30)


def main(argv: list[str]) -> int:
    from gekro_ft.errors import GekroError, one_line
    from gekro_ft.serve.launch import serve
    from gekro_ft.serve.profile import load_profile

    try:
        return serve(load_profile(None, orjson.loads(argv[0])))
    except GekroError as e:
        print(one_line(e), file=sys.stderr, flush=True)
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
