"""Data stage throughput: gekro-ft against the obvious alternative, side by side in one run.

    python benchmarks/data_throughput.py [--rows 1000000] [--workdir DIR] [--keep]
                                         [--texts multi-line]

It writes N ShareGPT rows (about 800 bytes each, so 1M rows is about 800 MB; every
fifth row multi-turn; with ``--texts multi-line``, every second answer a few paragraphs and
a list, and every tenth question with non-ASCII characters, as real chat data holds) and
runs each of these in a fresh child process, so that the peak memory measured is that
job's own:

- ours: ``validate_file`` (every check, duplicates included) and ``convert_file`` to
  OpenAI JSONL, both streaming (``gekro-ft data validate FILE``,
  ``gekro-ft data convert IN OUT --to openai``);
- the baseline, what one would write without us: ``datasets.load_dataset("json")``,
  ``.map`` from ShareGPT ``conversations`` to OpenAI ``messages``, ``.to_json``. Once
  with ``.map``'s defaults (one row at a time), once batched (1,000 rows), which is
  the stronger baseline. Each gets a fresh cache directory and runs offline, so
  nothing is reused between runs.

Per run: wall time around the work, measured inside the child (imports excluded);
the child process's whole life, measured by this parent (interpreter start and
imports included); and the child's peak RSS from ``wait4`` (interpreter and imports
included, for both sides alike; for ``datasets`` it also counts the pages of its
memory-mapped Arrow cache that were resident). Every converted output is read back:
all of them must hold the same rows with the same messages, or the run fails.

Linux carries a process's peak RSS across ``exec``, so a child's ``ru_maxrss`` is at
least what its parent had reached when it spawned it. The parent therefore stays small:
it generates the input in another process, reads the outputs back only after the last
child, and imports rich only to print. Each child also reports its own ``VmHWM``; the
run warns if the two differ.

Targets: ours at most 1/3 of the baseline's time and 1/5 of its peak memory.

The results go to ``WORKDIR/data_throughput.json``. Converted files and caches are
deleted as soon as they are checked, and the input at the end unless ``--keep``;
with ``--keep`` and the same ``--workdir``, the next run reuses the input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from child_process import run_python  # benchmarks/child_process.py, beside this script

TIME_TARGET = 1 / 3
MEMORY_TARGET = 1 / 5
GENERATOR_VERSION = 2  # bump when the generated rows change, so old inputs are rewritten
TEXTS = ("one-line", "multi-line")
WORDS = ("the order arrived late and the box was damaged so please send a replacement or refund "
         "my account shows two charges for one subscription which I never agreed to and support "
         "has not answered since monday thanks for checking this quickly").split()
ROLE = {"system": "system", "human": "user", "gpt": "assistant"}


# --- the input file -----------------------------------------------------------------------

def generate(path: Path, rows: int, texts: str = "one-line") -> bool:
    """Write ``rows`` ShareGPT rows to ``path`` unless a complete file is already there.

    Returns whether it wrote. A sidecar marker, written last, records what the file holds.
    """
    import orjson

    marker = path.with_suffix(".rows")
    expected = {"rows": rows, "generator": GENERATOR_VERSION} | ({"texts": texts} if texts != "one-line" else {})
    if path.exists() and marker.exists():
        found = json.loads(marker.read_text())
        if found == {**expected, "bytes": path.stat().st_size}:
            return False
    marker.unlink(missing_ok=True)
    rng = random.Random(0)
    with open(path, "wb") as f:
        for start in range(0, rows, 10_000):
            chunk = range(start, min(start + 10_000, rows))
            f.write(b"\n".join(orjson.dumps(_sharegpt_row(rng, i, texts)) for i in chunk) + b"\n")
    marker.write_text(json.dumps({**expected, "bytes": path.stat().st_size}))
    return True


def _sharegpt_row(rng: random.Random, i: int, texts: str = "one-line") -> dict:
    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))

    # drawn in the order the one-line rows always were (system, question, answer), so that
    # the default file is the one every earlier figure was measured on
    system, question, answer = text(6, 14), text(30, 60), text(40, 80)
    if texts == "multi-line":
        if i % 2:  # paragraphs and a list, as a model's answer is written
            answer = (f"{text(10, 20)}:\n\n- {text(4, 10)}\n- {text(4, 10)}\n- {text(4, 10)}\n\n"
                      f"{text(8, 16)}")
        if i % 10 == 3:
            question = f"{text(20, 40)} \u2014 \u201c{text(2, 4)}\u201d caf\u00e9 {text(5, 10)}"
    conv = [{"from": "system", "value": system}, {"from": "human", "value": question},
            {"from": "gpt", "value": answer}]
    if i % 5 == 0:
        conv += [{"from": "human", "value": text(4, 12)}, {"from": "gpt", "value": text(8, 16)}]
    return {"conversations": conv, "id": f"row-{i}"}


# --- what each child process runs -----------------------------------------------------------
# Each returns the number of rows it handled. ``cache`` is a fresh, empty directory.

def ours_validate(src: str, out: str, cache: str) -> int:
    from gekro_ft.data.validate import validate_file

    return _clean(validate_file(src, "sharegpt"))


def ours_convert(src: str, out: str, cache: str) -> int:
    from gekro_ft.data.convert import convert_file

    return _converted(convert_file(src, out, "openai", "sharegpt"))


def _converted(result) -> int:
    if result.refused:
        raise SystemExit(f"convert refused {result.refused} generated rows")
    return result.written


def _to_messages(conversations: list[dict]) -> list[dict]:
    return [{"role": ROLE[t["from"]], "content": t["value"]} for t in conversations]


def _one_row(row: dict) -> dict:
    return {"messages": _to_messages(row["conversations"])}


def _one_batch(batch: dict) -> dict:
    return {"messages": [_to_messages(c) for c in batch["conversations"]]}


def _datasets(src: str, out: str, cache: str, batched: bool) -> int:
    import datasets

    datasets.disable_progress_bars()
    ds = datasets.load_dataset("json", data_files=src, split="train", cache_dir=cache)
    if batched:
        ds = ds.map(_one_batch, batched=True, batch_size=1000, remove_columns=["conversations"])
    else:
        ds = ds.map(_one_row, remove_columns=["conversations"])
    ds.to_json(out)
    return ds.num_rows


# --- the validate levers, one at a time (--levers) ------------------------------------------

def lever_reference(src: str, out: str, cache: str) -> int:
    """Row by row: orjson dicts, the schema reader, every check, a dict of hashes."""
    from gekro_ft.data.validate import validate_file

    return _clean(validate_file(src, "sharegpt", fast=False))


def lever_typed(src: str, out: str, cache: str) -> int:
    """Typed decoding into msgspec structs, checks as before (check_conversation), line by
    line (readline), one core."""
    from gekro_ft.data import typed
    from gekro_ft.data.checks import check_conversation

    typed.check_plain = lambda row, raw: check_conversation(row.conversation())
    return _line_by_line(src)


def lever_typed_checks(src: str, out: str, cache: str) -> int:
    """Typed decoding plus checks once on the struct (shape looked up by roles), line by line."""
    return _line_by_line(src)


def lever_blocks(src: str, out: str, cache: str) -> int:
    """As above, the file read in blocks of lines instead of a line at a time, one core."""
    from gekro_ft.data import columnar, validate_chunks

    columnar.SCHEMAS = ()  # every row through the row path
    return _one_core(validate_chunks, src)


def lever_columnar(src: str, out: str, cache: str) -> int:
    """Rows checked per block (decoded a batch of lines at a time, texts checked with numpy), one core."""
    from gekro_ft.data import uniform, validate_chunks

    uniform.decode = lambda block, schema, **kw: None  # every block as if its rows' keys differed
    return _one_core(validate_chunks, src)


def lever_uniform(src: str, out: str, cache: str) -> int:
    """A block whose rows share their keys decoded in one call into a struct made for them
    (other fields kept raw, checked by orjson once a block), its texts checked as decoded, one core."""
    from gekro_ft.data import validate_chunks

    return _one_core(validate_chunks, src)


def lever_cores(src: str, out: str, cache: str) -> int:
    """validate on every usable core, busy or not (the library uses the free ones only)."""
    from gekro_ft.data import chunks

    chunks.free_cores = chunks.usable_cores
    return ours_validate(src, out, cache)


def lever_convert_cores(src: str, out: str, cache: str) -> int:
    """convert on every usable core, busy or not."""
    from gekro_ft.data import chunks

    chunks.free_cores = chunks.usable_cores
    return ours_convert(src, out, cache)


def lever_convert_reference(src: str, out: str, cache: str) -> int:
    """convert as before: row by row through the schema reader, one process."""
    from gekro_ft.data.convert import convert_file

    return _converted(convert_file(src, out, "openai", "sharegpt", fast=False))


def lever_convert_typed(src: str, out: str, cache: str) -> int:
    """convert with plain rows decoded into typed structs, row by row, one process."""
    from gekro_ft.data import chunks, convert_blocks

    chunks.spans_for = lambda path: None
    convert_blocks.SUPPORTED = ()
    return ours_convert(src, out, cache)


def lever_convert_blocks(src: str, out: str, cache: str) -> int:
    """convert with plain rows written per block of lines (pieces joined once), one process."""
    from gekro_ft.data import chunks, uniform

    chunks.spans_for = lambda path: None
    uniform.decode = lambda block, schema, **kw: None
    return ours_convert(src, out, cache)


def lever_convert_uniform(src: str, out: str, cache: str) -> int:
    """convert with a block whose rows share their keys decoded in one call and encoded by
    msgspec a line per row, one process."""
    from gekro_ft.data import chunks

    chunks.spans_for = lambda path: None
    return ours_convert(src, out, cache)


def _one_core(validate_chunks, src: str) -> int:
    return _no_findings(*validate_chunks.merge([validate_chunks.check_chunk(src, None, None, "sharegpt")]))


def _line_by_line(src: str) -> int:
    """The fast path as it was before block reading: one ``readline`` and one row at a time."""
    from gekro_ft.data import validate_chunks
    from gekro_ft.data.source import iter_jsonl

    out = validate_chunks.ChunkResult()
    for raw in iter_jsonl(src, None, None, parse=False):
        out.rows += 1
        key = validate_chunks.check_row(raw, "sharegpt", out)
        if key is not None:
            out.keys.append(key)
            out.where.append(raw.index)
            out.lines_of.append(raw.line)
    return _no_findings(*validate_chunks.merge([out]))


def _no_findings(rows: int, usable: int, findings: list) -> int:
    if usable != rows or findings:
        raise SystemExit(f"validate found problems in generated data: {findings[:3]}")
    return rows


def _clean(report) -> int:
    if report.errors or report.usable_rows != report.rows:
        raise SystemExit(f"validate found errors in generated data: {report.by_code()}")
    return report.rows


@dataclass(frozen=True)
class Job:
    key: str  # how the parent names it to the child
    label: str  # how the results name it
    imports: tuple[str, ...]  # imported before the clock starts
    work: Callable[[str, str, str], int]
    writes: bool = True  # whether it writes a converted file


JOBS = (
    Job("ours-validate", "ours: validate", ("gekro_ft.data.validate",), ours_validate,
        writes=False),
    Job("ours-convert", "ours: convert", ("gekro_ft.data.convert",), ours_convert),
    Job("datasets", "datasets: load + map + to_json", ("datasets",),
        lambda s, o, c: _datasets(s, o, c, batched=False)),
    Job("datasets-batched", "datasets: load + map(batched) + to_json", ("datasets",),
        lambda s, o, c: _datasets(s, o, c, batched=True)),
)
LEVERS = (
    Job("lever-reference", "validate: row by row (before)", ("gekro_ft.data.validate",),
        lever_reference, writes=False),
    Job("lever-typed", "validate: + typed decoding", ("gekro_ft.data.validate",), lever_typed,
        writes=False),
    Job("lever-typed-checks", "validate: + checks once on the struct", ("gekro_ft.data.validate",),
        lever_typed_checks, writes=False),
    Job("lever-blocks", "validate: + read in blocks of lines", ("gekro_ft.data.validate",),
        lever_blocks, writes=False),
    Job("lever-columnar", "validate: + clean rows checked per block", ("gekro_ft.data.validate",),
        lever_columnar, writes=False),
    Job("lever-uniform", "validate: + blocks of rows with the same keys", ("gekro_ft.data.validate",),
        lever_uniform, writes=False),
    Job("lever-cores", "validate: + every core (chunks)", ("gekro_ft.data.validate",), lever_cores,
        writes=False),
    Job("lever-convert-reference", "convert: row by row (before)", ("gekro_ft.data.convert",),
        lever_convert_reference),
    Job("lever-convert-typed", "convert: + typed decoding", ("gekro_ft.data.convert",),
        lever_convert_typed),
    Job("lever-convert-blocks", "convert: + plain rows written per block", ("gekro_ft.data.convert",),
        lever_convert_blocks),
    Job("lever-convert-uniform", "convert: + blocks of rows with the same keys", ("gekro_ft.data.convert",),
        lever_convert_uniform),
    Job("lever-convert-cores", "convert: + every core (chunks)", ("gekro_ft.data.convert",),
        lever_convert_cores),
)
OURS_BOTH = "ours: validate + convert"
BASELINES = ("datasets: load + map + to_json", "datasets: load + map(batched) + to_json")


def child_main(key: str, src: str, out: str, cache: str) -> None:
    """Inside a measured child: import, then time the work alone; the result goes to stdout."""
    job = next(j for j in JOBS + LEVERS if j.key == key)
    for module in job.imports:
        importlib.import_module(module)
    start = time.perf_counter()
    rows = job.work(src, out, cache)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": rows, "own_peak_rss_mib": own_peak_rss_mib()}))


def own_peak_rss_mib() -> float:
    """This process's peak RSS since its exec (``VmHWM``), whatever its parent's was."""
    with open("/proc/self/status") as f:
        kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    return int(kib) / 1024


# --- the parent (kept small: see the module docstring) -------------------------------------

def measure(job: Job, src: Path, out: Path, cache: Path) -> dict:
    """Run ``job`` in a fresh interpreter: its own timing plus its process time and peak RSS."""
    import resource

    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(cache / "hf-home")}
    spawner_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args = ["--child", job.key, "--input", str(src), "--output", str(out), "--cache", str(cache)]
    result, seconds, usage = run_python(__file__, args, env)
    return {**result, "process_seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "spawner_peak_rss_mib": spawner_peak}


def read_back(path: Path) -> tuple[int, str]:
    """Rows in a converted JSONL file and a digest of their ids and messages, key order aside."""
    import hashlib

    import orjson

    digest = hashlib.blake2b()
    rows = 0
    with open(path, "rb") as f:
        for line in f:
            row = orjson.loads(line)
            same = [row.get("id"), row["messages"]]
            digest.update(orjson.dumps(same, option=orjson.OPT_SORT_KEYS))
            rows += 1
    return rows, digest.hexdigest()


def check_outputs(expected_rows: int, results: dict, outputs: dict[str, Path]) -> None:
    """Fail loudly unless every job saw every row and every converted file says the same."""
    seen = {label: r["rows"] for label, r in results.items()}
    read = {label: read_back(path) for label, path in outputs.items()}
    written = {label: f"{rows} rows, digest {d[:12]}" for label, (rows, d) in read.items()}
    if {*seen.values(), *(rows for rows, _ in read.values())} != {expected_rows}:
        raise SystemExit(f"row counts differ (expected {expected_rows}): "
                         f"reported {seen}, written {written}")
    if len({d for _, d in read.values()}) != 1:
        raise SystemExit(f"converted files differ: {written}")


def add_ours_both(results: dict) -> None:
    """validate then convert, as a user would run them: times add up, memory is the larger."""
    v, c = results["ours: validate"], results["ours: convert"]
    results[OURS_BOTH] = {
        "seconds": v["seconds"] + c["seconds"], "rows": c["rows"],
        "process_seconds": v["process_seconds"] + c["process_seconds"],
        "cpu_seconds": v["cpu_seconds"] + c["cpu_seconds"],
        **{k: max(v[k], c[k])
           for k in ("peak_rss_mib", "own_peak_rss_mib", "spawner_peak_rss_mib")}}


def comparisons(results: dict) -> list[dict]:
    out = []
    for base in BASELINES:
        for ours in ("ours: convert", OURS_BOTH):
            o, b = results[ours], results[base]
            time_ratio = o["seconds"] / b["seconds"]
            memory_ratio = o["peak_rss_mib"] / b["peak_rss_mib"]
            out.append({"ours": ours, "baseline": base, "time_ratio": time_ratio,
                        "memory_ratio": memory_ratio, "time_target_met": time_ratio <= TIME_TARGET,
                        "memory_target_met": memory_ratio <= MEMORY_TARGET})
    return out


def machine() -> dict:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def installed(dist: str) -> str | None:
        try:
            return version(dist)
        except PackageNotFoundError:
            return None

    return {"cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "platform": platform.platform(), "python": platform.python_version(),
            **{dist: installed(dist) for dist in ("gekro-ft", "datasets", "pyarrow", "orjson")}}


def print_report(title: str, info: dict, results: dict, compared: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a log file: no reason to wrap the table at 80 columns
        console.width = 120
    versions = ", ".join(f"{d} {info[d]}" for d in ("python", "gekro-ft", "datasets", "pyarrow",
                                                      "orjson"))
    console.print(f"machine: {info['cpus']} CPUs ({info['cpus_usable']} usable), "
                  f"{info['platform']}, {versions}", soft_wrap=True)
    table = Table("run", "wall s", "rows/s", "peak RSS MiB", "process s", "CPU s", title=title)
    for label in ("ours: validate", "ours: convert", OURS_BOTH, *BASELINES):
        r = results[label]
        table.add_row(label, f"{r['seconds']:.1f}", f"{r['rows'] / r['seconds']:,.0f}",
                      f"{r['peak_rss_mib']:,.0f}", f"{r['process_seconds']:.1f}",
                      f"{r['cpu_seconds']:.1f}")
    console.print(table)
    console.print("wall s: the work alone, timed in the child. process s: the whole child "
                  "process, interpreter start and imports included; CPU s: its user + system "
                  "time (above process s: more than one core). peak RSS: the child's (wait4), "
                  "imports included.")
    for label, r in results.items():
        if abs(r["peak_rss_mib"] - r["own_peak_rss_mib"]) > 1:
            console.print(f"[yellow]warning[/]: {label}: wait4 says {r['peak_rss_mib']:.0f} MiB, "
                          f"the child's VmHWM {r['own_peak_rss_mib']:.0f} MiB; the parent had "
                          f"reached {r['spawner_peak_rss_mib']:.0f} MiB when it spawned it")
    for c in compared:
        verdict = ", ".join(f"{what} target {'met' if c[f'{what}_target_met'] else 'MISSED'}"
                            for what in ("time", "memory"))
        console.print(f"{c['ours']} / {c['baseline']}: time x{c['time_ratio']:.3f}, "
                      f"peak memory x{c['memory_ratio']:.3f} ({verdict})", soft_wrap=True)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows to generate (default 1,000,000)")
    parser.add_argument("--workdir", type=Path, help="where the input, outputs and report go "
                                                     "(default: a new temporary directory)")
    parser.add_argument("--levers", action="store_true",
                        help="measure validate's speed levers one at a time instead, side by side")
    parser.add_argument("--texts", choices=TEXTS, default="one-line",
                        help="one-line answers (the default, as the figures in benchmarks/README.md "
                             "were first measured) or multi-line ones with non-ASCII questions")
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated input; the next run with this --workdir reuses it")
    # how the parent runs work in other processes
    for hidden in ("--child", "--input", "--output", "--cache"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args.child, args.input, args.output, args.cache)
    if args.generate:
        return print(json.dumps({"wrote": generate(Path(args.input), args.rows, args.texts)}))

    if args.levers:
        return levers_main(args)
    src = input_path(args)
    workdir = src.parent
    results, outputs = {}, {}
    scratch = [(workdir / f"out-{job.key}.jsonl", workdir / f"cache-{job.key}") for job in JOBS]
    try:
        progress(f"writing {args.rows:,} ShareGPT rows to {src} ...")
        wrote = write_input(src, args)
        size_mb = src.stat().st_size / 1e6
        progress(f"input: {size_mb:,.0f} MB, {'written' if wrote else 'reused'}")
        for job, (target, cache) in zip(JOBS, scratch):
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir()
            progress(f"measuring {job.label} ...")
            results[job.label] = r = measure(job, src, target, cache)
            shutil.rmtree(cache)
            if job.writes:
                outputs[job.label] = target
            progress(f"  {r['seconds']:.1f} s, {r['peak_rss_mib']:,.0f} MiB peak, "
                     f"{r['rows']:,} rows")
        progress("reading the converted files back ...")
        check_outputs(args.rows, results, outputs)
    finally:
        for target, cache in scratch:
            target.unlink(missing_ok=True)
            shutil.rmtree(cache, ignore_errors=True)
        if not args.keep:
            src.unlink(missing_ok=True)
            src.with_suffix(".rows").unlink(missing_ok=True)

    add_ours_both(results)
    compared = comparisons(results)
    info = machine()
    print_report(f"{args.rows:,} ShareGPT rows ({args.texts} answers), {size_mb:,.0f} MB", info,
                 results, compared)
    report = {"schema_version": 1, "rows": args.rows, "texts": args.texts, "input_mb": size_mb,
              "machine": info, "results": results, "comparisons": compared,
              "targets": {"time_ratio": TIME_TARGET, "memory_ratio": MEMORY_TARGET},
              "command": " ".join(["python", *sys.argv])}
    path = workdir / "data_throughput.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {path}")


def input_path(args) -> Path:
    """The input file's path in the run's work directory (made if need be). The one-line file
    keeps the name every earlier run gave it, so a kept one is reused."""
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gekro-bench-data-"))
    workdir.mkdir(parents=True, exist_ok=True)
    kind = "" if args.texts == "one-line" else f"{args.texts}-"
    return workdir / f"sharegpt-{kind}{args.rows}.jsonl"


def write_input(src: Path, args) -> bool:
    """Write the input in a child process (unless a complete one is there); whether it wrote."""
    command = ["--generate", "--rows", str(args.rows), "--texts", args.texts, "--input", str(src)]
    return run_python(__file__, command)[0]["wrote"]


def levers_main(args) -> None:
    """Each lever of validate's fast path added in turn, each job in its own process, in one run."""
    src = input_path(args)
    workdir = src.parent
    results = {}
    try:
        write_input(src, args)
        for job in LEVERS:
            cache = workdir / f"cache-{job.key}"
            cache.mkdir(exist_ok=True)
            progress(f"measuring {job.label} ...")
            results[job.label] = r = measure(job, src, workdir / "lever-out.jsonl", cache)
            shutil.rmtree(cache)
            (workdir / "lever-out.jsonl").unlink(missing_ok=True)
            progress(f"  {r['seconds']:.1f} s, {r['peak_rss_mib']:,.0f} MiB peak")
    finally:
        if not args.keep:
            src.unlink(missing_ok=True)
            src.with_suffix(".rows").unlink(missing_ok=True)
    before = {"validate": results[LEVERS[0].label]["seconds"],
              "convert": results["convert: row by row (before)"]["seconds"]}
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    info = machine()
    console.print(f"machine: {info['cpus']} CPUs ({info['cpus_usable']} usable), load average "
                  f"{os.getloadavg()[0]:.1f} at the end", soft_wrap=True)
    table = Table("job", "wall s", "rows/s", "x faster than before", "peak RSS MiB", "CPU s",
                  title=f"{args.rows:,} ShareGPT rows: the levers one at a time")
    for label, r in results.items():
        table.add_row(label, f"{r['seconds']:.1f}", f"{r['rows'] / r['seconds']:,.0f}",
                      f"{before[label.split(':')[0]] / r['seconds']:.2f}", f"{r['peak_rss_mib']:,.0f}",
                      f"{r['cpu_seconds']:.1f}")
    console.print(table)
    path = workdir / "data_levers.json"
    path.write_text(json.dumps({"schema_version": 1, "rows": args.rows, "machine": info,
                                "results": results, "command": " ".join(["python", *sys.argv])},
                               indent=2) + "\n")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
