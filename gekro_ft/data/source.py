"""Reading rows out of dataset files, one at a time.

Supported: JSONL (optionally gzipped), a JSON array (streamed with ijson), Parquet
(streamed by record batch), and a Hugging Face ``datasets`` directory written by
``save_to_disk`` (its Arrow files, read with pyarrow; ``datasets`` is not needed).

Nothing here holds a whole file in memory. A row that cannot be parsed is yielded
with its error, so the caller can report it and go on; a file that cannot be read
at all raises :class:`InputFileError`.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.errors import InputFileError

FORMATS = ("jsonl", "json", "parquet", "arrow-dir")


@dataclass(slots=True)
class RawRow:
    index: int  # 0-based row number
    line: int | None  # 1-based line number, JSONL only
    value: Any = None
    error: str | None = None  # set when the row could not be parsed


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


def _iter_jsonl(path: Path, on_bytes) -> Iterator[RawRow]:
    index = 0
    with _open(path) as f:
        try:
            for lineno, raw in enumerate(f, start=1):
                if on_bytes is not None:
                    on_bytes(len(raw))
                if not raw.strip():
                    continue
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError as e:
                    yield RawRow(index, lineno, error=f"invalid JSON: {e}")
                else:
                    yield RawRow(index, lineno, value)
                index += 1
        except (OSError, EOFError) as e:  # truncated gzip, I/O error mid-file
            raise InputFileError(path, f"read failed after row {index}: {e}") from e


def _iter_json_array(path: Path, on_bytes) -> Iterator[RawRow]:
    import ijson

    with _open(path) as f:
        items = ijson.items(f, "item", use_float=True)
        index = 0
        last_pos = 0
        try:
            for value in items:
                if on_bytes is not None:
                    pos = f.tell()
                    on_bytes(pos - last_pos)
                    last_pos = pos
                yield RawRow(index, None, value)
                index += 1
        except ijson.JSONError as e:
            # The array framing itself is broken: nothing after this point can be trusted.
            reason = str(e).splitlines()[0].strip()
            raise InputFileError(path, f"malformed JSON array after item {index}: {reason}",
                                 hint="convert the file to JSONL to have bad rows reported one by one") from e


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
