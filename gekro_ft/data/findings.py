"""Findings: what the data checks report, each under a stable code.

Codes are part of the public contract (CI scripts grep them); add new ones, never
rename. ``CODES`` documents each one and is printed by ``gekro-ft data codes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gekro_ft.data.limits import MAX_DEPTH, MAX_ROW_BYTES, human_bytes


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    severity: Severity
    summary: str


_E, _W = Severity.ERROR, Severity.WARNING

CODES: dict[str, Code] = {c.code: c for c in [
    # Reading the row
    Code("invalid-json", _E, "the line is not valid JSON"),
    Code("not-an-object", _E, "the row is not a JSON object"),
    Code("nesting-too-deep", _E,
         f"the row nests arrays/objects deeper than {MAX_DEPTH} levels; it was not read"),
    Code("row-too-large", _E, f"the row is larger than {human_bytes(MAX_ROW_BYTES)}; it was not read"),
    Code("unknown-schema", _E, "the row matches none of openai, alpaca, sharegpt"),
    Code("missing-field", _E, "a required field is missing"),
    Code("wrong-type", _E, "a field has the wrong type (e.g. messages is not a list)"),
    Code("unrecognized-key", _W, "a message has a key the schema does not define"),
    # Turns
    Code("non-string-content", _E, "content is not a string"),
    Code("empty-content", _E, "content is empty or only whitespace"),
    Code("unknown-role", _E, "a role the schema does not define"),
    Code("invalid-weight", _E, "a turn weight other than 0 or 1"),
    Code("invalid-tool-call", _E, "a tool call without a function name or with arguments that are not JSON"),
    # Conversation shape
    Code("no-user-turn", _E, "the conversation has no user turn"),
    Code("no-assistant-turn", _E, "the conversation has no assistant turn: nothing to learn"),
    Code("not-ending-on-assistant", _E, "the last turn is not the assistant's"),
    Code("consecutive-same-role", _E, "two turns of the same role in a row"),
    Code("system-not-first", _E, "a system message after the first turn"),
    Code("orphan-tool-result", _E, "a tool result with no preceding tool call to answer"),
    Code("template-placeholder", _W, "leftover template placeholder such as {{name}}"),
    Code("duplicate-row", _W, "the same conversation (whitespace aside) appeared earlier"),
    Code("too-few-examples", _W, "fewer than 10 usable examples (OpenAI's minimum)"),
    Code("no-rows", _E, "the file holds no rows at all (empty, only whitespace, or [])"),
    # With a model's tokenizer and chat template
    Code("truncated-answer", _E, "rendered length exceeds --max-seq-len; truncation cuts an assistant answer"),
    Code("no-loss-tokens", _E, "no token of the rendered row carries training loss"),
    Code("template-error", _E, "the model's chat template cannot render the row"),
    Code("template-mismatch", _W, "the chat template changes an answer or is not prefix-stable, so the loss mask is uncertain"),
    # Conversion
    Code("unconvertible", _E, "the target schema cannot express this row; it was not written"),
    Code("dropped-field", _W, "a field the target schema cannot express was dropped"),
]}


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    message: str
    index: int | None  # 0-based position of the row in the file; None for the file as a whole
    line: int | None = None  # 1-based line, for JSONL files

    @property
    def severity(self) -> Severity:
        return CODES[self.code].severity

    def moved(self, rows: int, lines: int) -> Finding:
        """This finding of a row ``rows`` rows and ``lines`` lines further into the file (a chunk's
        findings, placed in the whole file)."""
        if not (rows or lines) or self.index is None:
            return self
        return Finding(self.code, self.message, self.index + rows, None if self.line is None else self.line + lines)

    @property
    def where(self) -> str:
        if self.line is not None:
            return f"line {self.line}"
        return f"row {self.index}" if self.index is not None else "file"

    def to_dict(self) -> dict:
        return {"line": self.line, "index": self.index, "code": self.code,
                "severity": self.severity.value, "message": self.message}


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)
