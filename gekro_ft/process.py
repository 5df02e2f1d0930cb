"""Child processes, engine-neutral: waiting until a server answers ``/health``, passing on
SIGINT/SIGTERM, stopping a process and its group, and turning a signal into a save-and-stop
request for code that runs in this process (training).

Both engines' launchers, the pipeline and training use these; nothing here knows which
engine or stage it serves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from gekro_ft.errors import ServeError


# What a server's /v1/models says in ``owned_by``, as the engine's name: the bench labels its
# figures with it, and the eval says which engine produced the answers it judged.
ENGINE_OF_OWNER = {"gekro-ft-cpu": "cpu", "vllm": "vllm"}


def client_host(host: str) -> str:
    """The address a local client uses to reach a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def server_root(host: str, port: int) -> str:
    return f"http://{client_host(host)}:{port}"


def strip_v1(url: str) -> str:
    """A server's root from its URL: ``http://HOST:PORT/v1`` -> ``http://HOST:PORT``."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None, *,
                 on_progress: Callable[[float], None] | None = None, interval: float = 0.5) -> float:
    """Poll ``URL/health`` until it answers 200; returns the seconds waited.

    ``url`` is the server's root (``http://127.0.0.1:8000``; a trailing ``/v1`` is ignored).
    Raises ServeError when ``proc`` exits first or ``timeout`` seconds pass. ``on_progress``
    gets the seconds elapsed after each failed poll.
    """
    import httpx

    health = f"{strip_v1(url)}/health"
    start = time.monotonic()
    # trust_env off: a proxy from the environment must not stand between us and our own server.
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                raise ServeError(f"the server exited with code {proc.returncode} before {health} answered",
                                 hint="its log says why (out of GPU memory, a model it cannot find, "
                                      "a bad flag...)")
            try:
                if client.get(health).status_code == 200:
                    return time.monotonic() - start
            except httpx.TransportError:
                pass
            elapsed = time.monotonic() - start
            if elapsed > timeout:
                raise ServeError(f"{health} did not answer 200 within {timeout:.0f} s",
                                 hint="a large model can take minutes to load; raise the timeout")
            if on_progress:
                on_progress(elapsed)
            time.sleep(interval)


class _OnSignals:
    """While active (``with``), ``self._handle`` receives ``self.signals``; the handlers that
    were there before come back afterwards. Handlers can only be set from the main thread;
    elsewhere this does nothing and signals keep their usual effect."""

    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                if self._takes(s):
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def _takes(self, signum: int) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        raise NotImplementedError


class ForwardSignals(_OnSignals):
    """While active, SIGINT and SIGTERM sent to this process go to ``proc`` (a second one
    kills its process group)."""

    def __init__(self, proc: subprocess.Popen, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        self.proc, self.signals = proc, signals
        self.signum: int | None = None  # the first signal passed on
        self.at: float | None = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.proc.poll() is not None:
            return
        if self.signum is None:
            self.signum, self.at = signum, time.monotonic()
            self.proc.send_signal(signum)
        else:
            kill_group(self.proc)

    def wait(self, grace: float) -> int:
        """Wait for ``proc`` to exit, killing it ``grace`` seconds after a signal was passed on;
        returns its exit code (128 + N when signal N ended it)."""
        while True:
            try:
                return exit_code(self.proc.wait(timeout=0.5))
            except subprocess.TimeoutExpired:
                if self.at is not None and time.monotonic() - self.at > grace:
                    kill_group(self.proc)


def exit_code(returncode: int) -> int:
    """A shell's exit status for a child's return code (Popen reports signal N as -N)."""
    return 128 - returncode if returncode < 0 else returncode


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and, when it leads a process group of its own (``start_new_session``),
    everything in that group (a server's engine and worker processes)."""
    try:
        if hasattr(os, "killpg") and os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL to its group after ``grace`` seconds; nothing when it has exited."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.wait()


class StopOnSignal(_OnSignals):
    """While active, the first SIGINT/SIGTERM is only recorded in ``received``, for work in this
    process to stop at a safe point (training saves a checkpoint at the end of the step); a
    second one raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.received: int | None = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum


class RaiseOnSignals(_OnSignals):
    """While active, SIGTERM and SIGHUP raise ``interrupted(signum)`` in this process, the way
    SIGINT raises KeyboardInterrupt, so clean-ups run (an atomic output removes its temporary
    file) instead of the process vanishing mid-write.

    A signal that is ignored (``nohup``) or already handled by someone else is left alone; a
    second one of the same signal ends the process the default way, at once.
    """

    signals = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)

    def __init__(self, interrupted: Callable[[int], BaseException]):
        self.interrupted = interrupted

    def _takes(self, signum: int) -> bool:
        return signal.getsignal(signum) is signal.SIG_DFL

    def _handle(self, signum: int, frame: object) -> None:
        signal.signal(signum, signal.SIG_DFL)
        raise self.interrupted(signum)


class Children(_OnSignals):
    """Child processes started by a long job (the pipeline's stages and its server), with one
    signal path for all of them. While active:

    - SIGTERM is passed on to every running child (training saves a checkpoint, a server
      shuts down); SIGINT from a terminal already reaches the whole process group, so it is
      not sent twice (training reads a second SIGINT as "stop now").
    - ``received`` records the first signal. :meth:`run` raises ``interrupted(signum)`` once its
      child has returned; a signal that arrives while no foreground child runs (the job is
      working in this process) raises it at once, so in-process work stops too.
    """

    def __init__(self, interrupted: Callable[[int], BaseException], env: dict[str, str] | None = None):
        self.interrupted, self.env = interrupted, env
        self.received: int | None = None
        self._running: list[subprocess.Popen] = []
        self._foreground = 0

    def _handle(self, signum: int, frame: object) -> None:
        self.received = self.received or signum
        if signum == signal.SIGTERM:
            for proc in self._running:
                if proc.poll() is None:
                    proc.send_signal(signum)
        if not self._foreground:
            raise self.interrupted(signum)

    def start(self, cmd: list[str], **popen: Any) -> subprocess.Popen:
        """Start a background child (a server); stop it with :meth:`stop`."""
        proc = subprocess.Popen(cmd, env=self.env, **popen)
        self._running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 30.0) -> None:
        try:
            stop_process(proc, grace)
        finally:
            self._running.remove(proc)

    def run(self, cmd: list[str], **popen: Any) -> int:
        """Run a foreground child to its end; its exit code, or ``interrupted`` after a signal."""
        self._foreground += 1
        try:
            proc = self.start(cmd, **popen)
            try:
                code = proc.wait()
            finally:
                self._running.remove(proc)
        finally:
            self._foreground -= 1
        if self.received is not None:
            raise self.interrupted(self.received)
        return exit_code(code)
