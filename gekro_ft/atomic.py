"""Write outputs whole or not at all: a temporary file beside the target, then a rename.

What an output may be (:func:`check_output`; :func:`atomic_directory` treats symlinks and
non-directories the same way):

- never one of the command's inputs, by any name (a hard link or a symlink to it too):
  ``data convert IN IN`` would otherwise read IN whole and then replace it;
- a symlink is written through: the file it points to gets the new content and the link
  stays, as a shell's ``>`` does. Replacing the link with a file would silently cut it off
  from what it named, and refusing would break the common ``current.jsonl -> v3.jsonl``;
- a regular file, or nothing yet. A FIFO, a device or a socket is refused, never replaced
  (run as root, the rename once replaced ``/dev/full``).

Every failure, a full disk or a file-size limit included, is a one-line
:class:`OutputError` naming the path, and the target is left as it was.

What a stop leaves behind:

- an exception, Ctrl-C, or SIGTERM/SIGHUP (the CLI turns those into exceptions): nothing;
  the temporary file is removed on the way out;
- SIGKILL or a power cut: a hidden ``.NAME.XXXXXXXX.tmp`` beside the target (beside the
  file a symlink points to), a directory of that name for :func:`atomic_directory`. The next
  write of the same target removes the ones older than :data:`STALE_AFTER` seconds; younger
  ones are kept because they may belong to a write of the same target still running.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from gekro_ft.errors import OutputError

STALE_AFTER = 3600.0  # seconds since a leftover temporary file was last written
_RANDOM = re.compile(r"[a-z0-9_]{8}")  # what tempfile puts between prefix and suffix


def check_output(path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """The file to write for ``path``: ``path`` itself, or the file a symlink points to.

    Raises :class:`OutputError` when that is a directory, exists and is not a regular file,
    or is one of ``inputs`` (compared by device and inode, so any name of it counts).
    """
    path = Path(path)
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return real
    except OSError as e:  # a symlink loop, a path through a file, no permission
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{path} is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path} is {_kind(st.st_mode)}, not a regular file; an output only replaces a "
                          "regular file")
    for source in inputs:
        with contextlib.suppress(OSError):
            other = os.stat(source)
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                shown = "" if str(source) == str(path) else f" ({source})"
                raise OutputError(f"{path} is the input{shown}; writing it would destroy the input",
                                  hint="give another output path")
    return real


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "a special file"


def remove_stale(target: Path, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove the temporary files (and directories) that an earlier write of ``target`` left
    when it was killed, if they are older than ``older_than`` seconds; returns what went."""
    import shutil

    prefix, gone, now = f".{target.name}.", [], time.time()
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return gone
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")
                and _RANDOM.fullmatch(name[len(prefix):-len(".tmp")])):
            continue
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if now - st.st_mtime < older_than:
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            gone.append(Path(entry.path))
    return gone


class _TempFile(io.FileIO):
    """The temporary file under the buffer: a failed write (disk full, file too large) is an
    OutputError naming the target; once ``discard`` is set, writes are dropped, so closing the
    buffer after a failure cannot fail a second time."""

    def __init__(self, fd: int, target: Path):
        super().__init__(fd, "wb", closefd=True)
        self.target, self.discard = target, False

    def write(self, data) -> int:
        if self.discard:
            return memoryview(data).nbytes
        try:
            return super().write(data)
        except OSError as e:
            raise _write_error(self.target, e) from e


def _write_error(path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {e.strerror or e}")


@contextlib.contextmanager
def atomic_output(path: str | Path, inputs: Iterable[str | Path] = ()) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only if the block finishes.

    On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left as it was, so a reader never sees half an output. ``inputs`` are files
    the output must not be (see :func:`check_output`).
    """
    path = Path(path)
    target = check_output(path, inputs)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _write_error(path, e) from e
    raw = _TempFile(fd, path)
    f = io.BufferedWriter(raw, buffer_size=1 << 20)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        yield f
        try:
            f.flush()
            os.fsync(raw.fileno())
            f.close()
            os.replace(tmp, target)
        except OSError as e:
            raise _write_error(path, e) from e
    except BaseException:
        raw.discard = True
        with contextlib.suppress(Exception):
            f.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, data: bytes, inputs: Iterable[str | Path] = ()) -> None:
    with atomic_output(path, inputs) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield an empty directory beside ``target`` that replaces it only if the block finishes.

    A symlink is written through, as for files; an existing ``target`` that is not a
    directory is refused.
    """
    import shutil

    target = Path(target)
    real = Path(os.path.realpath(target))
    if real.exists() and not real.is_dir():
        raise OutputError(f"{target} exists and is not a directory")
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(real)
        tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent))
    except OSError as e:
        raise _write_error(target, e) from e
    try:
        yield tmp
        if real.exists():
            shutil.rmtree(real)
        os.replace(tmp, real)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
