"""How much load `gekro-ft bench` can drive, and whether its figures agree with `hey`'s.

    python benchmarks/bench_client.py                 # both parts, 3 alternating repeats
    python benchmarks/bench_client.py --repeats 1     # a quick look

Starts tests/fake_openai_server.py (a trivial streaming OpenAI-compatible server, its own
process) and runs, side by side on the same server, body and settings:

- ours: ``gekro_ft.bench.loadgen.measure`` (what ``gekro-ft bench`` runs), streaming
  chat completions, ``--synthetic-input-tokens``, no warmup;
- hey (https://github.com/rakyll/hey, Debian package ``hey``: ``apt-get install -y hey``):
  the same POST body, concurrency and request count. hey reads each response to its
  end, so its latency is our E2EL (plus the few bytes after the last token).

Part 1, the ceiling: zero token delay, so requests/s is bounded by whichever side gives
out first; our CPU seconds per request say what one core of ours could drive.
Part 2, the cross-check: a paced server (a token every --token-delay-ms), where both
tools should see the same requests/s and latencies; the ratios ours/hey are printed.

Repeats alternate ours and hey; each figure is the median over repeats.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
FAKE = REPO / "tests" / "fake_openai_server.py"
sys.path.insert(0, str(REPO))


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(FAKE), "--port", "0"], stdout=subprocess.PIPE, text=True)
    line: list[str] = []
    t = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(30)
    if not line or not line[0].startswith("PORT "):
        proc.kill()
        sys.exit("the fake server did not start")
    return proc, f"http://127.0.0.1:{int(line[0].split()[1])}"


def configure(url: str, **cfg) -> None:
    httpx.post(url + "/fake/config", json=cfg).raise_for_status()


def cpu_seconds(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run_ours(url: str, concurrency: int, requests: int, tokens: int) -> dict:
    from gekro_ft.bench.loadgen import measure
    from gekro_ft.bench.settings import BenchSettings

    s = BenchSettings(url=url, model="fake-base", out_dir=Path("/nonexistent"), synthetic_input_tokens=32,
                      concurrency=[concurrency], requests=requests, max_tokens=tokens, warmup=0, api_key_env="")
    cpu = cpu_seconds(resource.RUSAGE_SELF)
    lv = measure(s).results[0]
    cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu
    e = lv["e2el_ms"]
    return {"rps": lv["request_throughput"], "mean_ms": e["mean"], "p50_ms": e["p50"], "p90_ms": e["p90"],
            "p99_ms": e["p99"], "ok": lv["completed"], "errors": lv["errors"],
            "cpu_ms_per_request": cpu / requests * 1000}


def request_body(tokens: int) -> bytes:
    """The body ours sends for its first prompt: hey sends it for every request."""
    from gekro_ft.bench.client import StreamClient
    from gekro_ft.bench.prompts import synthetic_prompts

    client = StreamClient("http://x/v1", "chat", "fake-base", api_key=None, max_tokens=tokens, timeout=300,
                          extra_body={"temperature": 0.0})
    return client.body(synthetic_prompts(32, "chat").body(0))


def run_hey(url: str, concurrency: int, requests: int, body: bytes) -> dict:
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    res = subprocess.run(["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-T", "application/json",
                          "-H", "Accept: text/event-stream", "-t", "300", "-d", body.decode(),
                          url + "/v1/chat/completions"], capture_output=True, text=True, check=True)
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    text = res.stdout

    def secs(pattern: str) -> float:
        m = re.search(pattern, text)
        if not m:
            sys.exit(f"cannot read {pattern!r} in hey's output:\n{text}")
        return float(m.group(1))

    ok = sum(int(n) for n in re.findall(r"\[200\]\s+(\d+) responses", text))
    sent = requests // concurrency * concurrency  # hey gives each worker n // c requests
    return {"rps": secs(r"Requests/sec:\s+([\d.]+)"), "mean_ms": secs(r"Average:\s+([\d.]+) secs") * 1000,
            "p50_ms": secs(r"50% in ([\d.]+) secs") * 1000, "p90_ms": secs(r"90% in ([\d.]+) secs") * 1000,
            "p99_ms": secs(r"99% in ([\d.]+) secs") * 1000, "ok": ok, "errors": sent - ok,
            "cpu_ms_per_request": cpu / sent * 1000}


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def compare(title: str, url: str, concurrency: int, requests: int, tokens: int, repeats: int,
            use_hey: bool) -> dict:
    body = request_body(tokens)
    ours, hey = [], []
    for _ in range(repeats):
        ours.append(run_ours(url, concurrency, requests, tokens))
        if use_hey:
            hey.append(run_hey(url, concurrency, requests, body))
    result = {"title": title, "concurrency": concurrency, "requests": requests, "tokens": tokens,
              "ours": median_of(ours), "hey": median_of(hey) if hey else None}
    print(f"\n{title}: concurrency {concurrency}, {requests} requests of {tokens} streamed tokens, "
          f"median of {repeats}")
    print(f"{'figure':<22}{'ours':>12}{'hey':>12}{'ours/hey':>10}")
    for key in ("rps", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "cpu_ms_per_request", "errors"):
        o = result["ours"][key]
        h = result["hey"][key] if hey else None
        ratio = f"{o / h:.3f}" if h else "-"
        print(f"{key:<22}{o:>12.2f}{(f'{h:.2f}' if h is not None else '-'):>12}{ratio:>10}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tokens", type=int, default=16, help="cross-check: streamed tokens per answer")
    p.add_argument("--ceiling-tokens", default="16,256", help="ceiling: streamed tokens per answer, each a run")
    p.add_argument("--ceiling-concurrency", type=int, default=32)
    p.add_argument("--ceiling-requests", type=int, default=3200)
    p.add_argument("--concurrency", type=int, default=16, help="cross-check concurrency")
    p.add_argument("--requests", type=int, default=1600, help="cross-check requests")
    p.add_argument("--token-delay-ms", type=float, default=5.0, help="cross-check: server's time per token")
    p.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = p.parse_args()

    use_hey = shutil.which("hey") is not None
    if not use_hey:
        print("hey is not installed (apt-get install -y hey): ours only, no cross-check", file=sys.stderr)
    else:
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "hey"], capture_output=True, text=True)
        print(f"hey {version.stdout.strip() or '(version unknown)'}")
    proc, url = start_server()
    try:
        ceilings = []
        for tokens in (int(t) for t in args.ceiling_tokens.split(",")):
            configure(url, tokens=tokens, token_delay_ms=0)
            ceilings.append(compare("1. ceiling (server answers at once)", url, args.ceiling_concurrency,
                                    args.ceiling_requests, tokens, args.repeats, use_hey))
        configure(url, tokens=args.tokens, token_delay_ms=args.token_delay_ms)
        cross = compare(f"2. cross-check (a token every {args.token_delay_ms:g} ms)", url, args.concurrency,
                        args.requests, args.tokens, args.repeats, use_hey)
    finally:
        proc.terminate()
        proc.wait(10)
    print()
    for c in ceilings:
        o = c["ours"]
        print(f"ours, {c['tokens']}-token answers: {o['rps']:.0f} req/s ({o['rps'] * c['tokens']:,.0f} streamed "
              f"tokens/s) against the fake server, {o['cpu_ms_per_request']:.2f} ms of client CPU a request "
              f"= about {1000 / o['cpu_ms_per_request']:,.0f} req/s per client core")
    if cross["hey"]:
        worst = max(abs(cross["ours"][k] / cross["hey"][k] - 1) for k in ("rps", "mean_ms", "p50_ms", "p90_ms"))
        print(f"cross-check: largest difference from hey in req/s, mean, p50, p90 = {worst:.1%} "
              f"({'within' if worst <= 0.05 else 'NOT within'} 5%)")
    if args.out:
        args.out.write_text(json.dumps({"ceiling": ceilings, "cross_check": cross,
                                        "measured_at": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
