"""Rendering a conversation through a chat template, with the tokens that carry loss.

The loss mask comes from prefix differences, which works with any template: the
text an assistant turn adds is ``render(messages[:k+1]) - render(messages[:k],
add_generation_prompt=True)``. A template that does not grow by prefixes (e.g. one
that rewrites earlier turns) is reported as a ``template-mismatch``, because then
no mask derived from the rendered text can be trusted.

Training consumes exactly this (``input_ids`` and ``loss``), so what ``gekro-ft
data render`` shows is what the model learns from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gekro_ft.data.conversation import Conversation
from gekro_ft.data.schemas.fields import Problems
from gekro_ft.errors import DataError, TemplateMissingError


@dataclass(slots=True)
class Rendered:
    text: str
    input_ids: list[int]
    offsets: list[tuple[int, int]]
    loss: list[bool]  # per token: does it carry training loss?
    spans: list[tuple[int, int]]  # character spans of the trained text
    problems: Problems = field(default_factory=list)

    @property
    def n_loss_tokens(self) -> int:
        return sum(self.loss)


def require_template(tokenizer: Any, model: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateMissingError(f"the tokenizer of {model!r} has no chat template",
                                   hint="pass --chat-template FILE with a Jinja chat template")


def _apply(tokenizer: Any, messages: list[dict], conv: Conversation, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tools=conv.tools, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def render(tokenizer: Any, conv: Conversation) -> Rendered:
    """Render ``conv``; on a template failure return an empty rendering with a ``template-error``."""
    messages = conv.messages()
    offset = 1 if conv.system is not None else 0
    try:
        full = _apply(tokenizer, messages, conv, False)
    except Exception as e:  # jinja2 TemplateError, raise_exception() in templates, KeyError...
        return Rendered("", [], [], [], [], [("template-error", f"the chat template fails: {e}")])

    problems: Problems = []
    spans: list[tuple[int, int]] = []
    cursor = 0
    for k, turn in enumerate(conv.turns):
        if turn.role != "assistant" or turn.weight == 0:
            continue
        m = k + offset
        try:
            before = _apply(tokenizer, messages[:m], conv, True) if m else ""
            upto = _apply(tokenizer, messages[: m + 1], conv, False)
        except Exception as e:
            problems.append(("template-error", f"the chat template fails on a prefix of the row: {e}"))
            continue
        if upto.startswith(before) and full.startswith(upto):
            span = (len(before), len(upto))
        else:
            # Not prefix-stable: fall back to finding the answer text itself.
            start = full.find(turn.text, cursor) if turn.text else -1
            problems.append(("template-mismatch",
                             f"the chat template does not render turn {k} as a prefix extension; "
                             "its loss mask was located by searching for the answer text"))
            if start < 0:
                continue
            span = (start, start + len(turn.text))
        if turn.text and turn.text not in full[span[0]:span[1]]:
            problems.append(("template-mismatch",
                             f"the chat template changes the answer of turn {k}: the rendered text "
                             "does not contain it verbatim"))
        spans.append(span)
        cursor = span[1]

    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    loss = [any(s < e_tok and b_tok < e for s, e in spans) for b_tok, e_tok in offsets]
    return Rendered(full, list(enc["input_ids"]), offsets, loss, spans, problems)


def length_problems(r: Rendered, max_seq_len: int | None) -> Problems:
    """What truncation to ``max_seq_len`` (from the right, as trainers do) does to the trained tokens."""
    if not r.input_ids:
        return []
    total = r.n_loss_tokens
    if total == 0:
        return [("no-loss-tokens", "no token of this row carries loss (all answers weighted 0?)")]
    if max_seq_len is None or len(r.input_ids) <= max_seq_len:
        return []
    kept = sum(r.loss[:max_seq_len])
    if kept == total:  # only untrained tail tokens are cut
        return []
    message = (f"renders to {len(r.input_ids)} tokens; --max-seq-len {max_seq_len} cuts "
               f"{total - kept} of its {total} trained tokens")
    if kept == 0:
        message += ", leaving nothing to learn"
    return [("truncated-answer", message)]


@dataclass(slots=True)
class RowView:
    """One row of a file, rendered: what ``gekro-ft data render`` shows."""

    file: str
    index: int
    rendered: Rendered

    def segments(self) -> list[tuple[str, bool]]:
        """The rendered text cut into runs of (text, trained?)."""
        r = self.rendered
        trained = bytearray(len(r.text))
        for (b, e), loss in zip(r.offsets, r.loss):
            if loss:
                trained[b:e] = b"\x01" * (e - b)
        runs: list[tuple[str, bool]] = []
        start = 0
        for i in range(1, len(r.text) + 1):
            if i == len(r.text) or trained[i] != trained[start]:
                runs.append((r.text[start:i], bool(trained[start])))
                start = i
        return runs

    def to_dict(self, tokenizer: Any) -> dict[str, Any]:
        r = self.rendered
        return {"file": self.file, "row": self.index, "text": r.text,
                "tokens": [{"id": t, "text": tokenizer.decode([t]), "loss": l}
                           for t, l in zip(r.input_ids, r.loss)],
                "n_tokens": len(r.input_ids), "n_loss_tokens": r.n_loss_tokens,
                "problems": [{"code": c, "message": m} for c, m in r.problems]}


def render_row(path: Any, tokenizer: Any, index: int, schema: str | None = None) -> RowView:
    from gekro_ft.data.detect import resolve_schema
    from gekro_ft.data.rows import read_rows

    schema, _ = resolve_schema(path, schema)
    for row in read_rows(path, schema):
        if row.index != index:
            continue
        if not row.readable:
            problems = "; ".join(f"{f.code}: {f.message}" for f in row.findings)
            raise DataError(f"{path} row {index} cannot be read: {problems}")
        rendered = render(tokenizer, row.conv)
        if not rendered.input_ids:
            raise DataError(f"{path} row {index}: {rendered.problems[0][1]}")
        return RowView(str(path), index, rendered)
    raise DataError(f"{path} has no row {index} (rows are numbered from 0)")
