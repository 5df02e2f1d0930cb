"""What each routed request cost, by UTC day, tenant and upstream; the frontier budget.

- Frontier: the price table's bill for the tokens the frontier reported (``ApiPrice.bill``).
- Local: output tokens × the cost model's $ per output token at full load
  (``usd_per_1m_output(gpu $/h, measured tokens/s) ÷ 10⁶``); zero when the profile states no
  machine or throughput (then the summary says so). An escalated request pays both: the local
  model answered first.

The summary is rewritten whole (atomically) after each request, so a reader never sees half
of it and a crash loses at most the request in flight.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from gekro_ft.cost.model import usd_per_1m_output
from gekro_ft.cost.prices import ApiPrice, gpu_hourly, load_prices
from gekro_ft.route.profile import RouteProfile

SCHEMA_VERSION = 1


def frontier_price(profile: RouteProfile, prices_path: str | None = None) -> ApiPrice | None:
    name = profile.frontier.price or profile.frontier.model_name
    return load_prices(prices_path).api_price(name) if name else None


def local_usd_per_output_token(profile: RouteProfile, prices_path: str | None = None) -> float | None:
    """The cost model's full-load $ per output token for the local upstream, or None when unstated."""
    local = profile.local
    if local.output_tokens_per_s is None or (local.gpu is None and local.gpu_hourly is None):
        return None
    hourly = local.gpu_hourly if local.gpu_hourly is not None else gpu_hourly(load_prices(prices_path), local.gpu)[0]
    return usd_per_1m_output(hourly, local.output_tokens_per_s) / 1e6


def today() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


class Ledger:
    """Spend and tokens by day → tenant → upstream; the frontier spend of today for the budget."""

    def __init__(self, path: Path, frontier: ApiPrice | None, local_per_token: float | None):
        self.path, self.frontier, self.local_per_token = Path(path), frontier, local_per_token
        self.days: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        self._lock = threading.Lock()
        if self.path.exists():  # a restarted router keeps counting the day's budget
            import orjson

            try:
                self.days = orjson.loads(self.path.read_bytes()).get("days", {})
            except (orjson.JSONDecodeError, AttributeError):
                self.days = {}

    def frontier_usd(self, input_tokens: int, output_tokens: int) -> float:
        return self.frontier.bill(input_tokens, output_tokens) if self.frontier else 0.0

    def local_usd(self, output_tokens: int) -> float:
        return output_tokens * self.local_per_token if self.local_per_token else 0.0

    def add(self, tenant: str, upstream: str, usd: float, input_tokens: int, output_tokens: int) -> None:
        with self._lock:
            row = self.days.setdefault(today(), {}).setdefault(tenant, {}).setdefault(
                upstream, {"requests": 0, "usd": 0.0, "input_tokens": 0, "output_tokens": 0})
            row["requests"] += 1
            row["usd"] += usd
            row["input_tokens"] += input_tokens
            row["output_tokens"] += output_tokens

    def frontier_spent_today(self) -> float:
        return sum(t.get("frontier", {}).get("usd", 0.0) for t in self.days.get(today(), {}).values())

    def document(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION,
                "pricing": {"frontier_usd_per_1m": None if self.frontier is None else
                            {"input": self.frontier.input_per_m, "output": self.frontier.output_per_m,
                             "as_of": str(self.frontier.as_of), "source": self.frontier.source},
                            "local_usd_per_1m_output": None if self.local_per_token is None
                            else self.local_per_token * 1e6},
                "days": self.days}

    def save(self) -> None:
        from gekro_ft.reports import write_json

        with self._lock:
            doc = self.document()
        write_json(self.path, doc)
