"""A week of traffic, hour by hour, and the fleet it needs at a measured throughput.

A week is 168 hours, Monday 00:00 first. It comes from a CSV (``day,hour,requests`` or
``day,hour,output_tokens``, one row per hour of the week, ``#`` lines are comments) or from a stated shape: on each
weekday ``busy_hours`` hours run at the peak and every other hour of the week (nights,
weekends) at peak ÷ ``peak_to_trough``, scaled so the month holds the stated requests.

- Output tokens per hour = requests per hour × output tokens per request (when given as requests).
- One replica's capacity per hour = SLO-bound output tokens/s × 3600.
- Replicas = ⌈peak hour's output tokens ÷ one replica's capacity per hour⌉ (at least 1). The hour
  is the unit: bursts inside the peak hour are what the SLO's headroom is for.
- Average utilization = the week's output tokens ÷ (replicas × capacity per hour × 168).
- A month is 730 h = 730 ÷ 168 weeks, so monthly volume = the week's volume × 730 ÷ 168.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gekro_ft.config import shipped
from gekro_ft.cost.model import HOURS_PER_MONTH
from gekro_ft.errors import CostError, InputFileError

HOURS_PER_WEEK = 168
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UNITS = ("requests", "output_tokens")
SAMPLE = shipped("serve", "traffic", "business-hours.csv")


@dataclass(frozen=True)
class WeeklyTraffic:
    output_tokens_per_hour: list[float]  # 168 values, Monday 00:00 first
    source: str  # the file, or the stated shape in words
    unit: str  # what the source counted: requests or output_tokens
    output_tokens_per_request: float | None  # the factor applied when the source counted requests

    @property
    def weekly_output_tokens(self) -> float:
        return sum(self.output_tokens_per_hour)

    @property
    def monthly_output_tokens(self) -> float:
        return self.weekly_output_tokens * HOURS_PER_MONTH / HOURS_PER_WEEK

    @property
    def peak_output_tokens_per_hour(self) -> float:
        return max(self.output_tokens_per_hour)

    @property
    def peak_to_trough(self) -> float | None:
        low = min(self.output_tokens_per_hour)
        return self.peak_output_tokens_per_hour / low if low > 0 else None

    def scaled(self, factor: float) -> WeeklyTraffic:
        """The same shape at ``factor`` times the volume (for the cost-against-volume plot)."""
        return WeeklyTraffic([v * factor for v in self.output_tokens_per_hour], self.source, self.unit,
                             self.output_tokens_per_request)


def find_traffic(name_or_path: str | Path) -> Path:
    """A CSV file, or the name of a shipped week (``business-hours``) from any directory."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    named = shipped("serve", "traffic", f"{Path(str(name_or_path)).stem}.csv")
    if "/" not in str(name_or_path) and named.exists():
        return named
    known = sorted(p.stem for p in SAMPLE.parent.glob("*.csv"))
    raise InputFileError(path, "no such traffic file", hint=f"give a CSV file or a shipped week: {', '.join(known)}")


def read_traffic(path: str | Path, output_tokens_per_request: float | None = None) -> WeeklyTraffic:
    """A week from a CSV (or a shipped week's name) with columns ``day`` (mon…sun), ``hour``
    (0–23) and ``requests`` or ``output_tokens``; every hour of the week exactly once. Requests
    need ``output_tokens_per_request`` to become tokens."""
    path = find_traffic(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputFileError(path, f"cannot read: {e.strerror or e}") from None
    # "#" lines are comments; keep each kept line's number in the file for messages
    kept = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader([ln for _, ln in kept])
    fields = [f.strip() for f in reader.fieldnames or []]
    unit = next((u for u in UNITS if u in fields), None)
    if "day" not in fields or "hour" not in fields or unit is None:
        raise InputFileError(path, f"the header is {','.join(fields) or 'missing'}; want day,hour and one of "
                                   f"{' or '.join(UNITS)}", line=kept[0][0] if kept else 1)
    hours: dict[int, float] = {}
    for row in reader:
        line = kept[reader.line_num - 1][0]
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        day = row["day"].lower()[:3]
        if day not in DAYS:
            raise InputFileError(path, f"field day: {row['day']!r} is not one of {', '.join(DAYS)}", line=line)
        try:
            hour = int(row["hour"])
        except ValueError:
            hour = -1
        if not 0 <= hour <= 23:
            raise InputFileError(path, f"field hour: {row['hour']!r} is not a whole number 0–23", line=line)
        try:
            value = float(row[unit])
        except ValueError:
            value = -1.0
        if not (value >= 0 and math.isfinite(value)):
            raise InputFileError(path, f"field {unit}: {row[unit]!r} is not a number ≥ 0", line=line)
        slot = DAYS.index(day) * 24 + hour
        if slot in hours:
            raise InputFileError(path, f"field hour: {day} {hour}:00 appears twice", line=line)
        hours[slot] = value
    missing = [f"{DAYS[s // 24]} {s % 24}:00" for s in range(HOURS_PER_WEEK) if s not in hours]
    if missing:
        raise InputFileError(path, f"{len(missing)} hour(s) of the week missing, first {missing[0]}; "
                                   "give all 168 (7 days × 24 hours)")
    values = [hours[s] for s in range(HOURS_PER_WEEK)]
    if unit == "requests":
        if not output_tokens_per_request or output_tokens_per_request <= 0:
            raise CostError(f"{path} counts requests: give the average output tokens per request")
        values = [v * output_tokens_per_request for v in values]
    if not any(values):
        raise InputFileError(path, "the week has no traffic")
    return WeeklyTraffic(values, str(path), unit, output_tokens_per_request if unit == "requests" else None)


def stated_traffic(*, requests_per_month: float, peak_to_trough: float, busy_hours: float,
                   output_tokens_per_request: float) -> WeeklyTraffic:
    """The shape in the module's docstring: weekday busy hours at the peak p, the other hours of
    the week at p ÷ ratio; the week holds requests_per_month × 168 ÷ 730 requests, so
    p = weekly requests ÷ (5 × busy hours + (168 − 5 × busy hours) ÷ ratio)."""
    if not 0 < busy_hours <= 24 or peak_to_trough < 1 or requests_per_month <= 0 or output_tokens_per_request <= 0:
        raise CostError("a stated traffic shape needs busy hours in (0, 24], a peak-to-trough ratio ≥ 1, "
                        "and requests per month and output tokens per request > 0")
    weekly = requests_per_month * HOURS_PER_WEEK / HOURS_PER_MONTH
    busy_total = 5 * busy_hours
    peak = weekly / (busy_total + (HOURS_PER_WEEK - busy_total) / peak_to_trough)
    trough = peak / peak_to_trough
    start = 12 - busy_hours / 2  # busy hours centred on midday
    values = []
    for slot in range(HOURS_PER_WEEK):
        day, hour = divmod(slot, 24)
        # the share of this hour inside the busy window, so fractional busy hours add up exactly
        busy = max(0.0, min(hour + 1, start + busy_hours) - max(hour, start)) if day < 5 else 0.0
        values.append((busy * peak + (1 - busy) * trough) * output_tokens_per_request)
    return WeeklyTraffic(values, f"stated: {requests_per_month:,.0f} requests a month, {busy_hours:g} busy hours "
                                 f"a weekday, peak-to-trough {peak_to_trough:g}", "requests",
                         output_tokens_per_request)


@dataclass(frozen=True)
class Fleet:
    replicas: int
    capacity_tokens_per_hour: float  # one replica at the SLO-bound throughput
    peak_output_tokens_per_hour: float
    weekly_output_tokens: float
    monthly_output_tokens: float
    average_utilization: float
    peak_utilization: float  # the peak hour's load on the fleet

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fleet_for(traffic: WeeklyTraffic, tokens_per_s: float) -> Fleet:
    """Replicas for the peak hour and the average utilization over the week (formulas above)."""
    if tokens_per_s <= 0:
        raise CostError("the SLO-bound throughput must be > 0 output tokens/s")
    per_hour = tokens_per_s * 3600
    peak = traffic.peak_output_tokens_per_hour
    replicas = max(1, math.ceil(peak / per_hour))
    weekly = traffic.weekly_output_tokens
    return Fleet(replicas, per_hour, peak, weekly, traffic.monthly_output_tokens,
                 weekly / (replicas * per_hour * HOURS_PER_WEEK), peak / (replicas * per_hour))
