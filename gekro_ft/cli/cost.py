"""``gekro-ft cost``: $ per 1M output tokens (compute only and with overhead), the fleet a week of
traffic needs, the APIs' real bills, ownership and break-even; the cost report; serving memory."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out, print_json


def _floats(ctx, param, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        got = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated numbers, e.g. 1,0.6,0.2,0.1") from None
    if any(not 0 < u <= 1 for u in got):
        raise click.BadParameter("utilizations are fractions in (0, 1]")
    return got


def _ratio(ctx, param, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        a, b = (float(x) for x in value.split(":"))
        return a / b
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{value!r}: give INPUT:OUTPUT, e.g. 3:1") from None


def resolve_hourly(gpu_hourly: float | None, gpu: str | None, prices: Path | None) -> tuple[float, str]:
    """The $/h to use and where it came from (given, or the low end of the table's range)."""
    if gpu_hourly is not None:
        return gpu_hourly, "given"
    if gpu is None:
        raise click.UsageError("give --gpu-hourly USD or --gpu NAME (from the price table)")
    from gekro_ft.cost.prices import gpu_hourly, load_prices

    hourly, note = gpu_hourly(load_prices(prices), gpu)
    err.print(f"{gpu}: {note}")
    return hourly, note


FRACTION = click.FloatRange(0, 1)
POSITIVE = click.FloatRange(min=0, min_open=True)
shared = [
    click.option("--gpu-hourly", type=POSITIVE, help="GPU $ per hour (on-demand, or the reserved rate)."),
    click.option("--gpu", help="A GPU from the price table instead of --gpu-hourly (e.g. h100, rtx-4090)."),
    click.option("--overhead", type=click.FloatRange(0, 5), default=0.0, show_default=True,
                 help="Fraction added to the running cost for safety margin and eval runs (cited: 0.2-0.4); "
                      "people go in --labour."),
    click.option("--utilization", "utilizations", callback=_floats, default="1,0.6,0.2,0.1", show_default=True,
                 help="Utilizations to price, comma-separated."),
    click.option("--compare", multiple=True, help="An API from the price table (repeatable), e.g. gpt-4o-mini."),
    click.option("--input-output-ratio", "input_per_output", callback=_ratio,
                 help="Input:output tokens per request for the APIs' bill [default: measured by the eval's "
                      "baseline or the bench, else 3:1]."),
    click.option("--cached-share", type=FRACTION, default=0.0, show_default=True,
                 help="Share of API input tokens read from the prompt cache."),
    click.option("--batch-share", type=FRACTION, default=0.0, show_default=True,
                 help="Share of API requests that can go through the batch tier."),
    click.option("--retry-rate", type=click.FloatRange(0, 5), default=0.0, show_default=True,
                 help="API requests sent again, as a share of all requests (billed again)."),
    click.option("--traffic", help="A week of traffic, CSV day,hour,requests (or output_tokens), or a shipped "
                                   "week by name: business-hours."),
    click.option("--requests-per-month", type=POSITIVE, help="Or a stated shape: requests a month..."),
    click.option("--peak-to-trough", type=click.FloatRange(1), help="...the busy hours' rate ÷ the quiet hours'..."),
    click.option("--busy-hours", type=click.FloatRange(0, 24, min_open=True),
                 help="...and busy hours a weekday (weekends quiet)."),
    click.option("--output-tokens-per-request", type=POSITIVE,
                 help="Average output tokens per request [default: measured by the bench]."),
    click.option("--labour", "labour_fraction", type=click.FloatRange(0, 10), default=0.0, show_default=True,
                 help="Ops labour: fraction of an engineer-year (cited: 0.15-0.25)."),
    click.option("--salary", type=click.FloatRange(0), default=150_000.0, show_default=True,
                 help="Loaded salary, $ a year."),
    click.option("--setup-days", type=click.FloatRange(0), default=0.0, show_default=True,
                 help="One-off engineer days to set the serving up."),
    click.option("--commitment-months", type=click.IntRange(0), default=0, show_default=True,
                 help="A reserved rate's minimum term (with --gpu-hourly at the reserved price)."),
    click.option("--buy-price", type=POSITIVE, help="Buy instead of (and compared with) renting: $ per machine."),
    click.option("--lifetime-months", type=click.IntRange(1), default=36, show_default=True,
                 help="A bought machine's write-off period."),
    click.option("--power-watts", type=click.FloatRange(0), default=0.0, show_default=True,
                 help="A bought machine's draw under load."),
    click.option("--kwh-price", type=click.FloatRange(0), default=0.0, show_default=True, help="$ per kWh."),
    click.option("--pue", type=click.FloatRange(1), default=1.0, show_default=True,
                 help="Power usage effectiveness: facility power ÷ IT power (cooling)."),
    click.option("--horizon-months", type=click.IntRange(1), default=36, show_default=True,
                 help="Months the cumulative plot spans (and renting's set-up is spread over)."),
    click.option("--eval", "eval_report", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                 help="An eval report.json: cost per useful output, the baseline's input:output tokens."),
    click.option("--prices", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                 help="Your own price table (replaces shipped entries of the same name)."),
]


def with_shared(f):
    for option in reversed(shared):
        f = option(f)
    return f


def _options(hourly: float, note: str, gpu: str | None, kw: dict, **extra):
    from gekro_ft.cost.ownership import Labour
    from gekro_ft.cost.plan import Buy
    from gekro_ft.cost.report import CostOptions

    buy = (Buy(kw["buy_price"], kw["lifetime_months"], kw["power_watts"], kw["kwh_price"], kw["pue"])
           if kw["buy_price"] else None)
    names = ("overhead", "utilizations", "prices", "eval_report", "input_per_output", "cached_share", "batch_share",
             "retry_rate", "traffic", "requests_per_month", "peak_to_trough", "busy_hours",
             "output_tokens_per_request", "commitment_months", "horizon_months")
    return CostOptions(gpu_hourly=hourly, gpu_name=gpu, gpu_price_note=note, compare=list(kw["compare"]),
                       labour=Labour(kw["labour_fraction"], kw["salary"], kw["setup_days"]), buy=buy,
                       **{k: kw[k] for k in names}, **extra)


@click.group(invoke_without_command=True)
@with_shared
@click.option("--tokens-per-s", type=POSITIVE, help="Output tokens/s at full load.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cost(ctx, gpu_hourly: float | None, gpu: str | None, tokens_per_s: float | None, as_json: bool, **kw) -> None:
    """$ per 1M output tokens, compute only and with overhead; with traffic, the fleet, its
    utilization, each API's real bill and the break-even month.

    \b
    Examples:
      gekro-ft cost --gpu h100 --tokens-per-s 2500 --compare gpt-4o-mini --compare claude-3.5-haiku
      gekro-ft cost --gpu-hourly 0.69 --tokens-per-s 400 --requests-per-month 300000 --peak-to-trough 15 \\
        --busy-hours 9 --output-tokens-per-request 150 --labour 0.2 --compare gpt-4.1-mini
      gekro-ft cost report --bench work/bench/bench.json --gpu rtx-4090 --slo ttft_p95_ms=2000 --out work/cost
    """
    if ctx.invoked_subcommand is not None:
        return
    if tokens_per_s is None:
        raise click.UsageError("give --tokens-per-s (or use `gekro-ft cost report --bench bench.json`)")
    hourly, note = resolve_hourly(gpu_hourly, gpu, kw["prices"])
    from gekro_ft.cost.report import cost_document

    doc = cost_document(_options(hourly, note, gpu, kw), tokens_per_s=tokens_per_s)
    if as_json:
        doc.pop("curve")
        print_json(doc)
        return
    _print_summary(doc, hourly, tokens_per_s)


def _print_summary(doc: dict, hourly: float, tokens_per_s: float) -> None:
    from rich.table import Table

    t = Table("utilization", "compute only $/1M", "with overhead $/1M",
              title=f"${hourly:g}/h at {tokens_per_s:g} output tokens/s, overhead {doc['overhead']:.0%}")
    for u, v in doc["by_utilization"].items():
        t.add_row(f"{float(u):.0%}", f"${doc['by_utilization_compute_only'][u]:,.4f}", f"${v:,.4f}")
    out.print(t)
    out.print(f"One replica up 24/7: ${doc['monthly_gpu_usd']:,.2f}/month; capacity "
              f"{doc['capacity_tokens_per_month'] / 1e6:,.1f}M output tokens/month")
    if doc["fleet"]:
        f, e = doc["fleet"], doc["effective"]
        out.print(f"Traffic {doc['traffic']['monthly_output_tokens'] / 1e6:,.2f}M output tokens/month: "
                  f"{f['replicas']} replica(s), average utilization {f['average_utilization']:.1%}; effective "
                  f"${e['compute_only_usd_per_1m_output_tokens']:,.2f} compute only, "
                  f"${e['with_overhead_usd_per_1m_output_tokens']:,.2f} with overhead, "
                  f"${e['with_tco_usd_per_1m_output_tokens']:,.2f} with ownership per 1M output tokens")
    for mode, o in doc["ownership"].items():
        out.print(f"{mode}: monthly TCO ${o['monthly_tco']:,.2f} (labour ${o['labour']['monthly']:,.2f}); "
                  f"self-hosting wins above ${o['break_even_api_spend']:,.2f} of API spend a month")
    if doc["apis"]:
        bills = {b["name"]: b for b in doc["api_bills"]}
        a = Table("API", "blended $/1M", "break-even utilization", "bill / month at your traffic",
                  *(f"break-even ({m})" for m in doc["ownership"]))
        for api in doc["apis"]:
            b = bills.get(api["name"])
            months = [next((be for be in o["break_evens"] if be["name"] == api["name"]), None)
                      for o in doc["ownership"].values()]
            a.add_row(api["name"], f"${(b or {}).get('blended_per_1m_output', api['blended_per_m']):,.2f}",
                      f"{api['break_even_utilization']:.1%}" + (" (never)" if api["break_even_utilization"] > 1 else ""),
                      f"${b['total_usd']:,.2f}" if b else "—",
                      *(("—" if be is None else f"month {be['month']}" if be["month"] else "never") for be in months))
        out.print(a)


@cost.command("report")
@click.option("--bench", "bench_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="bench.json from `gekro-ft bench`.")
@with_shared
@click.option("--slo", help="Latency targets the priced level must meet, e.g. ttft_p95_ms=2000,e2el_p95_ms=10000 "
                            "(the bench's goodput names with a percentile).")
@click.option("--level", type=int, help="Price the level with this concurrency instead.")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def report(bench_path: Path, gpu_hourly: float | None, gpu: str | None, slo: str | None, level: int | None,
           out_dir: Path, **kw) -> None:
    """Turn a bench.json into the cost report: cost.json, cost.md, cost.html and plots.

    \b
    Example:
      gekro-ft cost report --bench work/bench/bench.json --gpu-hourly 0.44 --slo ttft_p95_ms=2000 \\
        --traffic business-hours --labour 0.2 --compare gpt-4o-mini --out work/cost
    """
    hourly, note = resolve_hourly(gpu_hourly, gpu, kw["prices"])
    from gekro_ft.cost.operating_point import parse_slo
    from gekro_ft.cost.report import write_cost_report

    paths = write_cost_report(bench_path, out_dir, _options(hourly, note, gpu, kw, slo=parse_slo(slo), level=level))
    out.print(f"cost report: {paths['html']}")


@cost.command("memory")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A local model directory (config.json; weights from its safetensors).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Or a config.json alone, with --params.")
@click.option("--params", type=POSITIVE, help="Parameter count, e.g. 6.74e9 (with --config).")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32", "fp8", "int8"]), default="float16",
              show_default=True)
@click.option("--gpu-memory-gib", type=POSITIVE, required=True, help="The GPU's memory (all GPUs of the replica).")
@click.option("--context", "context_tokens", type=click.IntRange(1), default=8192, show_default=True,
              help="Tokens per sequence (prompt + output).")
@click.option("--gpu-memory-utilization", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True)
@click.option("--overhead-gib", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Activations, CUDA graphs and the rest that vLLM profiles at start.")
@click.option("--json", "as_json", is_flag=True)
def memory(model_dir, config_file, params, dtype, gpu_memory_gib, context_tokens, gpu_memory_utilization,
           overhead_gib, as_json) -> None:
    """Weights + KV cache against a GPU's memory: concurrent sequences at a context length.

    \b
    Example:
      gekro-ft cost memory --config llama-2-7b/config.json --params 6.74e9 --gpu-memory-gib 24 --context 8192
    """
    from gekro_ft.cost.kv_cache import capacity, read_shape

    shape = read_shape(model_dir, config_file, params, dtype)
    cap = capacity(shape, gpu_memory_gib=gpu_memory_gib, context_tokens=context_tokens,
                   memory_utilization=gpu_memory_utilization, overhead_gib=overhead_gib)
    if as_json:
        print_json({"shape": {"layers": shape.layers, "kv_heads": shape.kv_heads, "head_dim": shape.head_dim,
                              "dtype": shape.dtype}, **cap.to_dict()})
        return
    out.print(f"KV cache: 2 × {shape.layers} layers × {shape.kv_heads} KV heads × {shape.head_dim} head dim × "
              f"{shape.kv_bytes_per_token // (2 * shape.layers * shape.kv_heads * shape.head_dim)} B = "
              f"{shape.kv_bytes_per_token:,} B per token")
    out.print(cap.describe())
