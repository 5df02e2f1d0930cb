"""The API's real bill for a month of traffic: not the sticker's output price, but input tokens,
the share of input read from the prompt cache, the share sent through the batch tier, and
retries — priced by :meth:`ApiPrice.bill`, the one place token prices are applied.

- Input tokens = output tokens × input tokens per output token.
- The batch share goes through the batch tier (no cache discount there, as ``bill`` says);
  the rest at the standard tier, its cached share of input at the cache rate.
- Retries: the share of requests sent again (timeouts, 429s, 5xx, bad JSON) is billed again in
  full, so the bill is × (1 + retry rate).
- Blended $ per 1M output tokens = the bill ÷ output tokens × 10⁶ (the output the team gets).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gekro_ft.cost.prices import ApiPrice
from gekro_ft.errors import CostError


@dataclass(frozen=True)
class TrafficMix:
    input_per_output: float  # input tokens per output token
    cached_share: float = 0.0  # of the input tokens, the share read from the provider's prompt cache
    batch_share: float = 0.0  # of the requests, the share that can wait for the batch tier (24 h)
    retry_rate: float = 0.0  # extra requests sent again, as a share of all requests
    input_per_output_from: str = "given"  # where the ratio came from, for the report

    def check(self) -> None:
        problems = []
        if self.input_per_output < 0:
            problems.append("input tokens per output token must be ≥ 0")
        for name in ("cached_share", "batch_share"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name.replace('_', ' ')} must be in [0, 1]")
        if not 0 <= self.retry_rate <= 5:
            problems.append("retry rate must be in [0, 5]")
        if problems:
            raise CostError("traffic mix: " + "; ".join(problems))


@dataclass(frozen=True)
class ApiBill:
    name: str
    output_tokens: float
    input_tokens: float
    cached_input_tokens: float
    batch_output_tokens: float
    batch_applied: bool  # False when a batch share was asked for but the API has no batch tier
    sticker_usd: float  # output tokens at the output price only: what calculators quote
    standard_usd: float  # the standard-tier part, cache discount included
    batch_usd: float
    retry_usd: float
    total_usd: float
    blended_per_1m_output: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def api_bill(name: str, price: ApiPrice, output_tokens: float, mix: TrafficMix) -> ApiBill:
    """The month's bill at ``output_tokens`` (formulas in the module docstring)."""
    mix.check()
    if output_tokens <= 0:
        raise CostError("an API bill needs output tokens > 0")
    input_tokens = output_tokens * mix.input_per_output
    batch = mix.batch_share if price.has_batch else 0.0
    std_in, std_out = input_tokens * (1 - batch), output_tokens * (1 - batch)
    cached = std_in * mix.cached_share
    standard = price.bill(std_in, std_out, cached_input_tokens=cached)
    batch_usd = price.bill(input_tokens * batch, output_tokens * batch, batch=True) if batch else 0.0
    retry = (standard + batch_usd) * mix.retry_rate
    total = standard + batch_usd + retry
    return ApiBill(name, output_tokens, input_tokens, cached, output_tokens * batch,
                   price.has_batch or mix.batch_share == 0, output_tokens * price.output_per_m / 1e6,
                   standard, batch_usd, retry, total, total / output_tokens * 1e6)
