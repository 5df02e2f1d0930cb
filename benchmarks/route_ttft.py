"""What deciding before streaming costs in time to first token, measured with `gekro-ft bench`.

    python benchmarks/route_ttft.py --adapter work/demo/train/adapter [--requests 8] [--turns 2]

One CPU-engine process serves the adapter; two router processes sit in front of it:

- **pass-through**: rules only (no checks, no confidence): the router picks the upstream
  before generation and relays its stream as it comes;
- **deciding**: the ticket suite's checks and a confidence threshold: the router needs the
  whole local answer, so the stream starts only after it (and the decision).

`gekro-ft bench` (streamed chat, concurrency 1, the ticket eval prompts) runs against the
engine directly and through each router, in turns (A B C, A B C, …) so that load from other
work on a shared machine falls on all three alike. The confidence threshold is -100, so
only a failed check escalates (to the base model on the same engine); the count of
escalations is printed, since their frontier answers are in the deciding router's latency.
Prints TTFT and E2EL medians per target and the ratios to direct.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from serving import free_port, server_process  # noqa: E402

PROMPTS = ROOT / "eval" / "ticket-extraction" / "openai.jsonl"
SCHEMA = ROOT / "eval" / "ticket-extraction" / "ticket.schema.json"


def bench(url: str, out: Path, requests: int, max_tokens: int) -> dict:
    subprocess.run([sys.executable, "-m", "gekro_ft.cli", "bench", "--url", url, "--model", "tickets",
                    "--prompts", str(PROMPTS), "--concurrency", "1", "--requests", str(requests),
                    "--max-tokens", str(max_tokens), "--warmup", "1", "--out", str(out), "--json"],
                   check=True, capture_output=True)
    level = json.loads((out / "bench.json").read_text())["levels"][0]
    return {"ttft_ms": level["ttft_ms"]["p50"], "e2el_ms": level["e2el_ms"]["p50"], "errors": level.get("errors", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        engine_port = free_port()
        engine = f"http://127.0.0.1:{engine_port}/v1"
        common = {"local": {"url": engine, "model": "tickets"},
                  "frontier": {"url": engine, "model": "smollm2-135m-instruct", "price": "gpt-4.1-mini"}}
        profiles = {"pass-through": {**common, "rules": {"default": "local"}},
                    "deciding": {**common, "checks": {"json_valid": True, "schema": str(SCHEMA)},
                                 "confidence": {"score": "min_field_logprob", "threshold": -100.0}}}
        ports = {}
        for name, doc in profiles.items():
            ports[name] = free_port()
            (tmp / f"{name}.yaml").write_text(yaml.safe_dump({**doc, "port": ports[name],
                                                              "escalation_log": str(tmp / f"{name}.jsonl")}))
        with server_process(["serve", "--engine", "cpu", "--port", str(engine_port),
                             "--adapter", f"tickets={args.adapter}"], engine_port, log=tmp / "engine.log"), \
             server_process(["route", "serve", str(tmp / "pass-through.yaml")], ports["pass-through"]), \
             server_process(["route", "serve", str(tmp / "deciding.yaml")], ports["deciding"]):
            targets = {"direct": engine, **{n: f"http://127.0.0.1:{p}/v1" for n, p in ports.items()}}
            runs: dict[str, list[dict]] = {n: [] for n in targets}
            for turn in range(args.turns):
                for name, url in targets.items():
                    runs[name].append(bench(url, tmp / f"{name}-{turn}", args.requests, args.max_tokens))
            escalated = sum(1 for p in tmp.glob("*.jsonl") for _ in p.read_text().splitlines())

    print(f"{args.requests} streamed requests per run, concurrency 1, {args.turns} turns, "
          f"max_tokens {args.max_tokens}; escalations: {escalated}")
    print(f"{'target':<14}{'TTFT p50 ms':>13}{'E2EL p50 ms':>13}{'TTFT / direct':>15}{'E2EL / direct':>15}")
    med = {n: (statistics.median(r["ttft_ms"] for r in rs), statistics.median(r["e2el_ms"] for r in rs))
           for n, rs in runs.items()}
    for name, (ttft, e2el) in med.items():
        print(f"{name:<14}{ttft:>13.0f}{e2el:>13.0f}{ttft / med['direct'][0]:>15.2f}{e2el / med['direct'][1]:>15.2f}")
    errors = sum(r["errors"] for rs in runs.values() for r in rs)
    if errors:
        print(f"errors: {errors}")


if __name__ == "__main__":
    main()
