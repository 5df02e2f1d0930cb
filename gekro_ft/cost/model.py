"""The cost model: pure arithmetic, no I/O, every formula stated where it is computed.

- Cost per 1M output tokens at full load = GPU $/h × (1 + overhead) ÷ (output tokens/s × 3600) × 10⁶.
  At utilization u (the share of the hour the GPU does useful work) it is that ÷ u. The
  compute-only figure is the same with overhead 0; both are always reported.
- Overhead multiplies the GPU bill: ops, safety margin, eval runs (publicly cited: 20–40%).
- A GPU kept up all month costs $/h × 730 h × (1 + overhead), whether busy or not.
- An API's price per output token, blended: input price × (input tokens per output token)
  + output price, so both sides are compared per output token with the prompts paid for.
- Break-even volume: the output tokens a month at which the API bill equals the GPU's
  monthly cost = monthly GPU cost ÷ API price per token. Above it, self-hosting is cheaper
  — if the GPU can produce that much (capacity = tokens/s × 3600 × 730).
- Break-even utilization: where our cost per 1M equals the API's price = full-load cost ÷
  API price; above 1 the API is cheaper even with the GPU busy all the time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

HOURS_PER_MONTH = 730  # 8,760 h a year ÷ 12


def usd_per_1m_output(gpu_hourly: float, tokens_per_s: float, utilization: float = 1.0,
                      overhead: float = 0.0) -> float:
    if tokens_per_s <= 0 or not 0 < utilization <= 1:
        raise ValueError("tokens_per_s must be > 0 and utilization in (0, 1]")
    return gpu_hourly * (1 + overhead) / (tokens_per_s * 3600 * utilization) * 1e6


def monthly_gpu_usd(gpu_hourly: float, overhead: float = 0.0) -> float:
    return gpu_hourly * HOURS_PER_MONTH * (1 + overhead)


def capacity_tokens_per_month(tokens_per_s: float) -> float:
    return tokens_per_s * 3600 * HOURS_PER_MONTH


def blended_per_1m_output(input_per_m: float, output_per_m: float, input_per_output: float) -> float:
    """An API's price per 1M output tokens with the input tokens that come with them."""
    return input_per_m * input_per_output + output_per_m


def break_even_tokens_per_month(monthly_usd: float, api_per_1m_output: float) -> float:
    return monthly_usd / api_per_1m_output * 1e6


def break_even_utilization(full_load_per_1m: float, api_per_1m_output: float) -> float:
    return full_load_per_1m / api_per_1m_output


@dataclass(frozen=True)
class ApiComparison:
    name: str
    output_per_m: float
    blended_per_m: float
    break_even_utilization: float  # against the blended price; > 1: the API is always cheaper
    break_even_utilization_output_only: float
    break_even_tokens_per_month: float  # blended
    break_even_tokens_per_month_output_only: float
    reachable: bool  # the GPU can produce the break-even volume in a month
    usd_per_useful_output_1m: float | None = None  # blended ÷ the baseline's success rate


@dataclass(frozen=True)
class CostFigures:
    gpu_hourly: float
    tokens_per_s: float
    overhead: float
    input_per_output: float
    compute_only_usd_per_1m_output_tokens: float  # the GPU's bill alone, at full load
    full_load_usd_per_1m_output_tokens: float  # with overhead, at full load
    by_utilization: dict[str, float]  # "0.2" -> $ per 1M output tokens, with overhead
    by_utilization_compute_only: dict[str, float]
    monthly_gpu_usd: float
    capacity_tokens_per_month: float
    apis: list[ApiComparison]
    success_rate: float | None = None
    usd_per_1m_useful_output_tokens: float | None = None  # full load ÷ the candidate's success rate

    def to_dict(self) -> dict:
        return asdict(self)


def compute(gpu_hourly: float, tokens_per_s: float, *, overhead: float = 0.0,
            utilizations: tuple[float, ...] = (1.0, 0.6, 0.2, 0.1), apis: dict[str, tuple[float, float]] | None = None,
            input_per_output: float = 3.0, success_rate: float | None = None,
            baseline_success_rate: float | None = None, baseline_api: str | None = None) -> CostFigures:
    """All figures of a cost report; ``apis`` maps a name to (input, output) $ per 1M tokens.
    ``baseline_success_rate`` (measured on the API named ``baseline_api``) prices that API's
    useful output; the other APIs' success was not measured, so theirs stays None."""
    full = usd_per_1m_output(gpu_hourly, tokens_per_s, 1.0, overhead)
    bare = usd_per_1m_output(gpu_hourly, tokens_per_s, 1.0)
    monthly = monthly_gpu_usd(gpu_hourly, overhead)
    capacity = capacity_tokens_per_month(tokens_per_s)
    comparisons = []
    for name, (inp, outp) in (apis or {}).items():
        blended = blended_per_1m_output(inp, outp, input_per_output)
        volume = break_even_tokens_per_month(monthly, blended)
        comparisons.append(ApiComparison(
            name, outp, blended, break_even_utilization(full, blended), break_even_utilization(full, outp),
            volume, break_even_tokens_per_month(monthly, outp), volume <= capacity,
            blended / baseline_success_rate if baseline_success_rate and name == baseline_api else None))
    return CostFigures(
        gpu_hourly, tokens_per_s, overhead, input_per_output, bare, full,
        {f"{u:g}": usd_per_1m_output(gpu_hourly, tokens_per_s, u, overhead) for u in utilizations},
        {f"{u:g}": usd_per_1m_output(gpu_hourly, tokens_per_s, u) for u in utilizations},
        monthly, capacity, comparisons, success_rate, full / success_rate if success_rate else None)
