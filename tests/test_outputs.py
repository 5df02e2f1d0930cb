"""Written outputs: never over an input, through a symlink, never over a FIFO, device or socket;
whole or not at all when a signal or a full disk stops the write, with a one-line error."""

from __future__ import annotations

import errno
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from conftest import oa, write_jsonl
from gekro_ft.atomic import atomic_directory, atomic_output, check_output, remove_stale, write_bytes_atomic
from gekro_ft.data.convert import convert_file
from gekro_ft.errors import Interrupted, OutputError
from gekro_ft.process import RaiseOnSignals
from test_data_limits import child_env

ROWS = [oa(("user", f"q{i}"), ("assistant", f"a{i}")) for i in range(12)]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp")) if folder.exists() else []


def one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


# --- outputs that are the input -----------------------------------------------------------------

@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_convert_never_writes_over_its_input(tmp_path, cli, how):
    src = write_jsonl(tmp_path / "src.jsonl", ROWS)
    before = src.read_bytes()
    target = src if how == "same path" else tmp_path / "other.jsonl"
    if how == "symlink":
        target.symlink_to(src)
    elif how == "hard link":
        os.link(src, target)
    with pytest.raises(OutputError, match="writing it would destroy the input"):
        convert_file(src, target, "sharegpt")
    result = cli("data", "convert", src, target, "--to", "sharegpt")
    assert result.exit_code == 2
    line = one_line_error(result.output)
    assert line.startswith(f"Error (cannot write output): {target} is the input")
    assert src.read_bytes() == before and not leftovers(tmp_path)


@pytest.mark.parametrize("name", ["train.jsonl", "eval.jsonl", "split.json"])
def test_split_never_writes_over_its_input(tmp_path, cli, name):
    out = tmp_path / "out"
    out.mkdir()
    src = write_jsonl(out / name, ROWS)
    result = cli("data", "split", src, "-o", out)
    assert result.exit_code == 2
    assert one_line_error(result.output).startswith(f"Error (cannot write output): {src} is the input")
    assert [p.name for p in out.iterdir()] == [name]
    assert src.read_bytes() == write_jsonl(tmp_path / "x", ROWS).read_bytes()


# --- symlinks and special files -----------------------------------------------------------------

def test_a_symlinked_output_is_written_through(tmp_path):
    src = write_jsonl(tmp_path / "src.jsonl", ROWS)
    real = tmp_path / "versions" / "v3.jsonl"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "current.jsonl"
    link.symlink_to(real)
    convert_file(src, link, "sharegpt")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert len(real.read_text().splitlines()) == 12 and "conversations" in real.read_text()
    assert not leftovers(tmp_path) and not leftovers(real.parent)


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "made.json")
    write_bytes_atomic(link, b"{}")
    assert link.is_symlink() and (tmp_path / "made.json").read_bytes() == b"{}"


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_special_files_are_refused_not_replaced(tmp_path, cli, kind):
    target = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(target)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(target))
    word = {"fifo": "a FIFO", "socket": "a socket"}[kind]
    with pytest.raises(OutputError, match=f"{target} is {word}, not a regular file"):
        write_bytes_atomic(target, b"x")
    src = write_jsonl(tmp_path / "src.jsonl", ROWS)
    result = cli("data", "convert", src, target, "--to", "sharegpt")
    assert result.exit_code == 2
    assert f"{target} is {word}, not a regular file" in one_line_error(result.output)
    link = tmp_path / "link"
    link.symlink_to(target)  # a link to one is no way around it
    with pytest.raises(OutputError, match="not a regular file"):
        write_bytes_atomic(link, b"x")
    mode = target.lstat().st_mode
    assert (target.is_fifo() if kind == "fifo" else target.is_socket()), mode
    assert not leftovers(tmp_path)


def test_device_nodes_are_refused():
    # Only the check, never a writer: run as root, a broken writer would replace the real /dev/null
    # (the old one did). check_output writes nothing whatever it decides.
    with pytest.raises(OutputError, match="/dev/null is a character device, not a regular file"):
        check_output("/dev/null")


def test_atomic_directory_writes_through_a_symlink_and_refuses_a_file(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "old").write_text("old")
    link = tmp_path / "adapter"
    link.symlink_to(real)
    with atomic_directory(link) as tmp:
        (tmp / "new").write_text("new")
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == ["new"]
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="file exists and is not a directory"):
        with atomic_directory(tmp_path / "file"):
            pass


# --- what a stop leaves -------------------------------------------------------------------------

def test_stale_temporary_files_of_the_same_target_are_removed(tmp_path):
    old, fresh = tmp_path / ".out.jsonl.abcd1234.tmp", tmp_path / ".out.jsonl.efgh5678.tmp"
    other, mine = tmp_path / ".other.jsonl.abcd1234.tmp", tmp_path / ".out.jsonl.notes.tmp"
    old_dir = tmp_path / ".out.jsonl.ijkl9012.tmp"
    old_dir.mkdir()
    for p in (old, fresh, other, mine):
        p.write_text("x")
    two_hours_ago = time.time() - 7200
    for p in (old, other, mine, old_dir):
        os.utime(p, (two_hours_ago, two_hours_ago))
    write_bytes_atomic(tmp_path / "out.jsonl", b"done\n")
    # a killed write of out.jsonl: gone; one that may still be running, another target's, a user's file: kept
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".out.jsonl.efgh5678.tmp", ".other.jsonl.abcd1234.tmp", ".out.jsonl.notes.tmp", "out.jsonl"])
    assert remove_stale(tmp_path / "out.jsonl", older_than=0) == [fresh]


def _open_for_writing(fifo: Path, proc: subprocess.Popen, timeout: float = 60) -> int:
    """The FIFO's write end once the child has opened it for reading (without hanging if it never does)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO or proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the child never read {fifo}: {proc.poll()}") from e
            time.sleep(0.02)
            continue
        os.set_blocking(fd, True)
        return fd


def _wait_for_temporaries(folder: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(leftovers(folder)) < n:
        assert proc.poll() is None and time.monotonic() < deadline, (proc.poll(), leftovers(folder))
        time.sleep(0.02)


def _gekro_ft(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gekro_ft.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())


LINES = b"".join(orjson.dumps(r) + b"\n" for r in ROWS)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_during_convert_leaves_nothing_and_exits_130(tmp_path, signum):
    """The input is a FIFO the test feeds, so the child is mid-conversion, its temporary file open,
    when the signal comes: no timing guesses."""
    fifo, out = tmp_path / "in.jsonl", tmp_path / "out"
    os.mkfifo(fifo)
    out.mkdir()
    proc = _gekro_ft("data", "convert", fifo, out / "o.jsonl", "--to", "sharegpt", "--from", "openai")
    fd = _open_for_writing(fifo, proc)
    try:
        os.write(fd, LINES)
        _wait_for_temporaries(out, 1, proc)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        os.close(fd)
    assert proc.returncode == 130, stderr
    assert one_line_error(stderr) == f"Error (interrupted): stopped by {signum.name}"
    assert list(out.iterdir()) == []


def test_a_signal_during_split_leaves_nothing_and_exits_130(tmp_path):
    fifo, out = tmp_path / "in.jsonl", tmp_path / "out"
    os.mkfifo(fifo)
    proc = _gekro_ft("data", "split", fifo, "-o", out, "--from", "openai")
    fd = _open_for_writing(fifo, proc)
    os.write(fd, LINES)
    os.close(fd)  # the first pass ends; the second opens the FIFO again and waits there
    _wait_for_temporaries(out, 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert one_line_error(stderr) == "Error (interrupted): stopped by SIGTERM"
    assert list(out.iterdir()) == []  # the folder it made for them stays, empty


def test_nohup_keeps_its_ignored_hangup():
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with RaiseOnSignals(lambda s: Interrupted(f"stopped by {s}")):
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, before)


def _small_file_limit() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))


@pytest.mark.parametrize("command", ["convert", "split"])
def test_a_full_disk_is_a_one_line_error_and_leaves_nothing(tmp_path, command):
    rows = [oa(("user", f"question {i} " + "x" * 200), ("assistant", f"answer {i}")) for i in range(3000)]
    src = write_jsonl(tmp_path / "src.jsonl", rows)  # ~1 MB: past the 64 KB the child may write
    out = tmp_path / "out"
    args = ([src, out / "o.jsonl", "--to", "sharegpt"] if command == "convert" else [src, "-o", out])
    proc = subprocess.run([sys.executable, "-m", "gekro_ft.cli", "data", command, *map(str, args)],
                          capture_output=True, text=True, timeout=120, preexec_fn=_small_file_limit,
                          env=child_env())
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc.stderr)
    assert line.startswith(f"Error (cannot write output): cannot write {out}/")
    assert line.endswith("File too large")
    assert list(out.iterdir()) == []


def test_a_write_error_inside_the_block_is_an_output_error(tmp_path):
    """A full disk from inside the library: the write fails, the error names the file, and the
    buffer is dropped so closing does not fail a second time."""
    if signal.getsignal(signal.SIGXFSZ) is not signal.SIG_IGN:
        pytest.skip("SIGXFSZ is not ignored here (Python ignores it unless told otherwise)")
    target = tmp_path / "t.jsonl"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        with pytest.raises(OutputError, match=f"cannot write {target}: File too large"):
            with atomic_output(target) as f:
                f.write(b"x" * 100)
                f.write(b"y" * (2 << 20))  # past the buffer: written now, past the limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert list(tmp_path.iterdir()) == []
