"""The bench's outputs: bench.json (the contract the cost report reads), requests.jsonl,
and bench.md/bench.html with a plot of throughput and latency against load.

bench.json keys, version 1 (keys may be added, never renamed or removed): schema_version,
command, settings, server_models, engine, hardware, levels[] with concurrency, rate,
requests, completed, errors, error_rate, duration_s, request_throughput,
output_tokens_per_s, total_tokens_per_s, input_tokens, output_tokens, goodput_rps and
ttft_ms/tpot_ms/itl_ms/e2el_ms each as {mean, p50, p90, p95, p99, max}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from gekro_ft import __version__
from gekro_ft.atomic import atomic_output
from gekro_ft.bench.hardware import describe_host
from gekro_ft.reports import md_table, pyplot, save_figure, write_json, write_markdown_and_html

SCHEMA_VERSION = 1
LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")


def build_doc(run: Any) -> dict[str, Any]:
    s = run.settings
    sources = {lv["tokens_from"] for lv in run.results if lv.get("tokens_from")}
    return {
        "schema_version": SCHEMA_VERSION,
        "command": s.command(),
        "settings": s.to_json(),
        "server_models": run.server.models,
        "engine": run.server.engine,
        "engine_from": run.server.engine_from,
        "server_models_response": run.server.response,
        "hardware": describe_host(s.gpu),
        "gekro_ft_version": __version__,
        "started_at": run.started_at,
        "wall_s": round(run.wall_s, 3),
        "prompts": {"source": run.prompts.description, "skipped_rows": run.prompts.skipped},
        "warmup": run.warmup,
        "token_counts_from": sources.pop() if len(sources) == 1 else ("mixed" if sources else None),
        "levels": run.results,
    }


def write_outputs(doc: dict[str, Any], run: Any, out_dir: str | Path) -> dict[str, Path]:
    """Every file whole or not at all; bench.json last, so its presence means a finished run."""
    out_dir = Path(out_dir)
    paths = {"requests": out_dir / "requests.jsonl", "plot": out_dir / "bench.png", "json": out_dir / "bench.json"}
    with atomic_output(paths["requests"]) as f:
        for i, level in enumerate(run.levels):
            for rec in level.records:
                f.write(orjson.dumps(rec.to_json(i, level.start)) + b"\n")
    save_figure(_figure(doc), paths["plot"])
    paths["md"], paths["html"] = write_markdown_and_html(out_dir, "bench", markdown(doc, paths["plot"].name),
                                                         f"gekro-ft bench: {doc['settings']['model']}")
    write_json(paths["json"], doc)
    return paths


def _x(doc: dict[str, Any]) -> tuple[str, list[float]]:
    if doc["settings"]["mode"] == "rate":
        return "arrival rate (requests/s)", [lv["rate"] for lv in doc["levels"]]
    return "concurrency", [lv["concurrency"] for lv in doc["levels"]]


def _figure(doc: dict[str, Any]) -> Any:
    plt = pyplot()
    xlabel, xs = _x(doc)
    levels = doc["levels"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(xs, [lv["request_throughput"] or 0 for lv in levels], "o-", color="tab:blue", label="requests/s")
    left.set_xlabel(xlabel)
    left.set_ylabel("requests/s", color="tab:blue")
    tok = left.twinx()
    tok.plot(xs, [lv["output_tokens_per_s"] or 0 for lv in levels], "s--", color="tab:orange",
             label="output tokens/s")
    tok.set_ylabel("output tokens/s", color="tab:orange")
    left.set_title("throughput")
    for name, color in zip(("ttft_ms", "tpot_ms", "e2el_ms"), ("tab:green", "tab:red", "tab:purple")):
        for p, style in (("p50", "o-"), ("p99", "x:")):
            ys = [lv[name][p] for lv in levels]
            if any(y is not None for y in ys):
                right.plot(xs, [float("nan") if y is None else y for y in ys], style, color=color,
                           label=f"{name.removesuffix('_ms').upper()} {p}")
    right.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 20, not 2×10¹
    right.yaxis.set_major_formatter(plain)
    right.yaxis.set_minor_locator(LogLocator(base=10, subs=(2, 5)))
    right.yaxis.set_minor_formatter(plain)
    right.set_xlabel(xlabel)
    right.set_ylabel("ms (log scale)")
    right.set_title("latency")
    right.legend(fontsize="small")
    if len(xs) > 1 and doc["settings"]["mode"] == "concurrency" and max(xs) / max(min(xs), 1) >= 8:
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            ax.xaxis.set_minor_locator(NullLocator())
    fig.tight_layout()
    return fig


def _pair(stats: dict[str, Any]) -> str:
    if stats["p50"] is None:
        return "-"
    return f"{stats['p50']:,.1f} / {stats['p99']:,.1f}"


def markdown(doc: dict[str, Any], plot_name: str | None = None) -> str:
    s = doc["settings"]
    hw = doc["hardware"]
    xname = "rate (req/s)" if s["mode"] == "rate" else "concurrency"
    rows = [[lv["rate"] if s["mode"] == "rate" else lv["concurrency"], lv["requests"], lv["completed"],
             lv["errors"], lv["request_throughput"], lv["output_tokens_per_s"],
             *(_pair(lv[k]) for k in LATENCIES), lv["goodput_rps"]] for lv in doc["levels"]]
    table = md_table([xname, "requests", "completed", "errors", "req/s", "output tok/s",
                      "TTFT p50/p99 ms", "TPOT p50/p99 ms", "ITL p50/p99 ms", "E2EL p50/p99 ms", "goodput req/s"],
                     rows)
    kinds = {k: v for lv in doc["levels"] for k, v in lv["error_kinds"].items()}
    lines = [
        f"# Bench: `{s['model']}` at {s['url']}", "",
        "```", " ".join(_quote(a) for a in doc["command"]), "```", "",
        f"- engine: **{doc['engine']}** (from {doc['engine_from']}); server models: "
        + (", ".join(f"`{m}`" for m in doc["server_models"]) if doc["server_models"] else "not listed"),
        f"- mode: {s['mode']}" + (f", {s['arrival']} arrivals" if s["mode"] == "rate" else "")
        + f"; {s['endpoint']} endpoint, streamed; max_tokens {s['max_tokens']}; "
        + (f"{s['requests_per_level']} requests a level" if s["requests_per_level"]
           else f"{s['duration_s_per_level']:g} s a level") + f"; {s['warmup']} warmup requests",
        f"- prompts: {doc['prompts']['source']}; token counts from {doc['token_counts_from']}",
        f"- hardware, {hw['described']}: {hw['cpu']}, {hw['cpu_count']} CPUs, {hw['memory_gib']} GiB; "
        f"GPU: {hw['gpu'] or 'none'}",
        f"- started {doc['started_at']}, gekro-ft {doc['gekro_ft_version']}", "",
        "## Results", "", table, "",
    ]
    if kinds:
        lines += ["Errors by kind: " + ", ".join(f"{k} × {v}" for k, v in sorted(kinds.items())), ""]
    if s["goodput_targets"]:
        lines += ["Goodput targets: " + ", ".join(f"{k} ≤ {v:g}" for k, v in s["goodput_targets"].items()), ""]
    if plot_name:
        lines += [f"![throughput and latency against {xname}]({plot_name})", ""]
    lines += [
        "## Definitions", "",
        "TTFT: request sent → first content chunk. E2EL: request sent → last content chunk. "
        "TPOT: (E2EL − TTFT) ÷ (output tokens − 1), per request. ITL: gaps between consecutive "
        "content chunks, pooled. Percentiles over completed requests; errors are counted in "
        "`errors` and `error_rate`, not in latencies. Throughput: completed requests (and their "
        "tokens) ÷ the level's duration, first request sent → last response ended.", "",
    ]
    return "\n".join(lines)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
