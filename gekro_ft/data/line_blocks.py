"""A JSONL file (or a byte range of it) read in blocks of whole lines, not a line at a time.

``readline`` per line was about a sixth of ``data validate``'s time: one Python call and one
bytes object per row before any check ran. A block of lines costs one ``read`` and one
``split``, and its bytes can be scanned at once with numpy (:mod:`columnar`).

The size rule stays :func:`source._iter_jsonl`'s: a line whose content (newline excluded) is
longer than :data:`limits.MAX_ROW_BYTES` is ``row-too-large``, and it is never held whole:
once the unfinished line in hand is over the limit, the rest of it is skipped in bounded
reads and a :data:`TOO_LARGE` marker stands for it. A line that ends within the block it
grew into may be held up to the limit plus one block (then the caller sees its length).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from gekro_ft.data import limits
from gekro_ft.data.source import _open, _skip_rest_of_line
from gekro_ft.errors import InputFileError

# 256 KiB, about 300 rows of 800 bytes: a 4 MiB block held some 140 MB of rows, pieces and
# arrays at once while it was converted (200 MiB peak); at 256 KiB the peak is 76 MiB, as fast
BLOCK_BYTES = 256 << 10
TOO_LARGE = None  # stands for one line over the limit, skipped unread


def iter_blocks(path: str | Path, on_bytes: Callable[[int], None] | None = None,
                span: tuple[int, int] | None = None,
                block_bytes: int | None = None) -> Iterator[bytes | None]:
    """Blocks of whole lines, each ending in ``\\n`` (but the file's last line, which may not),
    in file order; :data:`TOO_LARGE` for a line over the size limit. ``span`` must start at a
    line's start and end at one (or at the end of the file), as :func:`source.line_spans` cuts."""
    path = Path(path)
    block_bytes = block_bytes or BLOCK_BYTES
    start, end = span if span is not None else (0, None)
    carry = b""  # the unfinished line at the end of the last read
    with _open(path) as f:
        if start:
            f.seek(start)
        pos = start
        try:
            while True:
                want = block_bytes if end is None else min(block_bytes, end - pos)
                chunk = f.read(want) if want > 0 else b""
                pos += len(chunk)
                if on_bytes is not None and chunk:
                    on_bytes(len(chunk))
                data = carry + chunk if carry else chunk
                if not chunk:  # the end of the file or of the span: the last line has no newline
                    if data:
                        yield TOO_LARGE if len(data) > limits.MAX_ROW_BYTES else data
                    return
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    if len(data) > limits.MAX_ROW_BYTES:  # too large already: skip, never hold it
                        pos += _skip_rest_of_line(f, on_bytes)
                        carry = b""
                        yield TOO_LARGE
                    else:
                        carry = data
                    continue
                carry = data[cut:]
                yield data if cut == len(data) else data[:cut]
        except (OSError, EOFError) as e:  # truncated gzip, I/O error mid-file
            raise InputFileError(path, f"read failed near byte {pos}: {e}") from e


def split_lines(block: bytes) -> list[bytes]:
    """The block's lines without their newlines."""
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    return lines


def one_object_per_line(block: bytes) -> int:
    """The block's number of lines when every one starts with ``{`` and ends with ``}`` (or
    ``}`` and a CR), else 0: then ``decode_lines`` reads one value per line or fails (see
    :func:`columnar.decode`)."""
    raw = np.frombuffer(block, np.uint8)
    if not len(raw):
        return 0
    newlines = np.flatnonzero(raw == 10)
    last = newlines - 1
    if raw[-1] != 10:  # the file's last line, without a newline
        last = np.append(last, len(raw) - 1)
    first = np.concatenate([[0], newlines[:-1] + 1]) if raw[-1] == 10 else np.concatenate([[0], newlines + 1])
    if (last < first).any():  # a blank line
        return 0
    last = last - ((raw[last] == 13) & (last > first))
    return len(first) if (raw[first] == 123).all() and (raw[last] == 125).all() else 0
