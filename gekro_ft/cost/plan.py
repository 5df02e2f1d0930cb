"""Every figure of a cost decision from stated inputs: the operating point's throughput priced
compute-only and with overhead, the fleet the traffic needs and its utilization, each API's real
bill for the same traffic, ownership (rent, and buy when priced) with the break-even month and
the break-even API spend. Pure: inputs in, a JSON-ready dict out; each formula lives in the
module that computes it (model, traffic, api_bill, ownership).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from gekro_ft.cost.api_bill import TrafficMix, api_bill
from gekro_ft.cost.model import compute
from gekro_ft.cost.ownership import Labour, Ownership, break_even, payback_month
from gekro_ft.cost.prices import ApiPrice
from gekro_ft.cost.traffic import WeeklyTraffic, fleet_for


@dataclass(frozen=True)
class Buy:
    price: float  # per machine
    lifetime_months: int = 36
    power_watts: float = 0.0
    kwh_price: float = 0.0
    pue: float = 1.0


@dataclass(frozen=True)
class CostInputs:
    gpu_hourly: float  # rent, $/h (on-demand, or the reserved rate with commitment_months)
    tokens_per_s: float  # at the operating point
    overhead: float = 0.0
    utilizations: tuple[float, ...] = (1.0, 0.6, 0.2, 0.1)
    apis: dict[str, ApiPrice] = field(default_factory=dict)
    mix: TrafficMix = TrafficMix(3.0)
    traffic: WeeklyTraffic | None = None
    labour: Labour = Labour()
    commitment_months: int = 0
    buy: Buy | None = None
    horizon_months: int = 36
    success_rate: float | None = None
    baseline_success_rate: float | None = None
    baseline_api: str | None = None


def ownership_options(i: CostInputs) -> dict[str, Ownership]:
    """Rent always (at the GPU's $/h); buy when a purchase price is stated."""
    rent = Ownership("rent", hourly=i.gpu_hourly, commitment_months=i.commitment_months, overhead=i.overhead,
                     labour=i.labour, horizon_months=i.horizon_months)
    options = {"rent": rent}
    if i.buy:
        options["buy"] = Ownership("buy", purchase_price=i.buy.price, lifetime_months=i.buy.lifetime_months,
                                   power_watts=i.buy.power_watts, kwh_price=i.buy.kwh_price, pue=i.buy.pue,
                                   overhead=i.overhead, labour=i.labour, horizon_months=i.horizon_months)
    for own in options.values():
        own.check()
    return options


def plan(i: CostInputs) -> dict[str, Any]:
    figures = compute(i.gpu_hourly, i.tokens_per_s, overhead=i.overhead, utilizations=i.utilizations,
                      apis={n: (p.input_per_m, p.output_per_m) for n, p in i.apis.items()},
                      input_per_output=i.mix.input_per_output, success_rate=i.success_rate,
                      baseline_success_rate=i.baseline_success_rate, baseline_api=i.baseline_api)
    doc = figures.to_dict()
    doc["mix"] = asdict(i.mix)
    options = ownership_options(i)
    fleet = fleet_for(i.traffic, i.tokens_per_s) if i.traffic else None
    replicas = fleet.replicas if fleet else 1
    doc["traffic"] = None if i.traffic is None else {
        "source": i.traffic.source, "unit": i.traffic.unit,
        "output_tokens_per_request": i.traffic.output_tokens_per_request,
        "output_tokens_per_hour": [round(v, 3) for v in i.traffic.output_tokens_per_hour],
        "weekly_output_tokens": i.traffic.weekly_output_tokens,
        "monthly_output_tokens": i.traffic.monthly_output_tokens,
        "peak_output_tokens_per_hour": i.traffic.peak_output_tokens_per_hour,
        "peak_to_trough": i.traffic.peak_to_trough}
    doc["fleet"] = fleet.to_dict() if fleet else None
    if fleet:
        # the fleet's bill over the month's tokens = full-load $ per 1M ÷ average utilization
        doc["effective"] = {
            "average_utilization": fleet.average_utilization,
            "compute_only_usd_per_1m_output_tokens": figures.compute_only_usd_per_1m_output_tokens
            / fleet.average_utilization,
            "with_overhead_usd_per_1m_output_tokens": figures.full_load_usd_per_1m_output_tokens
            / fleet.average_utilization,
            "with_tco_usd_per_1m_output_tokens": options["rent"].monthly_tco(replicas)
            / fleet.monthly_output_tokens * 1e6}
    else:
        doc["effective"] = None
    bills = ({n: api_bill(n, p, fleet.monthly_output_tokens, i.mix) for n, p in i.apis.items()} if fleet else {})
    doc["api_bills"] = [b.to_dict() for b in bills.values()]
    doc["ownership"] = {}
    for mode, own in options.items():
        doc["ownership"][mode] = {
            **{k: v for k, v in asdict(own).items() if k != "labour"},
            "replicas": replicas,
            "labour": {**asdict(own.labour), "monthly": own.labour.monthly, "setup": own.labour.setup},
            "power_monthly_per_replica": own.power_monthly if mode == "buy" else None,
            "running_monthly": own.running(replicas), "upfront": own.upfront(replicas),
            "monthly_tco": own.monthly_tco(replicas),
            # by definition the amortized monthly TCO: the monthly API bill above which this option is cheaper
            "break_even_api_spend": own.monthly_tco(replicas),
            "break_evens": [break_even(n, own, replicas, b.total_usd).to_dict() for n, b in bills.items()]}
    if "buy" in options:
        rent, buy = options["rent"], options["buy"]
        month, exact = payback_month(buy.upfront(replicas) - rent.upfront(replicas),
                                     rent.running(replicas) - buy.running(replicas))
        doc["buy_vs_rent"] = {"month": month, "month_exact": exact}
    else:
        doc["buy_vs_rent"] = None
    return doc


def monthly_cost_curve(i: CostInputs, volumes: list[float]) -> dict[str, list[float]]:
    """For the cost-against-volume plot: at each monthly output-token volume (the stated week's
    shape scaled, or flat without one), self-hosted (rent, and buy) monthly TCO with the replicas
    that volume needs, and each API's real bill."""
    options = ownership_options(i)
    out: dict[str, list[float]] = {"replicas": []}
    out |= {f"self-hosted ({mode})": [] for mode in options}
    out |= {n: [] for n in i.apis}
    per_month_capacity = i.tokens_per_s * 3600 * 730
    for v in volumes:
        if i.traffic:
            fleet = fleet_for(i.traffic.scaled(v / i.traffic.monthly_output_tokens), i.tokens_per_s) if v > 0 else None
            replicas = fleet.replicas if fleet else 1
        else:
            replicas = max(1, math.ceil(v / per_month_capacity))
        out["replicas"].append(replicas)
        for mode, own in options.items():
            out[f"self-hosted ({mode})"].append(own.monthly_tco(replicas))
        for n, p in i.apis.items():
            out[n].append(api_bill(n, p, v, i.mix).total_usd if v > 0 else 0.0)
    return out
