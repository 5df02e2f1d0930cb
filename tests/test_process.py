"""Process handling shared by the launchers, the pipeline and training: exit codes, stopping a
child and its group, and the save-and-stop signal handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from gekro_ft.process import StopOnSignal, exit_code, server_root, stop_process, strip_v1


def test_exit_codes_read_like_a_shells():
    assert [exit_code(c) for c in (0, 1, -signal.SIGINT, -signal.SIGKILL)] == [0, 1, 130, 137]


def test_urls():
    assert server_root("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert strip_v1("http://h:1/v1/") == strip_v1("http://h:1") == "http://h:1"


def test_stop_process_kills_a_child_that_ignores_sigterm():
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    proc.stdout.readline()  # its handler is in place
    stop_process(proc, grace=0.5)
    assert proc.returncode == -signal.SIGKILL
    stop_process(proc)  # already gone: nothing to do


def test_stop_on_signal_records_the_first_and_interrupts_on_the_second():
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignal() as stopper:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
