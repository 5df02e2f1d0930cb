"""Data stage throughput: gekro-ft against the obvious alternative, side by side in one run.

    python benchmarks/data_throughput.py [--rows 1000000] [--workdir DIR] [--keep]

It writes N ShareGPT rows (~800 bytes each: 1M rows is ~800 MB) and measures, each in
a fresh child process so that peak memory is that process's own:

- ours: ``validate_file`` (every check, streaming) and ``convert_file`` to OpenAI JSONL;
- the baseline: ``datasets.load_dataset("json")`` + ``.map`` to OpenAI ``messages`` +
  ``.to_json``, once with ``.map``'s defaults (per row) and once batched (1,000 rows),
  with a fresh cache directory so nothing is reused between runs.

Wall time is measured inside the child around the work (imports excluded) and peak
memory is the child's max RSS from ``wait4`` (interpreter and imports included, for
both sides alike). Targets (issue 2): ours at most 1/3 of the baseline's time and
1/5 of its peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the order arrived late and the box was damaged so please send a replacement or refund "
         "my account shows two charges for one subscription which I never agreed to and support "
         "has not answered since monday thanks for checking this quickly").split()
ROLE = {"system": "system", "human": "user", "gpt": "assistant"}


# --- generating the input -------------------------------------------------------------------

def generate(path: Path, rows: int) -> None:
    import orjson

    marker = path.with_suffix(".rows")
    if path.exists() and marker.exists() and marker.read_text() == str(rows):
        return
    rng = random.Random(0)

    def text(n: int) -> str:
        return " ".join(rng.choices(WORDS, k=n))

    with open(path, "wb") as f:
        buf = []
        for i in range(rows):
            conv = [{"from": "system", "value": text(10)}, {"from": "human", "value": text(45)},
                    {"from": "gpt", "value": text(60)}]
            if i % 5 == 0:  # some multi-turn rows
                conv += [{"from": "human", "value": text(8)}, {"from": "gpt", "value": text(12)}]
            buf.append(orjson.dumps({"conversations": conv, "id": f"row-{i}"}))
            if len(buf) == 10_000:
                f.write(b"\n".join(buf) + b"\n")
                buf = []
        if buf:
            f.write(b"\n".join(buf) + b"\n")
    marker.write_text(str(rows))


# --- what each child process runs ------------------------------------------------------------

def child_ours_validate(src: str, out: str) -> int:
    from gekro_ft.data.validate import validate_file

    report = validate_file(src, "sharegpt")
    assert report.errors == 0, report.by_code()
    return report.rows


def child_ours_convert(src: str, out: str) -> int:
    from gekro_ft.data.convert import convert_file

    return convert_file(src, out, "openai", "sharegpt").written


def _to_messages(conversations):
    return [{"role": ROLE[t["from"]], "content": t["value"]} for t in conversations]


def _datasets(src: str, out: str, batched: bool) -> int:
    import datasets

    datasets.disable_progress_bars()
    cache = tempfile.mkdtemp(prefix="hf-cache-", dir=Path(out).parent)
    try:
        ds = datasets.load_dataset("json", data_files=src, split="train", cache_dir=cache)
        if batched:
            ds = ds.map(lambda b: {"messages": [_to_messages(c) for c in b["conversations"]]},
                        batched=True, batch_size=1000, remove_columns=["conversations"])
        else:
            ds = ds.map(lambda r: {"messages": _to_messages(r["conversations"])}, remove_columns=["conversations"])
        ds.to_json(out)
        return ds.num_rows
    finally:
        shutil.rmtree(cache, ignore_errors=True)


CHILDREN = {
    "ours: validate": child_ours_validate,
    "ours: convert": child_ours_convert,
    "datasets: load + map + to_json": lambda s, o: _datasets(s, o, batched=False),
    "datasets: load + map(batched) + to_json": lambda s, o: _datasets(s, o, batched=True),
}


def run_child(name: str, src: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--input", str(src), "--output", str(out)]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="gekro-ft data stage vs datasets load+map")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the generated file for the next run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # inside a measured child process
        fn = CHILDREN[args.child]
        start = time.perf_counter()
        rows = fn(args.input, args.output)
        print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows}))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gekro-bench-data-"))
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / f"sharegpt-{args.rows}.jsonl"
    with console.status(f"writing {args.rows:,} ShareGPT rows"):
        generate(src, args.rows)
    size_mb = src.stat().st_size / 1e6
    console.print(f"input: {src} ({args.rows:,} rows, {size_mb:,.0f} MB); python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs")

    results = {}
    for name in CHILDREN:
        out = workdir / f"out-{name.split(':')[0]}-{len(results)}.jsonl"
        with console.status(f"measuring {name}"):
            results[name] = run_child(name, src, out)
        out.unlink(missing_ok=True)
        r = results[name]
        console.print(f"  {name}: {r['seconds']:.1f} s, {r['peak_rss_mib']:.0f} MiB peak, {r['rows']:,} rows")

    ours_v, ours_c = results["ours: validate"], results["ours: convert"]
    rows_seen = {r["rows"] for r in results.values()}
    if rows_seen != {args.rows}:
        raise SystemExit(f"row counts differ between runs: {rows_seen}")
    results["ours: validate + convert"] = {"seconds": ours_v["seconds"] + ours_c["seconds"], "rows": args.rows,
                                           "peak_rss_mib": max(ours_v["peak_rss_mib"], ours_c["peak_rss_mib"])}

    table = Table("run", "wall s", "rows/s", "peak RSS MiB", title=f"{args.rows:,} ShareGPT rows, {size_mb:,.0f} MB")
    for name, r in results.items():
        table.add_row(name, f"{r['seconds']:.1f}", f"{r['rows'] / r['seconds']:,.0f}", f"{r['peak_rss_mib']:,.0f}")
    console.print(table)

    ratios = {}
    for base in ("datasets: load + map + to_json", "datasets: load + map(batched) + to_json"):
        b = results[base]
        for ours in ("ours: convert", "ours: validate + convert"):
            o = results[ours]
            t, m = o["seconds"] / b["seconds"], o["peak_rss_mib"] / b["peak_rss_mib"]
            ratios[f"{ours} / {base}"] = {"time": t, "memory": m}
            ok = "meets" if t <= 1 / 3 and m <= 1 / 5 else "MISSES"
            console.print(f"{ours} vs {base}: time x{t:.3f}, peak memory x{m:.3f} "
                          f"({ok} the <=1/3 time, <=1/5 memory target)", soft_wrap=True)

    report = {"schema_version": 1, "rows": args.rows, "input_mb": size_mb, "cpus": os.cpu_count(),
              "python": platform.python_version(), "results": results, "ratios": ratios,
              "command": " ".join([Path(sys.executable).name] + sys.argv)}
    (workdir / "data_throughput.json").write_text(json.dumps(report, indent=2))
    console.print(f"results: {workdir / 'data_throughput.json'}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
