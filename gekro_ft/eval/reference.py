"""A reference frontier: a **simulated** frontier model that answers a suite's own references,
wrong on a stated share of them.

No frontier API is reachable here (no network, no keys), yet the router has to be calibrated
against something that is better than the adapter, as a real frontier model is; a base model
stands in only as something *worse*. ``reference:SUITE`` (``reference:SUITE@RATE``, default
rate 0.05) answers each of the suite's prompts with its reference, except on ``round(RATE × N)``
of the suite's N examples, where it makes one realistic mistake:

- a JSON object reference: one field takes the value that field has in another example of the
  suite (a plausible wrong customer, category...), or null where no other value exists;
- any other reference: another example's reference.

Which examples are wrong is fixed by a hash of each example's prompt (ranked over the whole
suite, so a ``--limit`` run sees the same mistakes on the examples it keeps), and the field by
the same hash: the same suite and rate always give the same answers. Token counts are an
estimate, characters ÷ 4 (the rule of thumb OpenAI's pricing pages give for English), so a
bill priced on them is an estimate too. Every description of it says ``simulation``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import orjson

from gekro_ft.data.conversation import Conversation
from gekro_ft.errors import ProviderError
from gekro_ft.eval.suite import Generation, Suite

PREFIX = "reference:"
DEFAULT_ERROR_RATE = 0.05
CHARS_PER_TOKEN = 4


def parse_spec(spec: str) -> tuple[str, float]:
    """``reference:SUITE[@RATE]`` -> (suite, rate); a ProviderError for a rate outside [0, 1]."""
    body = spec.removeprefix(PREFIX)
    suite, _, rate_text = body.rpartition("@") if "@" in body else (body, "", "")
    if not suite:
        raise ProviderError(f"{spec!r}: name the suite, as in reference:ticket-extraction@0.05")
    try:
        rate = float(rate_text) if rate_text else DEFAULT_ERROR_RATE
    except ValueError:
        raise ProviderError(f"{spec!r}: the error rate after '@' must be a number such as 0.05") from None
    if not 0 <= rate <= 1 or math.isnan(rate):
        raise ProviderError(f"{spec!r}: the error rate must lie between 0 and 1, got {rate_text}")
    return suite, rate


def reference_frontier(spec: str) -> ReferenceFrontier:
    """The frontier ``reference:SUITE[@RATE]`` names; ProviderError/SuiteError for a bad spec or suite."""
    from gekro_ft.eval.suite import load_suite

    suite, rate = parse_spec(spec)
    return ReferenceFrontier(load_suite(suite), rate, spec)


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN)) if text else 0


def _prompt_key(messages: list[dict[str, Any]]) -> str:
    return hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()


class ReferenceFrontier:
    """The suite's references by prompt, a stated share of them wrong (see the module doc)."""

    kind = "reference"

    def __init__(self, suite: Suite, error_rate: float, spec: str):
        from gekro_ft.eval.runner import load_examples

        self.suite, self.error_rate, self.spec = suite, error_rate, spec
        examples = load_examples(suite.model_copy(update={"limit": None}))
        if not examples:
            raise ProviderError(f"{spec}: the suite {suite.name} has no examples to answer with")
        keyed = [(_prompt_key(e.conv.prompt_messages()), e.reference) for e in examples]
        wrong = set(sorted(range(len(keyed)), key=lambda i: keyed[i][0])[:round(error_rate * len(keyed))])
        references = [ref for _, ref in keyed]
        self.answers = {key: (_mistake(ref, references, key) if i in wrong else ref)
                        for i, (key, ref) in enumerate(keyed)}
        self.wrong = len(wrong)
        self.requests_sent = 0
        self.model = None  # priced by the name the caller gives (the frontier it simulates)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.spec, "simulation": True, "suite": self.suite.name,
                "error_rate": self.error_rate, "wrong_answers": self.wrong, "examples": len(self.answers),
                "tokens": f"estimated as characters / {CHARS_PER_TOKEN}",
                "note": "a simulated frontier: the suite's references, wrong on the stated share"}

    def answer(self, messages: list[dict[str, Any]]) -> str | None:
        """The simulated answer to a prompt, or None when it is not one of the suite's."""
        return self.answers.get(_prompt_key(messages))

    @staticmethod
    def tokens(messages: list[dict[str, Any]], text: str) -> tuple[int, int]:
        """(prompt, answer) tokens, estimated (the module doc says how)."""
        return estimate_tokens("".join(str(m.get("content") or "") for m in messages)), estimate_tokens(text)

    def generate(self, convs: list[Conversation], gen: Generation,
                 progress: Callable[[int], None] | None = None) -> list[Any]:
        from gekro_ft.eval.providers import Answer

        out = []
        for conv in convs:
            messages = conv.prompt_messages()
            text = self.answer(messages)
            if text is None:
                out.append(Answer(None, error=f"not a prompt of the suite {self.suite.name} (a reference "
                                              "frontier answers only its suite)", error_kind="not_in_suite"))
            else:
                out.append(Answer(text, *self.tokens(messages, text), 0.0))
            if progress:
                progress(1)
        return out


def _mistake(reference: str, references: list[str], key: str) -> str:
    """One plausible mistake on ``reference``, chosen by ``key`` (a hex hash)."""
    h = int(key[:16], 16)
    value = _object(reference)
    if value is None or not value:
        others = [r for r in references if r != reference]
        return others[h % len(others)] if others else reference + " (unsure)"
    field = sorted(value)[h % len(value)]
    alternatives = sorted({orjson.dumps(v[field]) for r in references
                           if (v := _object(r)) is not None and field in v and v[field] != value[field]})
    value[field] = orjson.loads(alternatives[h % len(alternatives)]) if alternatives else None
    return json.dumps(value, ensure_ascii=False)  # the references' own layout: ", " and ": "


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
