"""Deciding a file's schema from a sample of its rows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from gekro_ft.data.schemas import NAMES, match_schema
from gekro_ft.data.source import iter_rows
from gekro_ft.errors import SchemaError

SAMPLE_ROWS = 200


@dataclass(slots=True)
class Detection:
    schema: str | None
    confidence: float  # share of sampled object rows that have the winning schema's shape
    sampled: int
    votes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"schema": self.schema, "confidence": round(self.confidence, 4),
                "sampled": self.sampled, "votes": self.votes}


def detect_schema(path: str | Path, sample: int = SAMPLE_ROWS) -> Detection:
    votes: Counter[str] = Counter()
    sampled = 0
    for raw in islice(iter_rows(path), sample):
        if raw.error is not None:
            continue
        sampled += 1
        votes[match_schema(raw.value) or "unknown"] += 1
    known = {k: v for k, v in votes.items() if k != "unknown"}
    if not known:
        return Detection(None, 0.0, sampled, dict(votes))
    winner = max(known, key=known.get)
    return Detection(winner, known[winner] / sampled, sampled, dict(votes))


def resolve_schema(path: str | Path, schema: str | None) -> tuple[str, Detection | None]:
    """The schema to read ``path`` with: the one given, else the detected one."""
    if schema is not None:
        if schema not in NAMES:
            raise SchemaError(f"unknown schema {schema!r}; choose one of {', '.join(NAMES)}")
        return schema, None
    det = detect_schema(path)
    if det.schema is None:
        raise SchemaError(f"{path}: cannot tell the schema: none of the first {det.sampled} rows "
                          "has 'messages', 'conversations' or 'instruction'+'output'",
                          hint="pass --from openai|alpaca|sharegpt")
    return det.schema, det
