"""Library exceptions -> one-line messages and exit codes, in one table.

Exit codes across the CLI: 0 success, 1 the checked thing failed (findings with
errors, a failed gate), 2 the command could not do its job (unreadable input,
bad arguments, missing model or dependency), 130 stopped by a signal (resumable).
"""

from __future__ import annotations

import os
import signal

import click

from gekro_ft.errors import GekroError, Interrupted, error_types, one_line

# (exception type, exit code, label), most specific type first: the first match wins. Each
# type states its own kind and exit code in gekro_ft.errors, so a new type is in the table
# the moment it exists.
ERROR_TABLE: list[tuple[type[GekroError], int, str]] = [(t, t.exit_code, t.kind) for t in error_types()]


def debug_enabled() -> bool:
    return os.environ.get("GEKRO_FT_DEBUG", "") not in ("", "0", "false")


def exit_for(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and one-line message for ``exc``, or None if it is not a user error."""
    for exc_type, code, _ in ERROR_TABLE:
        if isinstance(exc, exc_type):
            return code, one_line(exc)
    return None


def stopped_by(signum: int) -> Interrupted:
    return Interrupted(f"stopped by {signal.Signals(signum).name}")


def interruptible():
    """A context in which SIGTERM and SIGHUP raise :class:`Interrupted` (exit 130), so a
    command that writes files cleans up after itself; see :class:`gekro_ft.process.RaiseOnSignals`.

    Commands that write outputs in this process use it. Not installed for every command:
    an exception raised inside an asyncio task (a server, a load generator) would be caught
    by the task, and the signal lost."""
    from gekro_ft.process import RaiseOnSignals

    return RaiseOnSignals(stopped_by)


class GekroGroup(click.Group):
    """A click group that turns library errors into one line on stderr and an exit code, and
    Ctrl-C into exit 130 (click alone says "Aborted!" and exits 1)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GekroError as e:
            if debug_enabled():
                raise
            code, message = exit_for(e)
            click.echo(message, err=True)
            ctx.exit(code)
        except KeyboardInterrupt:
            if debug_enabled():
                import traceback

                traceback.print_exc()
            e = stopped_by(signal.SIGINT)
            click.echo(one_line(e), err=True)
            ctx.exit(e.exit_code)
