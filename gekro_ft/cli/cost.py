"""``gekro-ft cost``: $ per 1M output tokens from a GPU price and a throughput, and the cost report."""

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


def _ratio(ctx, param, value: str) -> float:
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


shared = [
    click.option("--gpu-hourly", type=click.FloatRange(min=0, min_open=True), help="GPU $ per hour."),
    click.option("--gpu", help="A GPU from the price table instead of --gpu-hourly (e.g. h100, rtx-4090)."),
    click.option("--overhead", type=click.FloatRange(0, 5), default=0.0, show_default=True,
                 help="Fraction added for ops, safety and eval (cited: 0.2-0.4)."),
    click.option("--utilization", "utilizations", callback=_floats, default="1,0.6,0.2,0.1", show_default=True,
                 help="Utilizations to price, comma-separated."),
    click.option("--compare", multiple=True, help="An API from the price table (repeatable), e.g. gpt-4o-mini."),
    click.option("--input-output-ratio", "input_per_output", callback=_ratio, default="3:1", show_default=True,
                 help="Input:output tokens per request, for the APIs' blended price."),
    click.option("--eval", "eval_report", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                 help="An eval report.json: adds cost per useful output (÷ success rate)."),
    click.option("--prices", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                 help="Your own price table (replaces shipped entries of the same name)."),
]


def with_shared(f):
    for option in reversed(shared):
        f = option(f)
    return f


@click.group(invoke_without_command=True)
@with_shared
@click.option("--tokens-per-s", type=click.FloatRange(min=0, min_open=True), help="Output tokens/s at full load.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cost(ctx, gpu_hourly: float | None, gpu: str | None, overhead: float, utilizations, compare, input_per_output,
         eval_report, prices, tokens_per_s: float | None, as_json: bool) -> None:
    """$ per 1M output tokens at each utilization, and break-even against API prices.

    \b
    Examples:
      gekro-ft cost --gpu h100 --tokens-per-s 2500 --compare gpt-4o-mini --compare claude-3.5-haiku
      gekro-ft cost report --bench work/bench/bench.json --gpu rtx-4090 --compare gpt-4.1-mini --out work/cost
    """
    if ctx.invoked_subcommand is not None:
        return
    if tokens_per_s is None:
        raise click.UsageError("give --tokens-per-s (or use `gekro-ft cost report --bench bench.json`)")
    hourly, _ = resolve_hourly(gpu_hourly, gpu, prices)
    from gekro_ft.cost.report import cost_figures

    figures, _ = cost_figures(hourly, tokens_per_s, compare=list(compare), prices=prices, overhead=overhead,
                              utilizations=utilizations, input_per_output=input_per_output, eval_report=eval_report)
    if as_json:
        print_json(figures.to_dict())
        return
    from rich.table import Table

    t = Table("utilization", "$ per 1M output tokens", title=f"${hourly:g}/h at {tokens_per_s:g} output tokens/s"
              + (f", overhead {overhead:.0%}" if overhead else ""))
    for u, v in figures.by_utilization.items():
        t.add_row(f"{float(u):.0%}", f"${v:,.4f}")
    out.print(t)
    out.print(f"GPU up 24/7: ${figures.monthly_gpu_usd:,.2f}/month; capacity "
              f"{figures.capacity_tokens_per_month / 1e6:,.1f}M output tokens/month")
    if figures.apis:
        a = Table("API", "blended $/1M", "break-even utilization", "break-even tokens/month")
        for api in figures.apis:
            a.add_row(api.name, f"${api.blended_per_m:,.2f}",
                      f"{api.break_even_utilization:.1%}" + (" (never)" if api.break_even_utilization > 1 else ""),
                      f"{api.break_even_tokens_per_month / 1e6:,.1f}M")
        out.print(a)


@cost.command("report")
@click.option("--bench", "bench_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="bench.json from `gekro-ft bench`.")
@with_shared
@click.option("--level", type=int, help="Use the level with this concurrency (default: the fastest without errors).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def report(bench_path: Path, gpu_hourly: float | None, gpu: str | None, overhead: float, utilizations, compare,
           input_per_output, eval_report, prices, level: int | None, out_dir: Path) -> None:
    """Turn a bench.json into the cost report: cost.json, cost.md, cost.html and plots.

    \b
    Example:
      gekro-ft cost report --bench work/bench/bench.json --gpu-hourly 0.44 --compare gpt-4o-mini --out work/cost
    """
    hourly, note = resolve_hourly(gpu_hourly, gpu, prices)
    from gekro_ft.cost.report import write_cost_report

    paths = write_cost_report(bench_path, out_dir, gpu_hourly=hourly, gpu_name=gpu, compare=list(compare),
                              prices=prices, overhead=overhead, utilizations=utilizations,
                              input_per_output=input_per_output, level=level, eval_report=eval_report,
                              gpu_price_note=note)
    out.print(f"cost report: {paths['html']}")
