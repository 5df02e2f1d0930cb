"""Confidence scores from the local answer's token log-probabilities (OpenAI's
``choices[0].logprobs.content``: one entry per generated token, each with ``token`` and
``logprob``).

- ``mean_logprob``: the mean over the answer's tokens (the log of the geometric-mean
  token probability);
- ``min_logprob``: the least likely token;
- ``min_field_logprob``: for a JSON object answer, the mean log-probability of the tokens
  that spell each field's value, and the lowest of those: the field the model was least
  sure of. A token belongs to the value whose characters it overlaps. Not JSON (or no
  field found): the mean, so the score is always defined.

An answer without tokens has no evidence of confidence: its scores are ``-inf``, which
every threshold escalates.
"""

from __future__ import annotations

import json
import math
from typing import Any


def token_logprobs(entries: list[dict[str, Any]]) -> list[float]:
    return [float(e["logprob"]) for e in entries]


def scores(entries: list[dict[str, Any]] | None) -> dict[str, float]:
    """Every confidence score of one answer, by name (see the module docstring)."""
    lps = token_logprobs(entries or [])
    if not lps:
        return {"mean_logprob": -math.inf, "min_logprob": -math.inf, "min_field_logprob": -math.inf}
    mean = sum(lps) / len(lps)
    fields = field_logprobs(entries or [])
    return {"mean_logprob": mean, "min_logprob": min(lps),
            "min_field_logprob": min(fields.values()) if fields else mean}


def field_logprobs(entries: list[dict[str, Any]]) -> dict[str, float]:
    """The mean token log-probability of each top-level value of a JSON object answer, by key."""
    text = "".join(e["token"] for e in entries)
    start = text.find("{")
    if start < 0:
        return {}
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return {}
    if not isinstance(obj, dict):
        return {}
    spans = _value_spans(text, start, obj)
    bounds, at = [], 0  # each token's character span in the answer
    for e in entries:
        bounds.append((at, at + len(e["token"])))
        at += len(e["token"])
    out = {}
    for key, (lo, hi) in spans.items():
        mine = [float(e["logprob"]) for e, (a, b) in zip(entries, bounds) if a < hi and b > lo]
        if mine:
            out[key] = sum(mine) / len(mine)
    return out


def _value_spans(text: str, start: int, obj: dict) -> dict[str, tuple[int, int]]:
    """Where each top-level value is spelled in ``text``: found by re-decoding after each key,
    so a value equal to another key's text is not mistaken for it."""
    decoder = json.JSONDecoder()
    spans, at = {}, start + 1
    for key in obj:
        k = text.find(json.dumps(key), at)
        if k < 0:
            break
        colon = text.find(":", k + len(json.dumps(key)))
        lo = colon + 1
        while lo < len(text) and text[lo].isspace():
            lo += 1
        try:
            _, hi = decoder.raw_decode(text, lo)
        except ValueError:
            break
        spans[key] = (lo, hi)
        at = hi
    return spans
