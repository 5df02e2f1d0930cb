"""Generating answers locally: a base model, optionally with a LoRA adapter, batched, greedy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gekro_ft.data.conversation import Conversation


class LocalGenerator:
    """Greedy generation for eval prompts: the conversation up to its last assistant turn."""

    def __init__(self, base_source: str, adapter_dir: str | Path | None = None, device: str | None = None,
                 dtype: str | None = None):
        """``device`` and ``dtype`` default to the machine's best (see :func:`gekro_ft.models.load_model`)."""
        from transformers import AutoTokenizer

        from gekro_ft.models import load_model
        from gekro_ft.runtime import best_device

        self.device = device or best_device()
        self.tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir or base_source))
        self.tokenizer.padding_side = "left"  # generation continues from the right edge
        adapters = {"default": adapter_dir} if adapter_dir is not None else None
        self.model = load_model(base_source, adapters, device=self.device, dtype=dtype)

    def prompt(self, conv: Conversation) -> str:
        return self.tokenizer.apply_chat_template(conv.prompt_messages(), tokenize=False, add_generation_prompt=True,
                                                  tools=conv.tools)

    def generate(self, convs: list[Conversation], max_new_tokens: int = 128, batch_size: int = 8) -> list[dict[str, Any]]:
        import torch

        out = []
        for i in range(0, len(convs), batch_size):
            prompts = [self.prompt(c) for c in convs[i:i + batch_size]]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id,
                                          eos_token_id=self.tokenizer.eos_token_id)
            for row, prompt_ids in zip(gen, enc["input_ids"]):
                new = row[prompt_ids.shape[0]:]
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                out.append({"text": text, "input_tokens": int((prompt_ids != self.tokenizer.pad_token_id).sum()),
                            "output_tokens": int((new != self.tokenizer.pad_token_id).sum())})
        return out
