"""``data split``: a deterministic train/eval split with no example on both sides.

Rows are de-duplicated on their whitespace-normalized conversation, and grouped by
their prompt (everything before the last answer), so the same question with two
answers cannot leak from train into eval. A group's side is decided by a seeded
hash, so the split is stable across runs and machines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from gekro_ft.atomic import atomic_output, check_output, write_bytes_atomic
from gekro_ft.data.conversation import normalized_text, prompt_text
from gekro_ft.data.detect import resolve_schema
from gekro_ft.data.rows import read_rows
from gekro_ft.errors import DataError

SKIP, TRAIN, EVAL = 0, 1, 2


@dataclass
class SplitResult:
    source: str
    schema: str
    seed: int
    eval_frac: float
    rows: int
    unreadable: int
    duplicates: int
    train: int
    eval: int
    train_path: str
    eval_path: str

    def to_dict(self) -> dict:
        return asdict(self)


def _digest(text: str, salt: bytes = b"") -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=12, key=salt).digest()


def example_keys(conv) -> tuple[bytes, bytes]:
    """(identity, prompt group) of a conversation: duplicates share the first, leak-prone
    variants (same question, another answer) the second."""
    return _digest(normalized_text(conv)), _digest(prompt_text(conv))


def choose_eval_groups(groups, eval_frac: float, seed: int) -> set[bytes]:
    """The prompt groups that go to eval: a seeded hash order, so the choice is stable, and
    both sides non-empty whenever there are two groups."""
    distinct = sorted({g for g in groups if g is not None},
                      key=lambda g: _digest(g.hex(), salt=seed.to_bytes(8, "big", signed=True)))
    n_eval = round(len(distinct) * eval_frac)
    if len(distinct) >= 2:
        n_eval = min(max(n_eval, 1), len(distinct) - 1)
    return set(distinct[:n_eval])


def assign_sides(keys, eval_frac: float, seed: int) -> tuple[bytearray, int]:
    """Per example (its ``example_keys``, or None for one to leave out): SKIP, TRAIN or EVAL.

    Later copies of an example are skipped; returns the sides and how many were duplicates.
    """
    seen: set[bytes] = set()
    groups: list[bytes | None] = []
    duplicates = 0
    for k in keys:
        if k is not None and k[0] in seen:
            duplicates += 1
            k = None
        elif k is not None:
            seen.add(k[0])
        groups.append(None if k is None else k[1])
    del seen
    eval_groups = choose_eval_groups(groups, eval_frac, seed)
    return bytearray(SKIP if g is None else EVAL if g in eval_groups else TRAIN for g in groups), duplicates


def split_file(source: str | Path, out_dir: str | Path, eval_frac: float, seed: int = 0,
               schema: str | None = None,
               on_bytes: Callable[[int], None] | None = None) -> SplitResult:
    if not 0 < eval_frac < 1:
        raise DataError(f"--eval-frac must be between 0 and 1, got {eval_frac}")
    out_dir = Path(out_dir)
    train_path, eval_path = out_dir / "train.jsonl", out_dir / "eval.jsonl"
    summary_path, inputs = out_dir / "split.json", (source,)
    for path in (train_path, eval_path, summary_path):  # an -o that holds SOURCE: refused before reading
        check_output(path, inputs)
    schema, _ = resolve_schema(source, schema)
    unreadable = 0

    def keys():
        nonlocal unreadable
        for row in read_rows(source, schema, on_bytes):
            if row.readable:
                yield example_keys(row.conv)
            else:
                unreadable += 1
                yield None

    side, duplicates = assign_sides(keys(), eval_frac, seed)
    if not any(side):  # all SKIP: an empty train.jsonl would only fail later, in training
        said = f"none of its {len(side)} rows is usable" if side else "it holds no rows"
        raise DataError(f"{source}: nothing to split: {said}",
                        hint=f"`gekro-ft data validate {source}` says what is wrong")

    counts = {TRAIN: 0, EVAL: 0}
    with atomic_output(train_path, inputs) as train_f, atomic_output(eval_path, inputs) as eval_f:
        files = {TRAIN: train_f, EVAL: eval_f}
        for row in read_rows(source, schema):
            s = side[row.index]
            if s != SKIP:
                files[s].write(orjson.dumps(row.value, option=orjson.OPT_APPEND_NEWLINE))
                counts[s] += 1
    result = SplitResult(str(source), schema, seed, eval_frac, len(side), unreadable, duplicates,
                         counts[TRAIN], counts[EVAL], str(train_path), str(eval_path))
    write_bytes_atomic(summary_path, orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2), inputs)
    return result
