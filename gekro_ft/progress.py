"""Progress shown while long work runs: on stderr, so stdout keeps the results.

The CLI and the pipeline's stage processes both show these; a bar draws only when stderr
is a terminal, so CI logs and pipes stay clean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def training_progress(console: Console = err) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A step bar with loss, eval loss and tokens/s; yields training's ``on_progress`` callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("step {task.completed}/{task.total}"), BarColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=None, info="")

        def on_progress(p: dict[str, Any]) -> None:
            info = []
            if "loss" in p:
                info.append(f"loss {p['loss']:.3f}")
            if "eval_loss" in p:
                info.append(f"eval {p['eval_loss']:.3f}")
            if "tokens_per_s" in p:
                info.append(f"{p['tokens_per_s']:.0f} tok/s")
            fields = {"info": "  ".join(info)} if info else {}
            bar.update(task, completed=p["step"], total=p.get("max_steps") or None, **fields)

        yield on_progress


@contextlib.contextmanager
def level_progress(console: Console = err) -> Iterator[Callable[[str, int, int | None], None]]:
    """A bar per bench level (a line per level when stderr is not a terminal); yields the load
    generator's ``progress(label, done, total)`` callback."""
    if not console.is_terminal:
        def lines(label: str, done: int, total: int | None) -> None:
            if done == 0:
                console.print(f"{label}: {total if total is not None else 'timed'} requests")

        yield lines
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task: list[Any] = []

        def update(label: str, done: int, total: int | None) -> None:
            if done == 0:
                task[:] = [bar.add_task(label, total=total)]
            else:
                bar.update(task[0], completed=done)

        yield update


@contextlib.contextmanager
def count_progress(description: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar over ``total`` items on stderr; yields ``advance(n)`` (None when stderr
    is not a terminal)."""
    if not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def rows_progress(description: str, total: int | None) -> Iterator[Callable[[int, int], None] | None]:
    """A bar over a batch job's rows with output tokens/s and the time left, on stderr; yields
    ``advance(rows, output_tokens)`` (None when stderr is not a terminal)."""
    if not err.is_terminal:
        yield None
        return
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[speed]}"), TimeRemainingColumn(), console=err, transient=False) as bar:
        task = bar.add_task(description, total=total, speed="")
        start, tokens = time.monotonic(), 0

        def advance(rows: int, output_tokens: int) -> None:
            nonlocal tokens
            tokens += output_tokens
            elapsed = max(time.monotonic() - start, 1e-9)
            bar.update(task, advance=rows, speed=f"{tokens / elapsed:,.0f} tok/s")

        yield advance
