"""Reading rows out of dataset files, one at a time.

Supported: JSONL (optionally gzipped), a JSON array (streamed with ijson), Parquet
(streamed by record batch), and a Hugging Face ``datasets`` directory written by
``save_to_disk`` (its Arrow files, read with pyarrow; ``datasets`` is not needed).

Nothing here holds a whole file in memory, nor more than about one row of JSON: a row
deeper or larger than :mod:`gekro_ft.data.limits` allows is skipped without being held
whole. A row that cannot be parsed is yielded with its error and its finding code, so
the caller can report it and go on; a file that cannot be read at all raises
:class:`InputFileError`.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.data import limits
from gekro_ft.errors import InputFileError

FORMATS = ("jsonl", "json", "parquet", "arrow-dir")


@dataclass(slots=True)
class RawRow:
    index: int  # 0-based row number
    line: int | None  # 1-based line number, JSONL only
    value: Any = None
    error: str | None = None  # set when the row could not be parsed
    code: str = "invalid-json"  # the finding code of ``error``


def sniff_format(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            raise InputFileError(path, "is a DatasetDict with several splits",
                                 hint="point at one split's directory, e.g. DIR/train")
        if (path / "state.json").exists() or any(path.glob("*.arrow")):
            return "arrow-dir"
        raise InputFileError(path, "is a directory but not a datasets save_to_disk directory")
    if not path.exists():
        raise InputFileError(path, "no such file")
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        return "jsonl"
    # .json and anything else: a JSON array starts with '[', JSONL with '{'.
    with _open(path) as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{") or not head:
        return "jsonl"
    raise InputFileError(path, "is not JSONL, a JSON array or Parquet",
                         hint="the first character is neither '{' nor '['")


def _open(path: Path):
    try:
        if path.name.endswith(".gz"):
            return gzip.open(path, "rb")
        return open(path, "rb")
    except OSError as e:
        raise InputFileError(path, f"cannot open: {e.strerror or e}") from e


def is_jsonl(path: str | Path) -> bool:
    """Whether ``path`` is read as JSONL (gzipped or not)."""
    return sniff_format(Path(path)) == "jsonl"


def iter_rows(path: str | Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[RawRow]:
    """Yield every row of ``path``. ``on_bytes`` is told how many bytes were consumed, for progress."""
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "jsonl":
        yield from _iter_jsonl(path, on_bytes)
    elif fmt == "json":
        yield from _iter_json_array(path, on_bytes)
    elif fmt == "parquet":
        yield from _iter_parquet(path)
    else:
        yield from _iter_arrow_dir(path)


def _iter_jsonl(path: Path, on_bytes, span: tuple[int, int] | None = None,
                parse: bool = True) -> Iterator[RawRow]:
    """Rows of a JSONL file, or of the lines in the byte range ``span`` (which must start at a
    line's start; ``index`` and ``line`` then count from that range's start). With ``parse``
    false a row's ``value`` is the line's bytes, not yet parsed (checked for size and depth)."""
    index = lineno = 0
    start, end = span if span is not None else (0, None)
    with _open(path) as f:
        if start:
            f.seek(start)
        pos = start
        try:
            while (end is None or pos < end) and (raw := f.readline(limits.MAX_ROW_BYTES + 1)):
                pos += len(raw)
                lineno += 1
                if on_bytes is not None:
                    on_bytes(len(raw))
                if len(raw) > limits.MAX_ROW_BYTES and not raw.endswith(b"\n"):
                    pos += _skip_rest_of_line(f, on_bytes)  # never held whole: it may be gigabytes
                    yield RawRow(index, lineno, error=limits.size_message(), code="row-too-large")
                elif not raw.strip():
                    continue
                elif limits.too_deep(raw):
                    yield RawRow(index, lineno, error=limits.depth_message(), code="nesting-too-deep")
                elif not parse:
                    yield RawRow(index, lineno, raw)
                else:
                    try:
                        value = orjson.loads(raw)
                    except orjson.JSONDecodeError as e:
                        yield RawRow(index, lineno, error=f"invalid JSON: {e}")
                    else:
                        yield RawRow(index, lineno, value)
                index += 1
        except (OSError, EOFError) as e:  # truncated gzip, I/O error mid-file
            raise InputFileError(path, f"read failed after row {index}: {e}") from e


def raw_to_row(raw: bytes, index: int, line: int | None) -> RawRow:
    """What :func:`_iter_jsonl` yields for a line it handed over unparsed."""
    try:
        return RawRow(index, line, orjson.loads(raw))
    except orjson.JSONDecodeError as e:
        return RawRow(index, line, error=f"invalid JSON: {e}")


def iter_jsonl(path: str | Path, on_bytes: Callable[[int], None] | None = None,
               span: tuple[int, int] | None = None, parse: bool = True) -> Iterator[RawRow]:
    """The rows of a JSONL file, or of one byte range of it: see :func:`_iter_jsonl`."""
    return _iter_jsonl(Path(path), on_bytes, span, parse)


def line_spans(path: str | Path, steps: Iterable[int]) -> list[tuple[int, int]] | None:
    """Cut a plain (not gzipped) JSONL file into byte ranges at line starts, each about the
    next of ``steps`` bytes long (moved on to the next line's start), the last to the end; None
    when it is not one, or when that makes fewer than two ranges."""
    path = Path(path)
    if path.name.endswith(".gz") or sniff_format(path) != "jsonl":
        return None
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for step in steps:
            if cuts[-1] + step >= size:
                break
            f.seek(cuts[-1] + step)
            _skip_rest_of_line(f, None)  # to the next line's start, in bounded reads
            if f.tell() >= size:
                break
            cuts.append(f.tell())
    cuts.append(size)
    return list(zip(cuts, cuts[1:])) if len(cuts) > 2 else None


def _skip_rest_of_line(f, on_bytes) -> int:
    skipped = 0
    while chunk := f.readline(1 << 20):
        skipped += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
        if chunk.endswith(b"\n"):
            break
    return skipped


class _ValueTooLarge(Exception):
    pass


class _CountingReader:
    """The file as ijson reads it: counts the bytes, and stops feeding the parser when no parse
    event came for more than a row's worth of bytes (one string or number that large would sit
    whole in the parser's buffer)."""

    __slots__ = ("f", "on_bytes", "pos", "last_event")

    def __init__(self, f, on_bytes):
        self.f, self.on_bytes = f, on_bytes
        self.pos = self.last_event = 0

    def read(self, n: int = -1) -> bytes:
        if self.pos - self.last_event > limits.MAX_ROW_BYTES:
            raise _ValueTooLarge
        data = self.f.read(n)
        self.pos += len(data)
        if self.on_bytes is not None and data:
            self.on_bytes(len(data))
        return data


def _iter_json_array(path: Path, on_bytes) -> Iterator[RawRow]:
    """Items of a top-level JSON array, built here from ijson's flat events (no path prefixes,
    which cost memory by the square of the depth), so a row that nests too deep or grows too
    large is dropped as it goes and reported, and the next item is read as usual."""
    import ijson

    with _open(path) as f:
        src = _CountingReader(f, on_bytes)
        index = 0
        depth = 0  # open arrays and objects, the top-level array included
        stack: list[Any] = []  # the open containers of the item being built
        key: Any = None  # the key of the next value inside an object
        row_start = 0
        refused: tuple[str, str] | None = None  # (code, message) of an item being skipped
        try:
            for event, value in ijson.basic_parse(src, use_float=True):
                src.last_event = src.pos
                if event == "start_map" or event == "start_array":
                    depth += 1
                    if depth == 1:
                        continue
                    if depth == 2:
                        row_start, refused, stack = src.pos, None, []
                    if refused is not None:
                        continue
                    if depth - 1 > limits.MAX_DEPTH:
                        refused, stack = ("nesting-too-deep", limits.depth_message()), []
                        continue
                    container: Any = {} if event == "start_map" else []
                    if stack:
                        _put(stack[-1], key, container)
                    stack.append(container)
                elif event == "end_map" or event == "end_array":
                    depth -= 1
                    if depth == 0:
                        continue
                    if refused is None:
                        container = stack.pop()
                    if depth == 1:
                        if refused is None:
                            yield RawRow(index, None, container)
                        else:
                            yield RawRow(index, None, error=refused[1], code=refused[0])
                        index += 1
                        refused, stack = None, []
                    continue
                elif event == "map_key":
                    key = value
                elif depth == 1:  # a scalar item: the row reader says it is not an object
                    yield RawRow(index, None, value)
                    index += 1
                    continue
                elif refused is None:
                    _put(stack[-1], key, value)
                if refused is None and src.pos - row_start > limits.MAX_ROW_BYTES:
                    refused, stack = ("row-too-large", limits.size_message()), []
        except ijson.JSONError as e:
            # The array framing itself is broken: nothing after this point can be trusted.
            reason = str(e).splitlines()[0].strip()
            raise InputFileError(path, f"malformed JSON array after item {index}: {reason}",
                                 hint="convert the file to JSONL to have bad rows reported one by one") from e
        except _ValueTooLarge:
            raise InputFileError(path, f"a single value in item {index} is larger than "
                                       f"{limits.human_bytes(limits.MAX_ROW_BYTES)}; the rest of the array "
                                       "cannot be read") from None
        except (OSError, EOFError) as e:
            raise InputFileError(path, f"read failed after item {index}: {e}") from e


def _put(container: Any, key: Any, value: Any) -> None:
    if type(container) is dict:
        container[key] = value
    else:
        container.append(value)


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError...
        raise InputFileError(path, f"not a readable Parquet file: {e}") from e
    index = 0
    for batch in pf.iter_batches(batch_size=2048):
        for value in batch.to_pylist():
            yield RawRow(index, None, value)
            index += 1


def _iter_arrow_dir(path: Path) -> Iterator[RawRow]:
    import pyarrow as pa

    state = path / "state.json"
    if state.exists():
        files = [path / d["filename"] for d in orjson.loads(state.read_bytes()).get("_data_files", [])]
    else:
        files = sorted(path.glob("*.arrow"))
    index = 0
    for file in files:
        try:
            reader = pa.ipc.open_stream(pa.memory_map(str(file)))
        except Exception as e:
            raise InputFileError(file, f"not a readable Arrow file: {e}") from e
        for batch in reader:
            for value in batch.to_pylist():
                yield RawRow(index, None, value)
                index += 1
