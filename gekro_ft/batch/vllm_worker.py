"""The vLLM side of the offline engine: a script run by vLLM's own interpreter.

vLLM usually lives in an environment of its own (its pins clash with training's), so the
batch job does not import it: :class:`gekro_ft.batch.offline.OfflineEngine` starts this file
with that environment's Python (``python -I vllm_worker.py CONFIG``) and talks to it over
pipes. It imports only the standard library and vLLM, never gekro_ft, so it runs in any
environment that has vLLM.

The protocol is JSON lines. The worker's stdout is the reply channel, so before loading vLLM
it moves its own fd 1 to stderr: whatever vLLM or its libraries print goes to the log, never
into a reply.

- CONFIG (argv[1], JSON): ``model``, ``adapter`` (directory or null), ``lora_name``,
  ``max_lora_rank``, ``max_model_len``, ``dtype``.
- once loaded, the worker writes ``{"ready": true, "max_model_len": N}``;
- each request line is ``{"rows": [{"key", "messages", "tools", "max_tokens", "temperature",
  "top_p", "seed", "stop"}, ...]}``; the reply is ``{"results": [...]}`` in the same order,
  each ``{"key", "text", "finish_reason", "input_tokens", "output_tokens"}`` or
  ``{"key", "error": [code, message]}``;
- end of input: the worker exits 0.

A prompt too long for the context is refused row by row here: vLLM refuses a whole
``generate`` call for one such prompt. SIGINT is ignored (the job decides when to stop and
closes the pipe); SIGTERM ends the worker.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def main() -> int:
    config = json.loads(sys.argv[1])
    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # vLLM logs to stdout: keep it off the reply channel
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from vllm import LLM

    kwargs = {"model": config["model"], "dtype": config.get("dtype") or "auto"}
    if config.get("max_model_len"):
        kwargs["max_model_len"] = int(config["max_model_len"])
    lora = None
    if config.get("adapter"):
        from vllm.lora.request import LoRARequest

        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=int(config["max_lora_rank"]))
        lora = LoRARequest(config["lora_name"], 1, config["adapter"])
    llm = LLM(**kwargs)
    tokenizer = llm.get_tokenizer()
    limit = llm.llm_engine.model_config.max_model_len
    replies.write(json.dumps({"ready": True, "max_model_len": limit}) + "\n")
    for line in sys.stdin:
        if line.strip():
            rows = json.loads(line)["rows"]
            replies.write(json.dumps({"results": generate(llm, lora, tokenizer, limit, rows)}) + "\n")
    return 0


def generate(llm, lora, tokenizer, limit: int, rows: list[dict]) -> list[dict]:
    from vllm import SamplingParams

    results: dict[int, dict] = {}
    prompts, params, keys = [], [], []
    for i, row in enumerate(rows):
        try:
            text = tokenizer.apply_chat_template(row["messages"], tools=row.get("tools"), tokenize=False,
                                                 add_generation_prompt=True)
        except Exception as e:  # a row the chat template cannot render fails alone
            results[i] = {"key": row["key"], "error": ["invalid_request", f"the chat template refused it: {e}"[:500]]}
            continue
        n_prompt = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        max_tokens = int(row["max_tokens"])
        if n_prompt + max_tokens > limit:
            results[i] = {"key": row["key"], "error": [
                "context_length_exceeded", f"the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) "
                                           f"is over the model's context of {limit} tokens"]}
            continue
        stop = row.get("stop")
        prompts.append(text)
        params.append(SamplingParams(max_tokens=max_tokens, temperature=float(row.get("temperature") or 0.0),
                                     top_p=float(row.get("top_p") or 1.0), seed=row.get("seed"),
                                     stop=[stop] if isinstance(stop, str) else stop))
        keys.append(i)
    if prompts:
        for i, out in zip(keys, llm.generate(prompts, params, lora_request=lora, use_tqdm=False)):
            gen = out.outputs[0]
            results[i] = {"key": rows[i]["key"], "text": gen.text, "finish_reason": gen.finish_reason,
                          "input_tokens": len(out.prompt_token_ids or []), "output_tokens": len(gen.token_ids)}
    return [results[i] for i in range(len(rows))]


if __name__ == "__main__":
    sys.exit(main())
