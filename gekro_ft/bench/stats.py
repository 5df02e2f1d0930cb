"""Latency and throughput figures from request records, as vLLM's benchmark defines them.

- TTFT: request sent -> first content chunk. E2EL: request sent -> last content chunk.
- TPOT per request: (E2EL - TTFT) / (output tokens - 1); undefined with fewer than 2 tokens.
- ITL: every gap between consecutive content chunks, pooled over the level's requests.
- Percentiles: numpy's default (linear interpolation between closest ranks), as vLLM uses.
- Goodput: completed requests per second that meet every stated latency target.

Only completed requests enter the latency figures and token totals; errors are counted
(by kind) and enter ``error_rate``, never dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from gekro_ft.errors import BenchError

PERCENTILES = (50, 90, 95, 99)
GOODPUT_METRICS = ("ttft_ms", "tpot_ms", "e2el_ms")
_VLLM_NAMES = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2el": "e2el_ms"}


def tpot(e2el: float | None, ttft: float | None, output_tokens: int | None) -> float | None:
    """Time per output token after the first; None when there is no second token to time."""
    if e2el is None or ttft is None or output_tokens is None or output_tokens < 2:
        return None
    return (e2el - ttft) / (output_tokens - 1)


def summarize(values: Sequence[float]) -> dict[str, float | None]:
    """mean, p50, p90, p95, p99 (and max) of ``values``; all None when there are none."""
    keys = ["mean", *(f"p{p}" for p in PERCENTILES), "max"]
    if len(values) == 0:
        return dict.fromkeys(keys)
    import numpy as np

    a = np.asarray(values, dtype=float)
    figures = [a.mean(), *np.percentile(a, PERCENTILES), a.max()]
    return {k: round(float(v), 4) for k, v in zip(keys, figures)}


def parse_goodput(specs: Iterable[str]) -> dict[str, float]:
    """``ttft_ms=500`` (or vLLM's ``ttft:500``, milliseconds) -> {"ttft_ms": 500.0}."""
    targets: dict[str, float] = {}
    for spec in specs:
        m = re.fullmatch(r"\s*([a-z0-9_]+)\s*[=:]\s*([0-9.eE+-]+)\s*", spec)
        name = m and _VLLM_NAMES.get(m.group(1), m.group(1))
        if not m or name not in GOODPUT_METRICS:
            raise BenchError(f"bad goodput target {spec!r}",
                             hint="write METRIC=MS with METRIC one of " + ", ".join(GOODPUT_METRICS)
                                  + ", e.g. ttft_ms=500")
        targets[name] = limit_ms(m.group(2), f"bad goodput target {spec!r}", BenchError)
    return targets


def limit_ms(raw: str, what: str, error: type[Exception]) -> float:
    """A latency limit: a positive number of ms, else ``error`` saying ``what`` was wrong."""
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise error(f"{what}: the limit must be a positive number of ms")
    return value


def meets_targets(rec: Any, targets: dict[str, float]) -> bool:
    """A completed request within every target. A request with one output token has no
    TPOT and meets any TPOT target (vLLM counts its TPOT as 0); one with no content
    chunk has no TTFT and meets no TTFT target."""
    if not rec.ok:
        return False
    for name, limit_ms in targets.items():
        if name == "tpot_ms":
            value = rec.tpot or 0.0
        else:
            value = rec.ttft if name == "ttft_ms" else rec.e2el
            if value is None:
                return False
        if value * 1000 > limit_ms:
            return False
    return True


def aggregate(records: Sequence[Any], duration_s: float, targets: dict[str, float]) -> dict[str, Any]:
    """One level's figures. ``duration_s``: first request sent -> last response ended."""
    done = [r for r in records if r.ok]
    errors = Counter(r.error or "unknown" for r in records if not r.ok)
    n_in = sum(r.input_tokens or 0 for r in done)
    n_out = sum(r.output_tokens or 0 for r in done)
    per_s = (lambda x: round(x / duration_s, 4) if duration_s > 0 else None)
    ms = (lambda xs: [x * 1000 for x in xs if x is not None])
    sources = {r.tokens_from for r in done if r.tokens_from}
    return {
        "requests": len(records), "completed": len(done), "errors": sum(errors.values()),
        "error_rate": round(sum(errors.values()) / len(records), 6) if records else 0.0,
        "error_kinds": dict(sorted(errors.items())),
        "duration_s": round(duration_s, 4),
        "request_throughput": per_s(len(done)),
        "output_tokens_per_s": per_s(n_out), "total_tokens_per_s": per_s(n_in + n_out),
        "input_tokens": n_in, "output_tokens": n_out,
        "ttft_ms": summarize(ms(r.ttft for r in done)),
        "tpot_ms": summarize(ms(r.tpot for r in done)),
        "itl_ms": summarize(ms(g for r in done for g in r.itl)),
        "e2el_ms": summarize(ms(r.e2el for r in done)),
        "goodput_rps": per_s(sum(meets_targets(r, targets) for r in done)) if targets else None,
        "tokens_from": sources.pop() if len(sources) == 1 else ("mixed" if sources else None),
    }
