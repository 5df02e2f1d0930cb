"""The CPU engine: one base model and several LoRA adapters behind vLLM's HTTP contract.

It exists so that laptops, CI and machines without a GPU run everything downstream
(eval, bench, cost) against a real server process. Design, in brief:

- One worker thread owns the model. Requests wait in a queue; the worker takes up to
  ``max_batch_size`` of them (waiting ``batch_wait_ms`` for company after the first),
  prefills them together with left padding and decodes step by step with a KV cache.
  That is static batching: a batch runs until its last member finishes. vLLM's
  continuous batching is the production answer; this is the honest small version.
- Adapters are PEFT adapters loaded side by side; PEFT's ``adapter_names`` forward
  argument applies a different adapter (or none, ``__base__``) to each row of one
  batch, so requests for different adapters share a batch.
- Each request has an asyncio queue on the HTTP side; the worker hands it text deltas
  with ``loop.call_soon_threadsafe``. A client that goes away is dropped from its batch.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class GenRequest:
    """One generation, as the worker sees it. Events put on ``events``:
    ``("delta", text)`` …, then ``("done", finish_reason)`` or ``("error", message)``. With
    ``logprobs``, a ``("logprob", entry)`` precedes the text of each generated token (entry as
    OpenAI shapes one: token, logprob, bytes, top_logprobs)."""

    prompt_ids: list[int]
    adapter: str  # an adapter name or BASE
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    events: asyncio.Queue | None = None
    loop: asyncio.AbstractEventLoop | None = None
    cancelled: bool = False
    output_tokens: int = 0

    def emit(self, kind: str, value: Any) -> None:
        if self.loop is not None and self.events is not None:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


class Overloaded(Exception):
    """More requests are waiting than the engine is set to hold."""


@dataclass
class EngineStats:
    """Counters for /health: enough to see load and utilization from outside."""

    started: float = field(default_factory=time.time)
    requests: int = 0
    output_tokens: int = 0
    busy_s: float = 0.0
    running: int = 0
    batches: int = 0  # requests / batches: how much batching the load allowed
    largest_batch: int = 0


class CPUEngine:
    """A base model plus named LoRA adapters, generating in batches on one worker thread."""

    def __init__(self, base_source: str, adapters: dict[str, Path] | None = None, *,
                 max_batch_size: int = 8, batch_wait_ms: float = 10.0, max_waiting: int = 1024,
                 dtype: str = "float32"):
        from transformers import AutoTokenizer

        from gekro_ft.models import load_model

        self.tokenizer = AutoTokenizer.from_pretrained(base_source)
        self.templates = {BASE: self.tokenizer}
        adapters = dict(adapters or {})
        for name, path in adapters.items():  # an adapter may carry its own chat template
            if (Path(path) / "tokenizer_config.json").exists():
                self.templates[name] = AutoTokenizer.from_pretrained(str(path))
        # the engine's tensors are built on the CPU: the model stays there, in the configured dtype
        self.model = load_model(base_source, adapters, device="cpu", dtype=dtype)
        self.adapters = list(adapters)
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        # A longer text cannot fit in the context whatever it says: refused without the seconds that
        # tokenizing megabytes takes.
        self.max_prompt_chars = self.max_context * max_chars_per_token(self.tokenizer)
        self.eos_ids = self._eos_ids()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000
        self.max_waiting = max_waiting
        self.stats = EngineStats()
        self._queue: queue.Queue[GenRequest | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="cpu-engine", daemon=True)
        self._worker.start()

    def _eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return sorted(i for i in ids if i is not None)

    # -- the HTTP side ------------------------------------------------------------------

    def chat_text(self, messages: list[dict], adapter: str, tools: list | None = None) -> str:
        """The conversation rendered with the adapter's chat template (or the base's), ready to tokenize."""
        tok = self.templates.get(adapter, self.tokenizer)
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, tools=tools)

    def text_prompt_ids(self, prompt: str) -> list[int]:
        return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

    def submit(self, req: GenRequest) -> None:
        if not req.prompt_ids:  # a row without tokens would fail the whole batch it joins
            raise ValueError("a request needs at least one prompt token")
        if self._queue.qsize() >= self.max_waiting:
            raise Overloaded(f"{self._queue.qsize()} requests are already waiting")
        self._queue.put(req)

    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=30)

    # -- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(nxt)
            batch = [r for r in batch if not r.cancelled]
            if not batch:
                continue
            t0 = time.perf_counter()
            self.stats.running = len(batch)
            try:
                self._generate(batch)
            except Exception as e:  # one bad batch must not take the server down
                for r in batch:
                    r.emit("error", f"generation failed: {type(e).__name__}: {e}")
            finally:
                self.stats.running = 0
                self.stats.busy_s += time.perf_counter() - t0
                self.stats.requests += len(batch)
                self.stats.batches += 1
                self.stats.largest_batch = max(self.stats.largest_batch, len(batch))

    def _generate(self, batch: list[GenRequest]) -> None:
        import torch
        from transformers import DynamicCache

        n = len(batch)
        width = max(len(r.prompt_ids) for r in batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(batch):  # left padding: every row's next token is at the right edge
            ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        extra = {"adapter_names": [r.adapter for r in batch]} if self.adapters else {}
        generators = [torch.Generator().manual_seed(r.seed) if r.seed is not None else None for r in batch]
        tokens: list[list[int]] = [[] for _ in batch]
        sent = [""] * n
        done = [False] * n
        cache = DynamicCache()
        step_input = ids
        with torch.inference_mode():
            for step in range(max(r.max_tokens for r in batch)):
                out = self.model(input_ids=step_input, attention_mask=mask, position_ids=positions,
                                 past_key_values=cache, use_cache=True, **extra)
                cache = out.past_key_values
                logits = out.logits[:, -1, :].float()
                next_ids = []
                for i, r in enumerate(batch):
                    if done[i] or r.cancelled:
                        done[i] = True
                        next_ids.append(self.pad_id)
                        continue
                    tok = _pick(logits[i], r.temperature, r.top_p, generators[i])
                    next_ids.append(tok)
                    if r.logprobs and tok not in self.eos_ids:
                        r.emit("logprob", self._logprob_entry(logits[i], tok, r.top_logprobs))
                    if tok in self.eos_ids:
                        self._finish(r, tokens[i], sent, i, "stop")
                        done[i] = True
                        continue
                    tokens[i].append(tok)
                    r.output_tokens = len(tokens[i])
                    self.stats.output_tokens += 1
                    if self._stream_text(r, tokens[i], sent, i) or len(tokens[i]) >= r.max_tokens:
                        done[i] = True
                if all(done):
                    break
                step_input = torch.tensor(next_ids, dtype=torch.long).unsqueeze(1)
                mask = torch.cat([mask, torch.ones((n, 1), dtype=torch.long)], dim=1)
                positions = positions[:, -1:] + 1

    def _logprob_entry(self, logits: Any, tok: int, top: int) -> dict[str, Any]:
        """The chosen token's log-probability under the model (before temperature, as vLLM
        reports by default) and the ``top`` likeliest alternatives, shaped as OpenAI's
        ``ChatCompletionTokenLogprob``."""
        import torch

        logp = torch.log_softmax(logits, dim=-1)

        def one(token_id: int) -> dict[str, Any]:
            text = self.tokenizer.decode([token_id])
            return {"token": text, "logprob": float(logp[token_id]), "bytes": list(text.encode("utf-8"))}

        entry = one(tok)
        if top:
            values, ids = torch.topk(logp, top)
            entry["top_logprobs"] = [one(int(t)) for t in ids]
        else:
            entry["top_logprobs"] = []
        return entry

    def _stream_text(self, r: GenRequest, toks: list[int], sent: list[str], i: int) -> bool:
        """Send the new text; True when a stop string or the token limit ended the request."""
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        for s in r.stop:
            at = text.find(s)
            if at >= 0:
                if at > len(sent[i]):
                    r.emit("delta", text[len(sent[i]):at])
                sent[i] = text[:at]
                r.emit("done", "stop")
                return True
        if len(toks) >= r.max_tokens:
            self._finish(r, toks, sent, i, "length")
            return True
        # Hold back a half-decoded character and any tail that could still grow into a stop string.
        safe = len(text) - _held_back(text, r.stop)
        if text.endswith("\ufffd"):
            safe = min(safe, len(text) - 1)
        if safe > len(sent[i]):
            r.emit("delta", text[len(sent[i]):safe])
            sent[i] = text[:safe]
        return False

    def _finish(self, r: GenRequest, toks: list[int], sent: list[str], i: int, reason: str) -> None:
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        if len(text) > len(sent[i]):
            r.emit("delta", text[len(sent[i]):])
            sent[i] = text
        r.emit("done", reason)


def _pick(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest set whose mass reaches top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of some stop string."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                longest = max(longest, k)
                break
    return longest


def max_chars_per_token(tokenizer: Any) -> int:
    """The most characters of text one token can stand for: its longest vocabulary entry (a
    byte-level entry spells each byte as one character, so it covers no more characters than
    it has), twice over for normalizers that shrink text (NFC joins combining marks)."""
    return 2 * max(len(t) for t in tokenizer.get_vocab())
