"""Which bench level a cost is priced at: the highest-throughput level whose latency targets
hold ("raise the batch until p95 hits the SLO, then stop"), or, with no SLO, the fastest level
without errors — and the reason, in words, for the report.

An SLO target is named ``METRIC_PCT_ms`` — the bench's goodput metrics (``ttft_ms``,
``tpot_ms``, ``e2el_ms``) with the percentile the bench reports put in front of ``_ms``:
``ttft_p95_ms=2000`` reads the level's ``ttft_ms.p95``. A level qualifies when it finished
without errors and every named percentile is at or under its limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gekro_ft.bench.stats import GOODPUT_METRICS, PERCENTILES, limit_ms
from gekro_ft.errors import BenchError, CostError

LEVEL_KEYS = ("concurrency", "requests", "completed", "errors", "error_rate", "output_tokens_per_s",
              "request_throughput", "ttft_ms", "tpot_ms", "e2el_ms")
_PCTS = tuple(f"p{p}" for p in PERCENTILES)
_SLO_NAME = re.compile(r"(ttft|tpot|e2el)_(p\d+)_ms")


def read_bench(path: Path) -> dict[str, Any]:
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as e:
        raise BenchError(f"{path}: cannot read: {e.strerror or e}") from None
    except orjson.JSONDecodeError as e:
        raise BenchError(f"{path}: not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != 1:
        raise BenchError(f"{path}: schema_version {doc.get('schema_version') if isinstance(doc, dict) else None!r} "
                         "is not a bench.json this version reads (1)")
    levels = doc.get("levels")
    if not isinstance(levels, list) or not levels:
        raise BenchError(f"{path}: field levels: missing or empty")
    for i, level in enumerate(levels):
        missing = [k for k in LEVEL_KEYS if k not in level]
        if missing:
            raise BenchError(f"{path}: field levels[{i}].{missing[0]}: missing")
    return doc


def fastest_clean_level(levels: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most output tokens/s among the levels that finished without errors; None when none did."""
    clean = [lv for lv in levels if lv["error_rate"] == 0 and lv["output_tokens_per_s"] > 0]
    return max(clean, key=lambda lv: lv["output_tokens_per_s"]) if clean else None


def parse_slo(specs: str | Iterable[str] | None) -> dict[str, float]:
    """``"ttft_p95_ms=500,e2el_p95_ms=8000"`` (or a list of such) -> {"ttft_p95_ms": 500.0, ...}."""
    if not specs:
        return {}
    parts = [p for spec in ([specs] if isinstance(specs, str) else specs) for p in spec.split(",") if p.strip()]
    targets = {}
    allowed = [f"{m.removesuffix('_ms')}_{p}_ms" for m in GOODPUT_METRICS for p in ("p50", "p95", "p99")]
    for part in parts:
        name, _, value = part.partition("=")
        name = name.strip()
        m = _SLO_NAME.fullmatch(name)
        if not m or m.group(2) not in _PCTS:
            raise CostError(f"bad SLO target {part.strip()!r}",
                            hint=f"write NAME=MS with NAME like {', '.join(allowed[:4])} (percentiles: "
                                 f"{', '.join(_PCTS)}), e.g. --slo ttft_p95_ms=2000,e2el_p95_ms=10000")
        targets[name] = limit_ms(value, f"bad SLO target {part.strip()!r}", CostError)
    return targets


def _measured(level: dict[str, Any], target: str) -> float | None:
    metric, pct = _SLO_NAME.fullmatch(target).groups()
    return (level.get(f"{metric}_ms") or {}).get(pct)


@dataclass(frozen=True)
class LevelCheck:
    concurrency: int | None
    output_tokens_per_s: float
    error_rate: float
    measured: dict[str, float | None]  # target name -> the level's figure
    meets: bool
    why_not: str | None


@dataclass(frozen=True)
class OperatingPoint:
    concurrency: int | None
    tokens_per_s: float
    request_throughput: float
    output_tokens_per_request: float  # measured at this level: output tokens ÷ completed requests
    input_tokens_per_output_token: float | None  # measured at this level
    slo: dict[str, float]
    reason: str
    checks: list[LevelCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_level(level: dict[str, Any], slo: dict[str, float]) -> LevelCheck:
    measured = {name: _measured(level, name) for name in slo}
    why = []
    if level["error_rate"] > 0:
        why.append(f"{level['errors']} errors")
    for name, limit in slo.items():
        got = measured[name]
        if got is None:
            why.append(f"{name} not measured")
        elif got > limit:
            why.append(f"{name} {got:,.0f} > {limit:g}")
    if not level["output_tokens_per_s"]:
        why.append("no output")
    return LevelCheck(level["concurrency"], level["output_tokens_per_s"], level["error_rate"], measured,
                      not why, "; ".join(why) or None)


def choose_level(bench: dict[str, Any], source: Path | str, *, slo: dict[str, float] | None = None,
                 concurrency: int | None = None) -> OperatingPoint:
    """The level to price at: the one at ``concurrency`` when given; else the highest output
    tokens/s among the error-free levels meeting every ``slo`` target; else (no SLO) the fastest
    error-free level. A CostError when no level meets the SLO, naming each level's miss."""
    slo = slo or {}
    levels = bench["levels"]
    checks = [check_level(lv, slo) for lv in levels]
    if concurrency is not None:
        chosen = [i for i, lv in enumerate(levels) if lv["concurrency"] == concurrency]
        if not chosen:
            raise BenchError(f"{source}: no level with concurrency {concurrency} "
                             f"(has {', '.join(str(lv['concurrency']) for lv in levels)})")
        i = chosen[0]
        reason = f"concurrency {concurrency} was asked for (--level)"
        if slo and not checks[i].meets:
            reason += f"; it misses the SLO ({checks[i].why_not})"
    else:
        passing = [i for i, c in enumerate(checks) if c.meets]
        if not passing:
            if slo:
                raise CostError(f"{source}: no level meets the SLO: " + "; ".join(
                    f"concurrency {c.concurrency}: {c.why_not}" for c in checks),
                    hint="loosen --slo, bench lower concurrency levels, or pick one with --level")
            raise BenchError(f"{source}: every level had errors; pick one with --level CONCURRENCY")
        i = max(passing, key=lambda j: levels[j]["output_tokens_per_s"])
        fastest = max(range(len(levels)), key=lambda j: levels[j]["output_tokens_per_s"])
        if not slo:
            reason = "no SLO given: the fastest level without errors"
        else:
            stated = ", ".join(f"{k} ≤ {v:g}" for k, v in slo.items())
            reason = f"the highest-throughput level meeting the SLO ({stated})"
            if fastest != i:
                reason += (f"; the faster concurrency {levels[fastest]['concurrency']} misses it "
                           f"({checks[fastest].why_not})")
    lv = levels[i]
    done = lv.get("completed") or 0
    out, inp = lv.get("output_tokens"), lv.get("input_tokens")
    return OperatingPoint(lv["concurrency"], lv["output_tokens_per_s"], lv["request_throughput"] or 0.0,
                          out / done if out and done else 0.0, inp / out if out and inp is not None else None,
                          dict(slo), reason, checks)
