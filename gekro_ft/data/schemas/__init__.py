"""One reader and one writer per schema. Each module has ``NAME``, ``matches(row)``,
``read(row) -> (Conversation | None, problems)`` and ``write(conv) -> (row, dropped)``."""

from __future__ import annotations

from types import ModuleType

from gekro_ft.data.schemas import alpaca, openai, sharegpt
from gekro_ft.data.schemas.alpaca import Unconvertible

SCHEMAS: dict[str, ModuleType] = {m.NAME: m for m in (openai, alpaca, sharegpt)}
NAMES = tuple(SCHEMAS)

__all__ = ["SCHEMAS", "NAMES", "Unconvertible", "match_schema"]


def match_schema(row: object) -> str | None:
    """The schema whose signature this row has, or None."""
    if not isinstance(row, dict):
        return None
    # sharegpt first: its "messages" spelling would otherwise look like openai.
    for name in ("sharegpt", "openai", "alpaca"):
        if SCHEMAS[name].matches(row):
            return name
    return None
