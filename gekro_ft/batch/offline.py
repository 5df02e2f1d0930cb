"""The offline engine: vLLM's ``LLM.generate`` with a ``LoRARequest``, no HTTP in between.

vLLM schedules a whole chunk of prompts with continuous batching; the job hands it
``chunk_rows`` at a time so each chunk's answers reach the output (and a stop loses at
most one chunk). Prompts are the chat template's rendering of each row's messages, as the
server would render them. A prompt too long for ``max_model_len`` is refused here, row by
row, before vLLM sees the chunk (vLLM refuses a whole ``generate`` call for one such prompt).

Used when ``vllm`` is importable (``--engine vllm``, or ``auto``); it runs in the process that
has vLLM, so in production the job runs in vLLM's environment. SIGINT/SIGTERM stop it
between chunks (:class:`gekro_ft.process.StopOnSignal`); a second one stops it at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from gekro_ft.batch.inputs import BatchRow
from gekro_ft.batch.records import Result, completion_body


class OfflineEngine:
    kind = "vllm-offline"

    def __init__(self, base_model: str, adapter: Path | None, *, defaults: dict[str, Any],
                 chunk_rows: int = 256, max_model_len: int | None = None, max_lora_rank: int | None = None):
        self.base_model, self.adapter, self.defaults = base_model, adapter, defaults
        self.chunk_rows, self.max_model_len, self.max_lora_rank = chunk_rows, max_model_len, max_lora_rank
        self.model = "batch" if adapter else base_model

    def describe(self) -> dict[str, Any]:
        return {"engine": self.kind, "base_model": self.base_model,
                "adapter": str(self.adapter) if self.adapter else None, "chunk_rows": self.chunk_rows}

    def run(self, rows: Iterator[BatchRow], on_result: Callable[[Result], None]) -> int | None:
        from gekro_ft.process import StopOnSignal

        llm, lora = self._load()
        tokenizer = llm.get_tokenizer()
        limit = llm.llm_engine.model_config.max_model_len
        with StopOnSignal() as stop:
            while chunk := list(islice(rows, self.chunk_rows)):
                for result in self._generate(llm, lora, tokenizer, limit, chunk):
                    on_result(result)
                if stop.received is not None:
                    return stop.received
        return None

    def _load(self) -> tuple[Any, Any]:
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        from gekro_ft.models import resolve_model

        kwargs: dict[str, Any] = {"model": resolve_model(self.base_model).source}
        if self.max_model_len:
            kwargs["max_model_len"] = self.max_model_len
        if self.adapter is not None:
            from gekro_ft.adapter import inspect_adapter
            from gekro_ft.serve.lora import lora_rank_for

            kwargs.update(enable_lora=True, max_loras=1,
                          max_lora_rank=self.max_lora_rank or lora_rank_for([inspect_adapter(self.adapter).max_rank]))
        llm = LLM(**kwargs)
        lora = LoRARequest(self.model, 1, str(self.adapter)) if self.adapter is not None else None
        return llm, lora

    def _generate(self, llm: Any, lora: Any, tokenizer: Any, limit: int, chunk: list[BatchRow]) -> list[Result]:
        from vllm import SamplingParams

        results: list[Result] = []
        prompts, params, sent = [], [], []
        for row in chunk:
            body = {**self.defaults, **(row.body or {})}
            text = tokenizer.apply_chat_template(body["messages"], tools=body.get("tools"), tokenize=False,
                                                 add_generation_prompt=True)
            n_prompt = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
            if n_prompt + max_tokens > limit:
                results.append(Result(row, error=("context_length_exceeded",
                                                  f"the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) "
                                                  f"is over the model's context of {limit} tokens")))
                continue
            stop = body.get("stop")
            prompts.append(text)
            params.append(SamplingParams(max_tokens=max_tokens, temperature=float(body.get("temperature", 0.0)),
                                         top_p=float(body.get("top_p", 1.0)), seed=body.get("seed"),
                                         stop=[stop] if isinstance(stop, str) else stop))
            sent.append(row)
        if prompts:
            outputs = llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
            for row, out in zip(sent, outputs):
                gen = out.outputs[0]
                n_in, n_out = len(out.prompt_token_ids or []), len(gen.token_ids)
                results.append(Result(row, text=gen.text, finish_reason=gen.finish_reason, input_tokens=n_in,
                                      output_tokens=n_out,
                                      body=completion_body(self.model, gen.text, gen.finish_reason, n_in, n_out)))
        return results
