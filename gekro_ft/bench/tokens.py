"""Token counts when the server sends no ``usage``: counted with a tokenizer, after the load.

Counting happens once the last level has finished, never while requests are in flight,
so the tokenizer's cost cannot slow the load the client offers.
"""

from __future__ import annotations

from typing import Any


class TokenCounter:
    """Counts with ``load_tokenizer(name)``, loaded the first time it is needed."""

    def __init__(self, name: str):
        self.name = name
        self._tok: Any = None

    @property
    def tokenizer(self) -> Any:
        if self._tok is None:
            from gekro_ft.models import load_tokenizer

            self._tok = load_tokenizer(self.name)
        return self._tok

    def text(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: list[dict], tools: list | None = None) -> str:
        """The prompt text the model sees: its chat template with the generation prompt."""
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            return "\n\n".join(m["content"] for m in messages if m.get("content"))
        return tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)

    def prompt(self, body: dict[str, Any]) -> int:
        """Input tokens of a request body: rendered chat messages, or the completion prompt.
        With special tokens the template itself writes, as a server counts them."""
        if "messages" in body:
            return self.text(self.render(body["messages"], body.get("tools")))
        return len(self.tokenizer(body["prompt"])["input_ids"])
