"""Does ``gekro-ft batch run`` keep the CPU engine as busy as ``gekro-ft bench``'s best level?

    python benchmarks/batch_throughput.py --adapter work/demo/train/adapter
    python benchmarks/batch_throughput.py --adapter DIR --requests 16 --levels 4,8 --repeats 3
    python benchmarks/batch_throughput.py --fake-token-ms 20 --requests 48 --max-tokens 32 --repeats 3  # clients alone

Starts one CPU engine serving the adapter (as ``gekro-ft batch run`` starts it) and, on that
same server, for each concurrency level in turn:

- bench: ``gekro_ft.bench.loadgen.measure`` (what ``gekro-ft bench`` runs) at that level alone,
  one warm-up request then ``--requests`` streamed requests: the prompt file's rows 2 to
  ``requests + 1`` (the bench hands out prompts in file order, the warm-up takes the first);
- batch: ``gekro_ft.batch.run.run_batch`` (what ``gekro-ft batch run --url`` runs) at the same
  concurrency over exactly those rows, into a fresh output; output tokens ÷ the job's wall
  seconds (the engine already up).

So both ask the same prompts, greedy, with the same ``--max-tokens``, on the same server, one
right after the other. Per repeat it prints each level's output tokens/s for both and the
mean batch size the engine formed (from its ``/health`` counters), then bench's best level
against batch at that level's concurrency (the ratio batch ÷ bench; the median over repeats
is the figure). The machine's other load shows in the spread between repeats.

``--fake-token-ms MS`` puts ``tests/fake_openai_server.py`` in the engine's place (every answer
``--max-tokens`` tokens, MS apart, no model): what is left is the two clients' own cost, the
ideal being concurrency × 1000 ÷ MS output tokens/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def engine_counters(url: str) -> dict | None:
    import httpx

    h = httpx.get(url.removesuffix("/v1") + "/health", timeout=10).json()
    return {"requests": h["requests"], "batches": h["batches"]} if "batches" in h else None  # the fake has none


def mean_batch(before: dict | None, after: dict | None) -> float | None:
    if before is None or after is None:
        return None
    batches = after["batches"] - before["batches"]
    return (after["requests"] - before["requests"]) / batches if batches else None


def bench_level(url: str, model: str, prompts: Path, level: int, requests: int, max_tokens: int, out: Path) -> dict:
    from gekro_ft.bench.loadgen import measure
    from gekro_ft.bench.settings import BenchSettings

    settings = BenchSettings(url=url.removesuffix("/v1"), model=model, out_dir=out, prompts=prompts,
                             concurrency=[level], requests=requests, max_tokens=max_tokens, warmup=1,
                             api_key_env="")
    before = engine_counters(url)
    (result,) = measure(settings).results
    after = engine_counters(url)
    return {"concurrency": level, "output_tokens_per_s": result["output_tokens_per_s"],
            "errors": result["errors"], "engine_mean_batch": mean_batch(before, after)}


def batch_level(url: str, model: str, rows: Path, level: int, max_tokens: int, out: Path) -> dict:
    from gekro_ft.batch.run import BatchSettings, run_batch

    out.unlink(missing_ok=True)
    before = engine_counters(url)
    doc = run_batch(BatchSettings(model=None, input=rows, output=out, url=url, served_model=model,
                                  concurrency=level, max_tokens=max_tokens))
    after = engine_counters(url)
    r = doc["this_run"]
    return {"concurrency": level, "output_tokens_per_s": r["output_tokens_per_s"], "rows": r["answered"],
            "failed": r["failed"], "output_tokens_per_row": r["output_tokens"] / max(r["answered"], 1),
            "engine_mean_batch": mean_batch(before, after)}


def _mean(side: dict) -> str:
    return "n/a" if side["engine_mean_batch"] is None else f"{side['engine_mean_batch']:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", type=Path, default=Path("work/demo/train/adapter"))
    ap.add_argument("--prompts", type=Path, default=REPO / "eval" / "ticket-extraction" / "openai.jsonl",
                    help="a JSONL dataset, one conversation a line")
    ap.add_argument("--requests", type=int, default=16, help="per bench level, and each batch job's rows")
    ap.add_argument("--levels", default="4,8", help="concurrency levels (the CPU engine batches up to the largest)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--fake-token-ms", type=float, help="the fake server instead of the CPU engine: clients alone")
    args = ap.parse_args(argv)
    from gekro_ft.batch.server import cpu_engine
    from gekro_ft.process import RaiseOnSignals

    levels = [int(x) for x in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="batch-throughput-"))
    lines = args.prompts.read_text().splitlines(keepends=True)
    if len(lines) < args.requests + 1:
        ap.error(f"{args.prompts} has {len(lines)} rows; --requests {args.requests} needs {args.requests + 1}")
    rows = work / "rows.jsonl"  # the rows the bench level asks after its warm-up request
    rows.write_text("".join(lines[1:args.requests + 1]))
    repeats = []
    if args.fake_token_ms is not None:
        sys.path.insert(0, str(REPO / "tests"))
        from serving import fake_openai

        server = fake_openai("--tokens", str(args.max_tokens), "--token-delay-ms", str(args.fake_token_ms))
        model = "fake-adapter"
    else:
        server, model = cpu_engine(args.adapter, log=work / "server.log", max_batch_size=max(levels)), "batch"
    # SIGTERM (a timeout) unwinds like Ctrl-C, so the server is stopped, not orphaned
    with RaiseOnSignals(lambda signum: SystemExit(128 + signum)), server as started:
        url = started if isinstance(started, str) else started.url + "/v1"
        for i in range(args.repeats):
            per_level = []
            for level in levels:
                bench = bench_level(url, model, args.prompts, level, args.requests, args.max_tokens,
                                    work / f"bench{i}-{level}")
                batch = batch_level(url, model, rows, level, args.max_tokens, work / f"batch{i}-{level}.jsonl")
                per_level.append({"bench": bench, "batch": batch})
                print(f"repeat {i + 1} c={level}: bench {bench['output_tokens_per_s']:.2f} output tok/s "
                      f"(engine batches of {_mean(bench)}, {bench['errors']} errors); "
                      f"batch run {batch['output_tokens_per_s']:.2f} output tok/s (engine batches of "
                      f"{_mean(batch)}, {batch['output_tokens_per_row']:.1f} tok/row, {batch['failed']} failed)",
                      flush=True)
            best = max(per_level, key=lambda p: p["bench"]["output_tokens_per_s"])
            ratio = best["batch"]["output_tokens_per_s"] / best["bench"]["output_tokens_per_s"]
            repeats.append({"levels": per_level, "best_bench_concurrency": best["bench"]["concurrency"],
                            "bench_best": best["bench"]["output_tokens_per_s"],
                            "batch_at_that_concurrency": best["batch"]["output_tokens_per_s"], "ratio": ratio})
            print(f"repeat {i + 1}: bench best level c={best['bench']['concurrency']}: "
                  f"{best['bench']['output_tokens_per_s']:.2f} output tok/s; batch run at c="
                  f"{best['batch']['concurrency']}: {best['batch']['output_tokens_per_s']:.2f} output tok/s; "
                  f"batch/bench = {ratio:.2f}", flush=True)
    median = statistics.median(r["ratio"] for r in repeats)
    print(f"median batch/bench over {len(repeats)} repeat(s): {median:.2f}")
    (work / "batch_throughput.json").write_text(json.dumps({"settings": vars(args) | {
        "adapter": str(args.adapter), "prompts": str(args.prompts)}, "repeats": repeats, "median_ratio": median},
        indent=2))
    print(f"details: {work / 'batch_throughput.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
