"""Does ``gekro-ft batch run`` keep the CPU engine as busy as ``gekro-ft bench``'s best level?

    python benchmarks/batch_throughput.py --adapter work/demo/train/adapter
    python benchmarks/batch_throughput.py --adapter DIR --requests 16 --levels 4,8 --repeats 2

Starts one CPU engine serving the adapter (as ``gekro-ft batch run`` starts it) and, on that
same server, alternately:

- bench: ``gekro_ft.bench.loadgen.measure`` (what ``gekro-ft bench`` runs) over the eval
  tickets at each concurrency level, ``--requests`` a level, streamed; its best level's
  output tokens/s is the figure;
- batch: ``gekro_ft.batch.run.run_batch`` (what ``gekro-ft batch run --url`` runs) over the
  same tickets, ``--requests`` rows, at the best bench level's concurrency, into a fresh
  output; output tokens ÷ the job's wall seconds (the engine already up).

Both are greedy with the same ``--max-tokens``; the ratio batch ÷ bench is printed per
repeat and as the median. The machine's other load shows in the spread between repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bench_best(url: str, prompts: Path, levels: list[int], requests: int, max_tokens: int, out: Path) -> dict:
    from gekro_ft.bench.loadgen import measure
    from gekro_ft.bench.settings import BenchSettings

    settings = BenchSettings(url=url.removesuffix("/v1"), model="batch", out_dir=out, prompts=prompts,
                             concurrency=levels, requests=requests, max_tokens=max_tokens, warmup=1, api_key_env="")
    run = measure(settings)
    best = max(run.results, key=lambda r: r["output_tokens_per_s"])
    return {"concurrency": best["concurrency"], "output_tokens_per_s": best["output_tokens_per_s"],
            "levels": {r["concurrency"]: r["output_tokens_per_s"] for r in run.results},
            "errors": sum(r["errors"] for r in run.results)}


def batch_rate(url: str, prompts: Path, requests: int, concurrency: int, max_tokens: int, out: Path) -> dict:
    from gekro_ft.batch.run import BatchSettings, run_batch

    out.unlink(missing_ok=True)
    doc = run_batch(BatchSettings(model=None, input=prompts, output=out, url=url, served_model="batch",
                                  concurrency=concurrency, max_tokens=max_tokens, limit=requests))
    r = doc["this_run"]
    return {"concurrency": concurrency, "output_tokens_per_s": r["output_tokens_per_s"], "rows": r["answered"],
            "failed": r["failed"], "output_tokens_per_row": r["output_tokens"] / max(r["answered"], 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", type=Path, default=Path("work/demo/train/adapter"))
    ap.add_argument("--prompts", type=Path, default=REPO / "eval" / "ticket-extraction" / "openai.jsonl")
    ap.add_argument("--requests", type=int, default=16, help="per bench level, and the batch job's rows")
    ap.add_argument("--levels", default="4,8", help="bench concurrency levels (the CPU engine batches 8)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    from gekro_ft.batch.server import cpu_engine
    from gekro_ft.process import RaiseOnSignals

    levels = [int(x) for x in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="batch-throughput-"))
    rows = []
    # SIGTERM (a timeout) unwinds like Ctrl-C, so the server is stopped, not orphaned
    with RaiseOnSignals(lambda signum: SystemExit(128 + signum)), \
            cpu_engine(args.adapter, log=work / "server.log", max_batch_size=max(levels)) as url:
        for i in range(args.repeats):
            bench = bench_best(url, args.prompts, levels, args.requests, args.max_tokens, work / f"bench{i}")
            batch = batch_rate(url, args.prompts, args.requests, bench["concurrency"], args.max_tokens,
                               work / f"batch{i}.jsonl")
            ratio = batch["output_tokens_per_s"] / bench["output_tokens_per_s"]
            rows.append({"bench": bench, "batch": batch, "ratio": ratio})
            print(f"repeat {i + 1}: bench best level c={bench['concurrency']}: "
                  f"{bench['output_tokens_per_s']:.2f} output tok/s (levels {bench['levels']}); "
                  f"batch run c={batch['concurrency']}: {batch['output_tokens_per_s']:.2f} output tok/s "
                  f"({batch['output_tokens_per_row']:.1f} tok/row, {batch['failed']} failed); "
                  f"batch/bench = {ratio:.2f}", flush=True)
    median = statistics.median(r["ratio"] for r in rows)
    print(f"median batch/bench over {len(rows)} repeat(s): {median:.2f}")
    (work / "batch_throughput.json").write_text(json.dumps({"repeats": rows, "median_ratio": median}, indent=2))
    print(f"details: {work / 'batch_throughput.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
