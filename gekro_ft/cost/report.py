"""The cost report: measured throughput and latency (bench.json) turned into $ per 1M output
tokens, the utilization curve and the break-even against APIs — JSON, Markdown, HTML, plots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from gekro_ft import __version__
from gekro_ft.cost.model import CostFigures, compute
from gekro_ft.cost.prices import load_prices
from gekro_ft.errors import BenchError, EvalError
from gekro_ft.reports import md_table, pyplot, save_figure, write_json, write_markdown_and_html

SCHEMA_VERSION = 1
LEVEL_KEYS = ("concurrency", "requests", "completed", "errors", "error_rate", "output_tokens_per_s",
              "request_throughput", "ttft_ms", "tpot_ms", "e2el_ms")


def read_bench(path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as e:
        raise BenchError(f"{path}: cannot read: {e.strerror or e}") from None
    except orjson.JSONDecodeError as e:
        raise BenchError(f"{path}: not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != 1:
        raise BenchError(f"{path}: schema_version {doc.get('schema_version') if isinstance(doc, dict) else None!r} "
                         "is not a bench.json this version reads (1)")
    levels = doc.get("levels")
    if not isinstance(levels, list) or not levels:
        raise BenchError(f"{path}: field levels: missing or empty")
    for i, level in enumerate(levels):
        missing = [k for k in LEVEL_KEYS if k not in level]
        if missing:
            raise BenchError(f"{path}: field levels[{i}].{missing[0]}: missing")
    return doc


def fastest_clean_level(levels: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The level a served throughput is quoted at (here and in the eval's pricing): the most
    output tokens/s among the levels that finished without errors; None when none did."""
    clean = [lv for lv in levels if lv["error_rate"] == 0 and lv["output_tokens_per_s"] > 0]
    return max(clean, key=lambda lv: lv["output_tokens_per_s"]) if clean else None


def pick_level(bench: dict[str, Any], path: Path, concurrency: int | None) -> dict[str, Any]:
    levels = bench["levels"]
    if concurrency is not None:
        chosen = [lv for lv in levels if lv["concurrency"] == concurrency]
        if not chosen:
            raise BenchError(f"{path}: no level with concurrency {concurrency} "
                             f"(has {', '.join(str(lv['concurrency']) for lv in levels)})")
        return chosen[0]
    fastest = fastest_clean_level(levels)
    if fastest is None:
        raise BenchError(f"{path}: every level had errors; pick one with --level CONCURRENCY")
    return fastest


def success_rates(eval_report: Path | None) -> tuple[float | None, float | None, str | None]:
    """(candidate success rate, baseline success rate, the baseline's model name) from an eval
    report.json; the baseline's rate only prices "useful output" for the API it measured."""
    if eval_report is None:
        return None, None, None
    try:
        sides = orjson.loads(Path(eval_report).read_bytes())["sides"]
        base = sides.get("baseline") or {}
        return (sides["candidate"]["success_rate"], base.get("success_rate"),
                (base.get("provider") or {}).get("model"))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise EvalError(f"{eval_report}: not an eval report.json with sides.candidate.success_rate ({e})") from None


def cost_figures(gpu_hourly: float, tokens_per_s: float, *, compare: list[str], prices: Path | None = None,
                 overhead: float = 0.0, utilizations: tuple[float, ...] = (1.0, 0.6, 0.2, 0.1),
                 input_per_output: float = 3.0, eval_report: Path | None = None) -> tuple[CostFigures, dict]:
    """The figures, and the price entries used (with their dates and sources)."""
    table = load_prices(prices)
    entries = {name: table.api_price(name) for name in compare}
    cand, base, base_model = success_rates(eval_report)
    figures = compute(gpu_hourly, tokens_per_s, overhead=overhead, utilizations=utilizations,
                      apis={n: (p.input_per_m, p.output_per_m) for n, p in entries.items()},
                      input_per_output=input_per_output, success_rate=cand, baseline_success_rate=base,
                      baseline_api=base_model)
    return figures, {n: p.model_dump(mode="json") for n, p in entries.items()}


def write_cost_report(bench_path: Path, out_dir: Path, *, gpu_hourly: float, gpu_name: str | None,
                      compare: list[str], prices: Path | None = None, overhead: float = 0.0,
                      utilizations: tuple[float, ...] = (1.0, 0.6, 0.2, 0.1), input_per_output: float = 3.0,
                      level: int | None = None, eval_report: Path | None = None,
                      gpu_price_note: str = "given") -> dict[str, Path]:
    bench = read_bench(bench_path)
    chosen = pick_level(bench, bench_path, level)
    figures, price_entries = cost_figures(gpu_hourly, chosen["output_tokens_per_s"], compare=compare, prices=prices,
                                          overhead=overhead, utilizations=utilizations,
                                          input_per_output=input_per_output, eval_report=eval_report)
    doc = {"schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "gekro_ft_version": __version__,
           "inputs": {"bench": str(bench_path), "bench_command": bench.get("command"), "engine": bench.get("engine"),
                      "model": (bench.get("settings") or {}).get("model"), "hardware": bench.get("hardware"),
                      "level_concurrency": chosen["concurrency"], "gpu": gpu_name, "gpu_hourly": gpu_hourly,
                      "gpu_price": gpu_price_note, "overhead": overhead, "utilizations": list(utilizations),
                      "input_tokens_per_output_token": input_per_output, "prices": price_entries,
                      "eval_report": str(eval_report) if eval_report else None},
           "levels": [{k: lv[k] for k in LEVEL_KEYS} for lv in bench["levels"]],
           **figures.to_dict()}
    out_dir = Path(out_dir)
    paths = {"json": write_json(out_dir / "cost.json", doc)}
    paths["throughput_png"] = _plot_levels(doc, out_dir / "throughput_latency.png")
    paths["utilization_png"] = _plot_utilization(doc, out_dir / "cost_vs_utilization.png")
    paths["monthly_png"] = _plot_monthly(doc, out_dir / "monthly_break_even.png")
    paths["md"], paths["html"] = write_markdown_and_html(out_dir, "cost", _markdown(doc), "Cost per output")
    return paths


def _plot_levels(doc: dict, path: Path) -> Path:
    plt = pyplot()
    levels = [lv for lv in doc["levels"] if lv["concurrency"] is not None]
    x = [lv["concurrency"] for lv in levels]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(x, [lv["output_tokens_per_s"] for lv in levels], marker="o")
    a.set_xlabel("concurrency")
    a.set_ylabel("output tokens/s")
    a.set_title("throughput")
    for key, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        b.plot(x, [lv["e2el_ms"][key] / 1000 for lv in levels], style, marker="o", label=f"E2EL {key}")
        b.plot(x, [lv["ttft_ms"][key] / 1000 for lv in levels], style, marker="x", label=f"TTFT {key}")
    b.set_xlabel("concurrency")
    b.set_ylabel("seconds")
    b.set_title("latency percentiles")
    b.legend(fontsize=7)
    return save_figure(fig, path)


def _plot_utilization(doc: dict, path: Path) -> Path:
    plt = pyplot()
    us = [u / 100 for u in range(2, 101)]
    full = doc["full_load_usd_per_1m_output_tokens"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([u * 100 for u in us], [full / u for u in us], label="self-hosted", color="black")
    for api in doc["apis"]:
        line = ax.axhline(api["blended_per_m"], linestyle="--", label=f"{api['name']} (blended)")
        if api["break_even_utilization"] <= 1:
            ax.axvline(api["break_even_utilization"] * 100, color=line.get_color(), linestyle=":")
            ax.annotate(f"{api['break_even_utilization']:.0%}", (api["break_even_utilization"] * 100,
                                                                 api["blended_per_m"]), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("utilization (%)")
    ax.set_ylabel("$ per 1M output tokens")
    ax.set_title("cost per output vs utilization (dotted: break-even)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _plot_monthly(doc: dict, path: Path) -> Path:
    plt = pyplot()
    cap = doc["capacity_tokens_per_month"]
    xs = [cap * k / 50 for k in range(0, 51)]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([x / 1e6 for x in xs], [doc["monthly_gpu_usd"]] * len(xs), color="black", label="GPU, up 24/7")
    for api in doc["apis"]:
        line, = ax.plot([x / 1e6 for x in xs], [x / 1e6 * api["blended_per_m"] for x in xs], label=api["name"])
        if api["reachable"]:
            ax.axvline(api["break_even_tokens_per_month"] / 1e6, color=line.get_color(), linestyle=":")
    ax.set_xlabel("output tokens per month (millions), up to the GPU's capacity")
    ax.set_ylabel("$ per month")
    ax.set_title("monthly cost: break-even volume (dotted)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _usd(v: float | None) -> str:
    return "—" if v is None else f"${v:,.4f}" if v < 1 else f"${v:,.2f}"


def _markdown(doc: dict) -> str:
    i = doc["inputs"]
    lines = ["# Cost per output", "",
             f"Measured on **{i['engine']}** serving `{i['model']}` (bench `{i['bench']}`, level at concurrency "
             f"{i['level_concurrency']}: **{doc['tokens_per_s']:,.1f} output tokens/s**), priced at "
             f"**${doc['gpu_hourly']:g}/h**" + (f" ({i['gpu']}, {i['gpu_price']})" if i["gpu"] else f" ({i['gpu_price']})")
             + f" with overhead {doc['overhead']:.0%}.", "",
             "## Throughput and latency by concurrency", "",
             md_table(["concurrency", "requests", "errors", "output tok/s", "req/s", "TTFT p50 ms", "TTFT p95 ms",
                       "TPOT p50 ms", "E2EL p50 ms", "E2EL p95 ms", "E2EL p99 ms"],
                      [[lv["concurrency"], lv["requests"], lv["errors"], lv["output_tokens_per_s"],
                        lv["request_throughput"], lv["ttft_ms"]["p50"], lv["ttft_ms"]["p95"], lv["tpot_ms"]["p50"],
                        lv["e2el_ms"]["p50"], lv["e2el_ms"]["p95"], lv["e2el_ms"]["p99"]] for lv in doc["levels"]]),
             "", "![throughput and latency](throughput_latency.png)", "",
             "## $ per 1M output tokens", "",
             md_table(["utilization", "$ per 1M output tokens"],
                      [[f"{float(u):.0%}", _usd(v)] for u, v in doc["by_utilization"].items()]), ""]
    if doc["usd_per_1m_useful_output_tokens"] is not None:
        lines += [f"Per 1M **useful** output tokens at full load (÷ the eval's success rate "
                  f"{doc['success_rate']:.2f}): {_usd(doc['usd_per_1m_useful_output_tokens'])}.", ""]
    lines += ["![cost vs utilization](cost_vs_utilization.png)", ""]
    if doc["apis"]:
        lines += ["## Against APIs", "",
                  md_table(["API", "output $/1M", "blended $/1M", "break-even utilization", "break-even output tokens/month",
                            "GPU can reach it", "useful-output $/1M"],
                           [[a["name"], _usd(a["output_per_m"]), _usd(a["blended_per_m"]),
                             f"{a['break_even_utilization']:.1%}" + (" (never)" if a["break_even_utilization"] > 1 else ""),
                             f"{a['break_even_tokens_per_month'] / 1e6:,.1f}M", "yes" if a["reachable"] else "no",
                             _usd(a["usd_per_useful_output_1m"])] for a in doc["apis"]]), "",
                  "![monthly break-even](monthly_break_even.png)", ""]
    lines += ["## Inputs and formulas", "",
              f"- GPU: ${doc['gpu_hourly']:g}/h; overhead fraction {doc['overhead']:g}; kept up 730 h a month: "
              f"{_usd(doc['monthly_gpu_usd'])}/month; capacity {doc['capacity_tokens_per_month'] / 1e6:,.1f}M output "
              "tokens/month at the measured rate.",
              "- $ per 1M output tokens = $/h × (1 + overhead) ÷ (output tokens/s × 3600) × 10⁶, then ÷ utilization.",
              f"- Blended API price per 1M output tokens = input price × {doc['input_per_output']:g} (input tokens per "
              "output token) + output price.",
              "- Break-even utilization = full-load $ per 1M ÷ API $ per 1M; break-even volume = monthly GPU cost ÷ "
              "API $ per output token.", ""]
    for name, p in i["prices"].items():
        lines.append(f"- {name}: ${p['input_per_m']:g} in / ${p['output_per_m']:g} out per 1M tokens, as of "
                     f"{p['as_of']}, {p['source']}")
    lines += ["", f"Bench command: `{' '.join(map(str, i['bench_command'] or []))}`", "",
              f"Made by gekro-ft {doc['gekro_ft_version']} at {doc['created']}.", ""]
    return "\n".join(lines)
