"""What owning the serving costs a month — rented or bought — with the people who run it, and
when it pays for itself against an API.

Per replica (one machine serving the model), a month being 730 h:
- Rent: $/h × 730 × (1 + overhead). A reserved rate with a commitment is a lower $/h; the
  commitment (months) is stated, and the cumulative cost never drops below it.
- Buy: purchase price ÷ lifetime (months), plus power: watts ÷ 1000 × 730 h × $/kWh × PUE
  (PUE: the data centre's total power ÷ the IT power, cooling included), × (1 + overhead) on
  power. Cash-wise the price is paid in month 0.
Per fleet:
- Labour: fraction of an engineer-year × loaded salary ÷ 12 a month, plus set-up days ×
  salary ÷ 260 working days once (month 0).
Then:
- Monthly TCO = replicas × the per-replica cost + labour; amortized: set-up spread over the
  horizon (the lifetime when bought).
- Cumulative cost at month m = up-front (purchase + set-up) + m × monthly running cost.
- Break-even month against an API costing A a month: the first m with A × m ≥ cumulative
  self-hosted cost at m, i.e. m = up-front ÷ (A − monthly running cost), rounded up; never when
  A ≤ monthly running cost.
- Break-even API spend: the monthly API bill above which self-hosting is cheaper = the
  amortized monthly TCO.
- Buy against rent: the month the purchase has paid for itself = (buy's up-front − rent's)
  ÷ (rent's running cost − buy's), rounded up; labour is the same on both sides and cancels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from gekro_ft.cost.model import HOURS_PER_MONTH
from gekro_ft.errors import CostError

WORKING_DAYS_PER_YEAR = 260


@dataclass(frozen=True)
class Labour:
    fraction: float = 0.0  # of one engineer's year spent running the serving
    salary: float = 150_000.0  # loaded US$ a year
    setup_days: float = 0.0  # one-off

    @property
    def monthly(self) -> float:
        return self.fraction * self.salary / 12

    @property
    def setup(self) -> float:
        return self.setup_days * self.salary / WORKING_DAYS_PER_YEAR


@dataclass(frozen=True)
class Ownership:
    mode: Literal["rent", "buy"] = "rent"
    hourly: float = 0.0  # rent: $/h (on-demand or reserved)
    commitment_months: int = 0  # rent: a reserved rate's minimum term
    purchase_price: float = 0.0  # buy: per machine
    lifetime_months: int = 36  # buy: write-off period
    power_watts: float = 0.0  # buy: the machine's draw under load
    kwh_price: float = 0.0  # buy: $/kWh
    pue: float = 1.0  # buy: power usage effectiveness (cooling etc.), ≥ 1
    overhead: float = 0.0  # ops, safety margin, eval runs on the running cost (not the purchase)
    labour: Labour = Labour()
    horizon_months: int = 36  # the plots' span; what set-up is amortized over when renting

    def check(self) -> None:
        problems = []
        if self.mode == "rent" and not self.hourly > 0:
            problems.append("renting needs $/h > 0")
        if self.mode == "buy":
            if not self.purchase_price > 0:
                problems.append("buying needs a purchase price > 0")
            if self.lifetime_months < 1:
                problems.append("lifetime must be at least 1 month")
            if self.pue < 1:
                problems.append("PUE is ≥ 1 (total facility power ÷ IT power)")
            if self.power_watts < 0 or self.kwh_price < 0:
                problems.append("power and $/kWh must be ≥ 0")
        if not 0 <= self.labour.fraction <= 10 or self.labour.salary < 0 or self.labour.setup_days < 0:
            problems.append("labour: fraction in [0, 10], salary and set-up days ≥ 0")
        if self.horizon_months < 1 or self.commitment_months < 0:
            problems.append("horizon at least 1 month, commitment ≥ 0")
        if problems:
            raise CostError("ownership: " + "; ".join(problems))

    @property
    def power_monthly(self) -> float:
        """One bought machine's electricity: W ÷ 1000 × 730 h × $/kWh × PUE."""
        return self.power_watts / 1000 * HOURS_PER_MONTH * self.kwh_price * self.pue

    def running_per_replica(self) -> float:
        """A month of one replica, cash: rent, or a bought machine's power, with overhead."""
        base = self.hourly * HOURS_PER_MONTH if self.mode == "rent" else self.power_monthly
        return base * (1 + self.overhead)

    def upfront(self, replicas: int) -> float:
        return (replicas * self.purchase_price if self.mode == "buy" else 0.0) + self.labour.setup

    def running(self, replicas: int) -> float:
        return replicas * self.running_per_replica() + self.labour.monthly

    def amortized_months(self) -> int:
        return self.lifetime_months if self.mode == "buy" else self.horizon_months

    def monthly_tco(self, replicas: int) -> float:
        """Running cost + up-front spread over the lifetime (buy) or the horizon (rent)."""
        return self.running(replicas) + self.upfront(replicas) / self.amortized_months()

    def cumulative(self, replicas: int, month: int) -> float:
        paid = self.upfront(replicas) + month * self.running(replicas)
        if self.mode == "rent" and self.commitment_months:
            paid = max(paid, self.upfront(replicas) + self.commitment_months * self.running(replicas))
        return paid


@dataclass(frozen=True)
class BreakEven:
    name: str
    api_monthly_usd: float
    self_hosted_monthly_tco: float
    month: int | None  # first month the API has cost more in total; None: never
    month_exact: float | None
    self_hosting_wins: bool  # on the amortized monthly figure

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def payback_month(extra_upfront: float, monthly_saving: float) -> tuple[int | None, float | None]:
    """(whole month, exact month) at which paying ``extra_upfront`` now is earned back by saving
    ``monthly_saving`` a month: extra ÷ saving, rounded up (at least month 1); never without a saving."""
    if monthly_saving <= 0:
        return None, None
    exact = max(0.0, extra_upfront) / monthly_saving
    return max(1, math.ceil(exact)), exact


def break_even(name: str, own: Ownership, replicas: int, api_monthly: float) -> BreakEven:
    """The break-even month against an API billing ``api_monthly`` (formulas above)."""
    own.check()
    if own.mode == "rent" and own.commitment_months and api_monthly > own.running(replicas):
        # the commitment's floor makes the cumulative cost a step: walk the months
        month = next((m for m in range(1, 10 * own.horizon_months + 1)
                      if api_monthly * m >= own.cumulative(replicas, m)), None)
        exact = float(month) if month else None
    else:
        month, exact = payback_month(own.upfront(replicas), api_monthly - own.running(replicas))
    tco = own.monthly_tco(replicas)
    return BreakEven(name, api_monthly, tco, month, exact, api_monthly > tco)
