"""vLLM's CPU build against the CPU engine: the same adapter, prompts and bench settings.

    python benchmarks/engines.py --adapter work/demo/train/adapter [--concurrency 1,4,8]
        [--requests 16] [--max-tokens 64] [--turns 1] [--out benchmarks/out/engines]

Both servers are started by `gekro-ft serve`: the CPU engine (`--engine cpu`) and vLLM
through the shipped profile `serve/vllm-cpu.yaml` (vLLM from `make vllm`, or wherever
$GEKRO_FT_VLLM points), each serving the adapter as `tickets`. Both stay up; `gekro-ft bench`
(streamed chat, the ticket eval prompts, a concurrency sweep) runs against one, then the
other, `--turns` times, so that load from other work on a shared machine falls on both
alike. Prints output tokens/s per concurrency for each engine (the median over turns), the
ratio vLLM / CPU engine, and p50 TTFT and end-to-end latency; writes the numbers to
OUT/engines.json. Nothing but the two servers and the bench runs in the meantime.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from serving import free_port, server_process  # noqa: E402

PROMPTS = ROOT / "eval" / "ticket-extraction" / "openai.jsonl"
ENGINES = ("cpu", "vllm")


def bench(url: str, out: Path, args: argparse.Namespace) -> list[dict]:
    subprocess.run([sys.executable, "-m", "gekro_ft.cli", "bench", "--url", url, "--model", "tickets",
                    "--prompts", str(PROMPTS), "--concurrency", args.concurrency, "--requests", str(args.requests),
                    "--max-tokens", str(args.max_tokens), "--warmup", str(args.warmup), "--out", str(out), "--json"],
                   check=True, capture_output=True)
    return json.loads((out / "bench.json").read_text())["levels"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--requests", type=int, default=16, help="per level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--profile", default=str(ROOT / "serve" / "vllm-cpu.yaml"), help="the vLLM profile")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "engines")
    args = parser.parse_args()
    adapter = args.adapter.resolve()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ports = {engine: free_port() for engine in ENGINES}
        doc = yaml.safe_load(Path(args.profile).read_text())
        doc.update(port=ports["vllm"], adapters={"tickets": str(adapter)})
        doc.pop("api_key_env", None)  # loopback, no key: the same as the CPU engine here
        profile = tmp / "vllm.yaml"
        profile.write_text(yaml.safe_dump(doc))
        started = time.monotonic()
        with server_process(["serve", "--engine", "cpu", "--port", str(ports["cpu"]), "--adapter",
                             f"tickets={adapter}"], ports["cpu"], log=args.out / "cpu-engine.log"):
            cpu_ready = time.monotonic() - started
            started = time.monotonic()
            with server_process(["serve", str(profile)], ports["vllm"], timeout=900, log=args.out / "vllm.log"):
                vllm_ready = time.monotonic() - started
                runs: dict[str, list[list[dict]]] = {e: [] for e in ENGINES}
                for turn in range(args.turns):
                    for engine in ENGINES:
                        url = f"http://127.0.0.1:{ports[engine]}"
                        runs[engine].append(bench(url, args.out / f"{engine}-{turn}", args))

    levels = [int(c) for c in args.concurrency.split(",")]
    table = []
    for i, c in enumerate(levels):
        row = {"concurrency": c}
        for engine in ENGINES:
            done = [run[i] for run in runs[engine]]
            row[engine] = {"output_tokens_per_s": statistics.median(lv["output_tokens_per_s"] for lv in done),
                           "ttft_ms_p50": statistics.median(lv["ttft_ms"]["p50"] for lv in done),
                           "e2el_ms_p50": statistics.median(lv["e2el_ms"]["p50"] for lv in done),
                           "errors": sum(lv.get("errors", 0) for lv in done)}
        row["ratio"] = row["vllm"]["output_tokens_per_s"] / row["cpu"]["output_tokens_per_s"]
        table.append(row)
    result = {"adapter": str(adapter), "profile": args.profile, "requests_per_level": args.requests,
              "max_tokens": args.max_tokens, "turns": args.turns, "ready_s": {"cpu": cpu_ready, "vllm": vllm_ready},
              "levels": table}
    (args.out / "engines.json").write_text(json.dumps(result, indent=2))

    print(f"{args.requests} streamed requests per level, max_tokens {args.max_tokens}, {args.turns} turn(s); "
          f"ready after {cpu_ready:.0f} s (CPU engine), {vllm_ready:.0f} s (vLLM)")
    print(f"{'concurrency':>11}{'CPU engine tok/s':>18}{'vLLM tok/s':>12}{'vLLM / CPU':>12}"
          f"{'TTFT p50 ms CPU | vLLM':>25}{'E2EL p50 ms CPU | vLLM':>25}")
    for row in table:
        cpu, vllm = row["cpu"], row["vllm"]
        print(f"{row['concurrency']:>11}{cpu['output_tokens_per_s']:>18.1f}{vllm['output_tokens_per_s']:>12.1f}"
              f"{row['ratio']:>12.2f}{cpu['ttft_ms_p50']:>14.0f} | {vllm['ttft_ms_p50']:<8.0f}"
              f"{cpu['e2el_ms_p50']:>14.0f} | {vllm['e2el_ms_p50']:<8.0f}")
    errors = sum(row[e]["errors"] for row in table for e in ENGINES)
    if errors:
        print(f"errors: {errors}")
    best = max(ENGINES, key=lambda e: table[-1][e]["output_tokens_per_s"])
    print(f"more output tokens/s at concurrency {levels[-1]}: {'the CPU engine' if best == 'cpu' else 'vLLM'}")


if __name__ == "__main__":
    main()
