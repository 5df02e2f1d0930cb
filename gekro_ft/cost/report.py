"""The cost report: a bench.json's SLO-bound throughput turned into $ per 1M output tokens
(compute-only and with overhead), the fleet a week of traffic needs and its utilization, each
API's real bill for that traffic, ownership (rent or buy, with labour) and the break-evens —
JSON, Markdown, HTML and plots. Every figure is recomputable from the ``inputs`` the JSON states.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gekro_ft import __version__
from gekro_ft.cost.api_bill import TrafficMix
from gekro_ft.cost.operating_point import LEVEL_KEYS, OperatingPoint, choose_level, fastest_clean_level, read_bench
from gekro_ft.cost.ownership import Labour
from gekro_ft.cost.plan import Buy, CostInputs, monthly_cost_curve, plan
from gekro_ft.cost.prices import load_prices
from gekro_ft.cost.traffic import read_traffic, stated_traffic
from gekro_ft.errors import CostError, EvalError
from gekro_ft.reports import write_json, write_markdown_and_html

__all__ = ["CostOptions", "cost_document", "fastest_clean_level", "read_bench", "write_cost_report"]

SCHEMA_VERSION = 2  # 2: compute-only figures, operating point, traffic, fleet, API bills, ownership
DEFAULT_INPUT_PER_OUTPUT = 3.0


@dataclass
class CostOptions:
    """What a user states; every field lands in the report's ``inputs``."""

    gpu_hourly: float
    gpu_name: str | None = None
    gpu_price_note: str = "given"
    compare: list[str] = field(default_factory=list)
    prices: Path | None = None
    overhead: float = 0.0
    utilizations: tuple[float, ...] = (1.0, 0.6, 0.2, 0.1)
    slo: dict[str, float] = field(default_factory=dict)
    level: int | None = None
    eval_report: Path | None = None
    # the API side: None = measured (the eval's baseline, else the bench), else 3:1
    input_per_output: float | None = None
    cached_share: float = 0.0
    batch_share: float = 0.0
    retry_rate: float = 0.0
    # traffic: a CSV, or a stated shape
    traffic: str | Path | None = None  # a CSV, or a shipped week's name
    requests_per_month: float | None = None
    peak_to_trough: float | None = None
    busy_hours: float | None = None
    output_tokens_per_request: float | None = None  # None: measured at the operating point
    # ownership
    labour: Labour = Labour()
    commitment_months: int = 0
    buy: Buy | None = None
    horizon_months: int = 36

    def stated(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("prices", "eval_report", "traffic"):
            d[k] = str(d[k]) if d[k] else None
        d["utilizations"] = list(self.utilizations)
        return d


def success_rates(eval_report: Path | None) -> dict[str, Any]:
    """From an eval report.json: the candidate's and the baseline's success rates, the baseline's
    model (its rate prices "useful output" for that API only) and its measured token counts."""
    if eval_report is None:
        return {}
    try:
        sides = orjson.loads(Path(eval_report).read_bytes())["sides"]
        base = sides.get("baseline") or {}
        return {"candidate": sides["candidate"]["success_rate"], "baseline": base.get("success_rate"),
                "baseline_model": (base.get("provider") or {}).get("model"),
                "baseline_input_tokens": base.get("input_tokens"), "baseline_output_tokens": base.get("output_tokens")}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise EvalError(f"{eval_report}: not an eval report.json with sides.candidate.success_rate ({e})") from None


def _input_per_output(o: CostOptions, rates: dict[str, Any], point: OperatingPoint | None) -> tuple[float, str]:
    if o.input_per_output is not None:
        return o.input_per_output, "given"
    i, out = rates.get("baseline_input_tokens"), rates.get("baseline_output_tokens")
    if i and out:
        return i / out, f"measured by the eval's baseline ({i:,} input ÷ {out:,} output tokens)"
    if point is not None and point.input_tokens_per_output_token:
        return point.input_tokens_per_output_token, f"measured by the bench at concurrency {point.concurrency}"
    return DEFAULT_INPUT_PER_OUTPUT, "default 3:1 (nothing measured)"


def cost_document(o: CostOptions, *, tokens_per_s: float | None = None, bench: dict[str, Any] | None = None,
                  bench_path: Path | None = None) -> dict[str, Any]:
    """Every figure, with the inputs stated: from a bench (its SLO-bound level) or a given throughput."""
    point = choose_level(bench, bench_path, slo=o.slo, concurrency=o.level) if bench is not None else None
    tps = point.tokens_per_s if point else tokens_per_s
    if not tps:
        raise CostError("no throughput: give --tokens-per-s or a bench.json")
    table = load_prices(o.prices)
    entries = {name: table.api_price(name) for name in o.compare}
    rates = success_rates(o.eval_report)
    ratio, ratio_from = _input_per_output(o, rates, point)
    per_request = o.output_tokens_per_request or (point.output_tokens_per_request if point else None)
    traffic = None
    shape = {"--peak-to-trough": o.peak_to_trough, "--busy-hours": o.busy_hours}
    if o.traffic is not None and (o.requests_per_month is not None or any(v is not None for v in shape.values())):
        raise CostError("give --traffic FILE or a stated shape (--requests-per-month, --peak-to-trough, "
                        "--busy-hours), not both")
    if o.requests_per_month is None and any(v is not None for v in shape.values()):
        raise CostError(f"{', '.join(k for k, v in shape.items() if v is not None)} shapes a volume: "
                        "give --requests-per-month too")
    if o.traffic is not None:
        traffic = read_traffic(o.traffic, per_request)
    elif o.requests_per_month is not None:
        if not per_request:
            raise CostError("a stated traffic shape needs --output-tokens-per-request (no bench measured it)")
        traffic = stated_traffic(requests_per_month=o.requests_per_month, peak_to_trough=o.peak_to_trough or 1.0,
                                 busy_hours=o.busy_hours or 24.0, output_tokens_per_request=per_request)
    inputs = CostInputs(o.gpu_hourly, tps, overhead=o.overhead, utilizations=o.utilizations, apis=entries,
                        mix=TrafficMix(ratio, o.cached_share, o.batch_share, o.retry_rate, ratio_from),
                        traffic=traffic, labour=o.labour, commitment_months=o.commitment_months, buy=o.buy,
                        horizon_months=o.horizon_months, success_rate=rates.get("candidate"),
                        baseline_success_rate=rates.get("baseline"), baseline_api=rates.get("baseline_model"))
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gekro_ft_version": __version__,
        "inputs": {**o.stated(), "tokens_per_s": tps, "output_tokens_per_request_used": per_request,
                   "prices": {n: p.model_dump(mode="json") for n, p in entries.items()},
                   "eval_success_rates": rates or None}}
    if bench is not None:
        doc["inputs"] |= {"bench": str(bench_path), "bench_command": bench.get("command"), "engine": bench.get("engine"),
                          "model": (bench.get("settings") or {}).get("model"), "hardware": bench.get("hardware")}
        doc["levels"] = [{k: lv[k] for k in LEVEL_KEYS} for lv in bench["levels"]]
    doc["operating_point"] = point.to_dict() if point else None
    doc |= plan(inputs)
    doc["curve"] = _curve(inputs, doc)
    return doc


def _curve(inputs: CostInputs, doc: dict[str, Any]) -> dict[str, Any]:
    """Monthly cost against monthly volume, up to 3× the stated volume (or 2× one replica's month)."""
    top = 3 * doc["traffic"]["monthly_output_tokens"] if doc["traffic"] else 2 * doc["capacity_tokens_per_month"]
    volumes = [top * k / 120 for k in range(121)]
    return {"monthly_output_tokens": volumes, **monthly_cost_curve(inputs, volumes)}


def write_cost_report(bench_path: Path, out_dir: Path, options: CostOptions) -> dict[str, Path]:
    doc = cost_document(options, bench=read_bench(bench_path), bench_path=Path(bench_path))
    return write_outputs(doc, out_dir)


def write_outputs(doc: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"json": write_json(out_dir / "cost.json", doc)}
    from gekro_ft.cost import plots

    if doc.get("levels"):
        paths["throughput_png"] = plots.levels(doc, out_dir / "throughput_latency.png")
    paths["utilization_png"] = plots.utilization(doc, out_dir / "cost_vs_utilization.png")
    paths["volume_png"] = plots.monthly_vs_volume(doc, out_dir / "monthly_cost_vs_volume.png")
    paths["cumulative_png"] = plots.cumulative(doc, out_dir / "cumulative_cost.png")
    if doc["traffic"]:
        paths["traffic_png"] = plots.weekly_traffic(doc, out_dir / "weekly_traffic.png")
    from gekro_ft.cost.markdown import cost_markdown

    paths["md"], paths["html"] = write_markdown_and_html(out_dir, "cost", cost_markdown(doc), "Cost per output")
    return paths
