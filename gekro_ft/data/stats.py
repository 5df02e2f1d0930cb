"""``data stats``: sizes of a dataset in rows, turns, characters and (with a model) tokens."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gekro_ft.data.detect import resolve_schema
from gekro_ft.data.render import render
from gekro_ft.data.rows import read_rows


def summarize(values: array | list) -> dict[str, float] | None:
    if not len(values):
        return None
    import numpy as np

    a = np.asarray(values)
    return {"min": int(a.min()), "median": float(np.median(a)),
            "p95": float(np.percentile(a, 95)), "max": int(a.max()), "mean": round(float(a.mean()), 2)}


@dataclass
class DatasetStats:
    path: str
    schema: str
    rows: int = 0
    readable_rows: int = 0
    roles: Counter = field(default_factory=Counter)
    turns: array = field(default_factory=lambda: array("l"))
    chars: array = field(default_factory=lambda: array("l"))  # all text of a row
    answer_chars: array = field(default_factory=lambda: array("l"))  # per assistant turn
    tokens: array = field(default_factory=lambda: array("l"))  # rendered row, with a model
    loss_tokens: array = field(default_factory=lambda: array("l"))
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1, "file": self.path, "schema": self.schema, "model": self.model,
            "rows": self.rows, "readable_rows": self.readable_rows, "roles": dict(self.roles),
            "turns_per_row": summarize(self.turns), "chars_per_row": summarize(self.chars),
            "chars_per_answer": summarize(self.answer_chars),
            "tokens_per_row": summarize(self.tokens), "trained_tokens_per_row": summarize(self.loss_tokens),
        }


def dataset_stats(path: str | Path, schema: str | None = None, *, tokenizer: Any = None,
                  model: str | None = None,
                  on_bytes: Callable[[int], None] | None = None) -> DatasetStats:
    schema, _ = resolve_schema(path, schema)
    stats = DatasetStats(str(path), schema, model=model)
    for row in read_rows(path, schema, on_bytes):
        stats.rows += 1
        if not row.readable:
            continue
        conv = row.conv
        stats.readable_rows += 1
        stats.turns.append(len(conv.turns))
        stats.roles.update(t.role for t in conv.turns)
        if conv.system is not None:
            stats.roles["system"] += 1
        stats.chars.append(len(conv.system or "") + sum(len(t.text) for t in conv.turns))
        stats.answer_chars.extend(len(t.text) for t in conv.turns if t.role == "assistant")
        if tokenizer is not None:
            r = render(tokenizer, conv)
            if r.input_ids:
                stats.tokens.append(len(r.input_ids))
                stats.loss_tokens.append(r.n_loss_tokens)
    return stats
