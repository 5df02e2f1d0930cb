"""What each benchmark request asks: prompts from a dataset file, or synthetic text.

A dataset file is read with the data stage (any schema it reads); each row's prompt is
its conversation up to the last assistant turn, the turn the model is asked to write.
Requests cycle through the prompts in file order.

Synthetic prompts approximate N tokens with N words drawn (seeded) from common English
words that are each one token, with their leading space, in the GPT-2, Llama and
SmolLM2 BPE vocabularies; the first four words spell the request number, so no two
prompts share a prefix and a prefix cache cannot make them cheaper than real traffic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gekro_ft.errors import InputFileError

WORDS = tuple("""the of and to in is that for it as with was on be at by this had not are but from or
have an they which one you were her all she there would their we him been has when who will more no if
out so said what up its about into than them can only other new some could time these two may then do
first any my now such like our over man me even most made after also did many before must through back
years where much your way well down should because each just those people how too little state good
very make world still own see men work long get here between both life being under never day same
another know while last might us great old year off come since against go came right used take
three""".split())
_POOL = 8192  # seeded words that synthetic prompts take windows from


class PromptSet:
    """Request bodies' prompt part (``messages``/``tools`` or ``prompt``), cycled by request number."""

    def __init__(self, bodies: list[dict[str, Any]] | None, description: str,
                 make: Callable[[int], dict[str, Any]] | None = None, skipped: int = 0):
        self._bodies, self._make = bodies, make
        self.description = description
        self.skipped = skipped  # rows of the file that held no usable prompt

    def body(self, i: int) -> dict[str, Any]:
        if self._make is not None:
            return self._make(i)
        return self._bodies[i % len(self._bodies)]

    def __len__(self) -> int:
        return len(self._bodies) if self._bodies is not None else 0


def _synthetic(pool: list[str], n_tokens: int, i: int) -> str:
    k = len(WORDS)
    head = [WORDS[(i // k ** d) % k] for d in range(3, -1, -1)]  # the request number in base len(WORDS)
    off = (i * 7919) % _POOL
    return " ".join(head + pool[off:off + max(n_tokens - len(head), 0)])


def synthetic_prompts(n_tokens: int, endpoint: str, seed: int = 0) -> PromptSet:
    rng = random.Random(seed)
    pool = [rng.choice(WORDS) for _ in range(_POOL + n_tokens)]

    def make(i: int) -> dict[str, Any]:
        text = _synthetic(pool, n_tokens, i)
        return {"messages": [{"role": "user", "content": text}]} if endpoint == "chat" else {"prompt": text}

    return PromptSet(None, f"synthetic: about {n_tokens} input tokens a prompt (seed {seed})", make)


def file_prompts(path: str | Path, endpoint: str, schema: str | None = None,
                 render: Callable[[list[dict], list | None], str] | None = None,
                 limit: int | None = None) -> PromptSet:
    """Prompts from a dataset file, the first ``limit`` of them (a bench of N requests needs no
    more of a large file). For the completions endpoint, ``render`` turns messages (and
    tools) into the prompt text, normally with the tokenizer's chat template."""
    from gekro_ft.data.rows import read_rows

    bodies: list[dict[str, Any]] = []
    skipped, first_problem = 0, None
    for row in read_rows(path, schema):
        if limit is not None and len(bodies) >= limit:
            break
        messages = row.conv.prompt_messages() if row.readable else []
        if not any(m["role"] in ("user", "tool") for m in messages):  # nothing for the model to answer
            skipped += 1
            if first_problem is None:
                where = f"line {row.line}" if row.line is not None else f"row {row.index + 1}"
                why = row.findings[0].message if row.findings else "no turn before the last assistant turn"
                first_problem = f"{where}: {why}"
            continue
        tools = row.conv.tools or None
        if endpoint == "chat":
            bodies.append({"messages": messages, **({"tools": tools} if tools else {})})
        else:
            bodies.append({"prompt": render(messages, tools) if render else
                           "\n\n".join(m["content"] for m in messages if m.get("content"))})
    if not bodies:
        raise InputFileError(path, "holds no usable prompt" + (f" (first problem, {first_problem})"
                                                              if first_problem else ": it is empty"))
    return PromptSet(bodies, f"{path}: {len(bodies)} prompts", skipped=skipped)

