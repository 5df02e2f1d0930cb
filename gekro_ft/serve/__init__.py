"""Serving adapters behind an OpenAI-compatible endpoint.

``profile`` (what to serve: base model, adapters, engine settings), ``adapters`` (resolving
and checking adapter directories), ``vllm`` (the vLLM launcher and runtime adapter changes),
``lora`` (the ranks vLLM serves), ``ready`` (the ready message), and the CPU engine for
machines without a GPU. Readiness, signals and stopping are in :mod:`gekro_ft.process`.
"""
