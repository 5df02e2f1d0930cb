"""Process handling shared by the launchers, the pipeline and training: exit codes, stopping a
child and its group, and the save-and-stop signal handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

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


class _Stopped(Exception):
    pass


# A child that says when its SIGTERM handler is in place, then writes a file when the signal comes.
_CHILD = ("import signal, sys, time\n"
          "def stop(*_):\n    open(sys.argv[1], 'w').write('got SIGTERM'); sys.exit(0)\n"
          "signal.signal(signal.SIGTERM, stop); print('ready', flush=True); time.sleep(60)\n")


def test_children_pass_sigterm_to_every_child_and_raise_once_the_foreground_one_returns(tmp_path):
    from gekro_ft.process import Children

    def sigterm_when_both_are_ready():
        for name in ("server", "stage"):
            while "ready" not in (tmp_path / f"{name}.ready").read_text():
                time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    started = threading.Thread(target=sigterm_when_both_are_ready)
    with Children(lambda signum: _Stopped(signum)) as children:
        server = children.start([sys.executable, "-c", _CHILD, str(tmp_path / "server.got")],
                                stdout=(tmp_path / "server.ready").open("w"))
        started.start()
        with pytest.raises(_Stopped) as e:
            children.run([sys.executable, "-c", _CHILD, str(tmp_path / "stage.got")],
                         stdout=(tmp_path / "stage.ready").open("w"))
        assert e.value.args == (signal.SIGTERM,)
        assert server.wait(timeout=30) == 0
        children.stop(server)
    started.join()
    assert (tmp_path / "server.got").read_text() == (tmp_path / "stage.got").read_text() == "got SIGTERM"


def test_a_signal_while_no_child_runs_stops_the_work_in_this_process():
    from gekro_ft.process import Children

    with Children(lambda signum: _Stopped(signum)), pytest.raises(_Stopped):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the handler long before this ends
