"""What deciding before streaming costs in time to first token, measured with `gekro-ft bench`.

    python benchmarks/route_ttft.py --adapter work/demo/train/adapter [--requests 8] [--turns 2] \
        [--classifier prompt-classifier.json | --calibrate 24]

One CPU-engine process serves the adapter; three router processes sit in front of it:

- **pass-through**: rules only (no checks, no confidence): the router picks the upstream
  before generation and relays its stream as it comes;
- **deciding**: the ticket suite's checks and a confidence threshold: the router needs the
  whole local answer, so the stream starts only after it (and the decision);
- **prompt-only**: a prompt classifier (``prompt_classifier``) decides from the prompt before
  generation and relays the chosen upstream's stream as it comes. Its artifact is given with
  ``--classifier``, or trained here the way a team would: ``gekro-ft route calibrate`` on the
  ticket suite's first ``--calibrate`` examples against the same engine (the base model as
  the frontier), then ``gekro-ft route train-classifier`` on that route.json.

`gekro-ft bench` (streamed chat, concurrency 1, the ticket eval prompts) runs against the
engine directly and through each router, in turns (A B C D, A B C D, …) so that load from
other work on a shared machine falls on all four alike. The confidence threshold is -100, so
only a failed check escalates (to the base model on the same engine); the count of
escalations is printed, since their frontier answers are in the deciding router's latency.
Prints TTFT and E2EL medians per target and the ratios to direct and to pass-through.
"""

from __future__ import annotations

import argparse
import contextlib
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

SUITE = ROOT / "eval" / "ticket-extraction.yaml"
PROMPTS = ROOT / "eval" / "ticket-extraction" / "openai.jsonl"
SCHEMA = ROOT / "eval" / "ticket-extraction" / "ticket.schema.json"


def bench(url: str, out: Path, requests: int, max_tokens: int) -> dict:
    subprocess.run([sys.executable, "-m", "gekro_ft.cli", "bench", "--url", url, "--model", "tickets",
                    "--prompts", str(PROMPTS), "--concurrency", "1", "--requests", str(requests),
                    "--max-tokens", str(max_tokens), "--warmup", "1", "--out", str(out), "--json"],
                   check=True, capture_output=True)
    level = json.loads((out / "bench.json").read_text())["levels"][0]
    return {"ttft_ms": level["ttft_ms"]["p50"], "e2el_ms": level["e2el_ms"]["p50"], "errors": level.get("errors", 0)}


def cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "gekro_ft.cli", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"gekro-ft {' '.join(args[:2])} failed:\n{done.stderr}")
    return done


def train_classifier(engine: str, examples: int, tmp: Path) -> Path:
    """Calibrate on the ticket suite against the engine (the base model standing in for the
    frontier), then train the prompt classifier on the report. The suite is copied with one
    request at a time and a long timeout: a CPU engine on shared cores answers slowly."""
    suite = yaml.safe_load(SUITE.read_text())
    suite["data"] = str(PROMPTS)
    for m in suite["metrics"]:
        if isinstance(m, dict) and "schema" in m:
            m["schema"] = str(SCHEMA)
    suite["endpoint"] = {**suite["endpoint"], "concurrency": 1, "timeout_s": 600}
    (tmp / "suite.yaml").write_text(yaml.safe_dump(suite))
    cli("route", "calibrate", str(tmp / "suite.yaml"), "--local", engine, "--local-model", "tickets",
        "--frontier", engine, "--frontier-model", "smollm2-135m-instruct", "--frontier-price", "gpt-4.1-mini",
        "--local-usd-per-1m", "0.1", "--limit", str(examples), "--out", str(tmp / "calibration"))
    out = tmp / "prompt-classifier.json"
    print(cli("route", "train-classifier", "-c", str(tmp / "calibration" / "route.json"), "-o", str(out)).stdout,
          end="")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--classifier", type=Path, help="A prompt classifier artifact (default: train one).")
    parser.add_argument("--calibrate", type=int, default=24, help="Suite examples to train it on.")
    parser.add_argument("--threshold", type=float, default=0.5, help="The prompt-only router's threshold.")
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
        with contextlib.ExitStack() as stack:
            stack.enter_context(server_process(["serve", "--engine", "cpu", "--port", str(engine_port),
                                                "--adapter", f"tickets={args.adapter}"], engine_port,
                                               log=tmp / "engine.log"))
            classifier = (args.classifier.resolve() if args.classifier
                          else train_classifier(engine, args.calibrate, tmp))
            profiles["prompt-only"] = {**common, "prompt_classifier": {"model": str(classifier),
                                                                       "threshold": args.threshold}}
            ports = {}
            for name, doc in profiles.items():
                ports[name] = free_port()
                (tmp / f"{name}.yaml").write_text(yaml.safe_dump({**doc, "port": ports[name],
                                                                  "escalation_log": str(tmp / f"{name}.jsonl")}))
                stack.enter_context(server_process(["route", "serve", str(tmp / f"{name}.yaml")], ports[name]))
            targets = {"direct": engine, **{n: f"http://127.0.0.1:{p}/v1" for n, p in ports.items()}}
            runs: dict[str, list[dict]] = {n: [] for n in targets}
            for turn in range(args.turns):
                for name, url in targets.items():
                    runs[name].append(bench(url, tmp / f"{name}-{turn}", args.requests, args.max_tokens))
            escalated = {n: len((tmp / f"{n}.jsonl").read_text().splitlines()) if (tmp / f"{n}.jsonl").exists()
                         else 0 for n in profiles}

    print(f"{args.requests} streamed requests per run, concurrency 1, {args.turns} turns, "
          f"max_tokens {args.max_tokens}; escalations: "
          + ", ".join(f"{n} {k}" for n, k in escalated.items()))
    print(f"{'target':<14}{'TTFT p50 ms':>13}{'E2EL p50 ms':>13}{'TTFT / direct':>15}{'E2EL / direct':>15}"
          f"{'TTFT / pass':>13}{'E2EL / pass':>13}")
    med = {n: (statistics.median(r["ttft_ms"] for r in rs), statistics.median(r["e2el_ms"] for r in rs))
           for n, rs in runs.items()}
    direct, passed = med["direct"], med["pass-through"]
    for name, (ttft, e2el) in med.items():
        print(f"{name:<14}{ttft:>13.0f}{e2el:>13.0f}{ttft / direct[0]:>15.2f}{e2el / direct[1]:>15.2f}"
              f"{ttft / passed[0]:>13.2f}{e2el / passed[1]:>13.2f}")
    errors = sum(r["errors"] for rs in runs.values() for r in rs)
    if errors:
        print(f"errors: {errors}")


if __name__ == "__main__":
    main()
