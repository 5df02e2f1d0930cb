"""Terminal output: results to stdout, diagnostics and progress to stderr."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from rich.console import Console

from gekro_ft.progress import err  # the one stderr console, shared with the library

out = Console(highlight=False, soft_wrap=True)


def print_json(obj) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


@contextlib.contextmanager
def file_progress(path: str | Path, description: str) -> Iterator[Callable[[int], None] | None]:
    """A byte-progress bar over ``path`` on stderr; yields the ``on_bytes`` callback (None when
    stderr is not a terminal, so pipes and CI logs stay clean)."""
    path = Path(path)
    if not err.is_terminal or not path.is_file():
        yield None
        return
    from rich.progress import (BarColumn, DownloadColumn, Progress, TimeRemainingColumn,
                               TransferSpeedColumn)

    # redrawn from on_bytes, not by rich's refresh thread: the data stage forks its workers,
    # which it does only while this process runs no other thread (gekro_ft.data.chunks)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err, transient=True,
                  auto_refresh=False) as bar:
        task = bar.add_task(description, total=path.stat().st_size)
        pending, drawn = 0, 0.0

        def on_bytes(n: int) -> None:
            nonlocal pending, drawn
            pending += n
            if pending >= 1 << 20:  # counted per MiB
                now = time.monotonic()
                # drawn at most ten times a second as blocks are read (one call per block);
                # always when a worker's whole range is done (a few calls a run, seconds apart,
                # and several at once when ranges ended out of order)
                due = now - drawn >= 0.1 or n > 1 << 20
                bar.update(task, advance=pending, refresh=due)
                pending = 0
                if due:
                    drawn = now

        yield on_bytes
