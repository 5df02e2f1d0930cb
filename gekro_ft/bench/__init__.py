"""The bench stage: a load generator for OpenAI-compatible endpoints and its latency/throughput figures.

``loadgen.run_bench`` drives the server (fixed-concurrency sweep or open-loop arrival
rate), ``client`` times one streamed request, ``stats`` turns records into the figures
vLLM's own benchmark reports (TTFT, TPOT, ITL, E2EL, goodput), ``report`` writes
``bench.json`` (the contract the cost report reads), ``requests.jsonl`` and the
Markdown/HTML report, and ``tracking`` logs the run to MLflow.
"""
