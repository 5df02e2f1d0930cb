"""What each side of an eval cost, from the tokens it measured and the price table.

An API side is priced per token (its input and output prices). A self-hosted side is
priced per output token from a GPU's hourly price and a served throughput — measured
by ``gekro-ft bench`` when ``--bench`` is given, else stated in the suite — at full
load; the cost report (``gekro-ft cost``) covers lower utilization. A side that cannot
be priced says why instead of showing a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gekro_ft.errors import BenchError, CostError, GekroError
from gekro_ft.eval.suite import Suite


def _per_output(total: float, side: dict[str, Any]) -> dict[str, Any]:
    answered, correct = side["answered"], side["correct"]
    return {"total_usd": total,
            "usd_per_output": total / answered if answered else None,
            "usd_per_correct_output": total / correct if correct else None}


def price_sides(suite: Suite, sides: dict[str, dict[str, Any]], bench: Path | None,
                prices: Path | None) -> dict[str, dict[str, Any]]:
    from gekro_ft.cost.prices import load_prices

    table = load_prices(prices)
    out = {}
    for role, side in sides.items():
        provider = side["provider"]
        try:
            if provider["kind"] == "local" or (role == "candidate" and suite.cost.candidate_gpu):
                out[role] = _self_hosted(suite, side, table, bench)
            else:
                out[role] = _api(suite, side, table, provider)
        except GekroError as e:
            out[role] = {"basis": "not priced", "reason": str(e)}
    return out


def _api(suite: Suite, side: dict[str, Any], table: Any, provider: dict[str, Any]) -> dict[str, Any]:
    name = suite.cost.baseline_price or provider.get("model")
    if not name:
        raise CostError("no price-table entry named for this side (cost.baseline_price)")
    p = table.api_price(name)
    total = (side["input_tokens"] * p.input_per_m + side["output_tokens"] * p.output_per_m) / 1e6
    return {"basis": f"API price of {name}: ${p.input_per_m:g} in / ${p.output_per_m:g} out per 1M tokens "
                     f"(as of {p.as_of}, {p.source})", **_per_output(total, side)}


def _self_hosted(suite: Suite, side: dict[str, Any], table: Any, bench: Path | None) -> dict[str, Any]:
    gpu_name = suite.cost.candidate_gpu
    if not gpu_name:
        raise CostError("set cost.candidate_gpu in the suite to price the self-hosted side")
    gpu = table.gpu_price(gpu_name)
    tps, source = suite.cost.candidate_output_tokens_per_s, "stated in the suite"
    if bench is not None:
        tps, source = _measured_tps(bench), f"measured by gekro-ft bench ({bench})"
    if not tps:
        raise CostError("no served throughput: pass --bench bench.json or set cost.candidate_output_tokens_per_s")
    from gekro_ft.cost.model import usd_per_1m_output

    per_1m = usd_per_1m_output(gpu.hourly_low, tps)  # the GPU alone, full load: `gekro-ft cost` adds the rest
    total = side["output_tokens"] * per_1m / 1e6
    return {"basis": f"{gpu_name} at ${gpu.hourly_low:g}/h (as of {gpu.as_of}, {gpu.source}), "
                     f"{tps:,.0f} output tokens/s {source}, full load",
            "usd_per_1m_output_tokens": per_1m, **_per_output(total, side)}


def _measured_tps(bench: Path) -> float:
    """The throughput `gekro-ft cost` would price this bench at."""
    from gekro_ft.cost.report import fastest_clean_level, read_bench

    level = fastest_clean_level(read_bench(bench)["levels"])
    if level is None:
        raise BenchError(f"{bench}: no level finished without errors")
    return level["output_tokens_per_s"]
