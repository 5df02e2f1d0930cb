"""Batch jobs: every row of a corpus answered by an adapter, resumable, priced against the APIs.

``inputs`` (rows in: any dataset schema, plain prompts, OpenAI Batch API input files),
``job`` (the output and errors files, appended in whole chunks, read back to resume),
``endpoint`` and ``offline`` (the engines: an OpenAI-compatible endpoint with bounded
concurrency, vLLM's offline engine), ``server`` (the CPU engine started for an adapter),
``run`` (a job top to bottom), ``estimate`` (a sample extrapolated to the corpus, per
provider), ``report`` and ``tracking`` (the documents people read, the MLflow run).
"""
