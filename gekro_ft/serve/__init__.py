"""Serving adapters behind an OpenAI-compatible endpoint.

``profile`` (what to serve: base model, adapters, engine settings), ``adapters`` (resolving
and checking adapter directories), ``vllm`` (the vLLM launcher, runtime adapter changes, and
the engine-neutral readiness/signal helpers), and the CPU engine for machines without a GPU.
"""
