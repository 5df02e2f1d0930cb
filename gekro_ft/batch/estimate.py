"""What the whole corpus would cost, and how long it would take, here and on each API:
a sample run through the local model, extrapolated.

The sample (the first ``sample`` rows) runs as a real batch job; from it come the tokens
per row and the local throughput. For a corpus of ``total`` rows:

- tokens: input = total × input tokens per row; output = total × output tokens per row
  (counted by the local model's tokenizer; an API's tokenizer counts somewhat differently);
- local wall clock = total ÷ (rows answered ÷ the sample's wall seconds);
- local cost = $ per 1M output tokens at that throughput (:func:`gekro_ft.cost.model.usd_per_1m_output`,
  the machine's $/h from the price table) × output tokens ÷ 10⁶, which is $/h × wall hours;
- an API's cost = :meth:`ApiPrice.bill` of the tokens, at the standard and the batch rates;
- an API's wall clock (standard tier) is bounded by its rate limits for the usage tier:
  minutes = max(rows ÷ requests per minute, (input + output) ÷ tokens per minute,
  output ÷ output tokens per minute where the provider has that limit); the batch tier
  answers each submitted batch within its completion window (24 h), its queue limits are
  not in the price table, so no wall clock is claimed for it;
- × local = the API's cost ÷ the local cost.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from gekro_ft import __version__
from gekro_ft.batch.inputs import count_rows, detect_kind
from gekro_ft.batch.run import BatchSettings, Progress, run_batch
from gekro_ft.errors import BatchError

SCHEMA_VERSION = 1
DEFAULT_MACHINE = "m7i-large-cpu"
DEFAULT_TIER = "tier-1"


def api_wall_s(rows: float, input_tokens: float, output_tokens: float, limit: Any) -> float:
    """Seconds an API needs for the job at its per-minute limits (the tightest one binds)."""
    minutes = [rows / limit.requests_per_min, (input_tokens + output_tokens) / limit.tokens_per_min]
    if limit.output_tokens_per_min:
        minutes.append(output_tokens / limit.output_tokens_per_min)
    return max(minutes) * 60


def extrapolate(sample: dict[str, Any], total: int, table: Any, machine: str, tier: str,
                apis: list[str] | None = None) -> dict[str, Any]:
    """Every figure of the estimate from the sample's measured figures and the price table."""
    from gekro_ft.cost.model import usd_per_1m_output
    from gekro_ft.cost.prices import gpu_hourly

    rows, wall = sample["answered"], sample["wall_s"]
    if not rows or wall <= 0 or not sample["output_tokens"]:
        raise BatchError("the sample produced no answers to measure (see its errors file)")
    in_row, out_row = sample["input_tokens"] / rows, sample["output_tokens"] / rows
    in_total, out_total = total * in_row, total * out_row
    hourly, price_note = gpu_hourly(table, machine)
    tokens_per_s = sample["output_tokens"] / wall
    local_wall = total / (rows / wall)
    local_cost = usd_per_1m_output(hourly, tokens_per_s) * out_total / 1e6
    providers = [{"provider": f"local ({machine})", "tier": "self-hosted", "cost_usd": local_cost,
                  "x_local": 1.0, "wall_s": local_wall, "wall_note": "measured throughput, extrapolated"}]
    for name in apis or sorted(table.api):
        price = table.api_price(name)
        limit = price.rate_limits.get(tier)
        standard = price.bill(in_total, out_total)
        providers.append({"provider": name, "tier": "standard", "cost_usd": standard, "x_local": standard / local_cost,
                          "wall_s": api_wall_s(total, in_total, out_total, limit) if limit else None,
                          "wall_note": f"rate limits, {tier}" if limit else f"no {tier} rate limits in the price table"})
        if price.has_batch:
            batch = price.bill(in_total, out_total, batch=True)
            providers.append({"provider": name, "tier": "batch", "cost_usd": batch, "x_local": batch / local_cost,
                              "wall_s": None, "wall_note": "each batch within the 24 h completion window"})
    return {"rows": total, "input_tokens_per_row": in_row, "output_tokens_per_row": out_row,
            "input_tokens": in_total, "output_tokens": out_total,
            "local": {"machine": machine, "usd_per_hour": hourly, "price_note": price_note,
                      "output_tokens_per_s": tokens_per_s, "rows_per_s": rows / wall},
            "tier": tier, "providers": providers}


def estimate_batch(s: BatchSettings, sample: int = 50, total: int | None = None, *, out_dir: Path,
                   prices: Path | None = None, machine: str = DEFAULT_MACHINE, tier: str = DEFAULT_TIER,
                   apis: list[str] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Run the first ``sample`` rows, extrapolate to ``total`` rows (default: all the input's),
    write estimate.json/.md/.html with its plot to ``out_dir``; returns the document."""
    from gekro_ft.cost.prices import load_prices

    table = load_prices(prices)
    table.gpu_price(machine)  # a wrong name fails before the sample runs
    for name in apis or []:
        table.api_price(name)
    kind = s.input_kind or detect_kind(s.input)
    total = total or count_rows(s.input, kind, s.schema)
    sample_out = Path(out_dir) / "sample.jsonl"
    # measured now, never resumed: an earlier sample's answers would make this one look instant
    for stale in (sample_out, sample_out.with_name("sample.errors.jsonl")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(Path(out_dir) / "sample.report", ignore_errors=True)
    started = time.time()
    run = run_batch(replace(s, output=sample_out, limit=sample, input_kind=kind,
                            report_dir=Path(out_dir) / "sample.report"), progress)
    measured = {k: run["this_run"][k] for k in ("answered", "failed", "wall_s", "input_tokens", "output_tokens")}
    doc = {"schema_version": SCHEMA_VERSION, "kind": "batch-estimate",
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
           "gekro_ft_version": __version__, "model": run["model"], "engine": run["engine"],
           "input": run["input"] | {"rows": total}, "sample": {"rows": sample, **measured,
                                                              "answers": str(sample_out)},
           "prices": table.sources, **extrapolate(measured, total, table, machine, tier, apis)}
    from gekro_ft.batch.report import write_estimate_report
    from gekro_ft.batch.tracking import maybe_log

    paths = write_estimate_report(doc, out_dir)
    doc["mlflow"] = maybe_log("estimate", doc, list(paths.values()))
    if doc["mlflow"]:
        write_estimate_report(doc, out_dir)
    return doc
