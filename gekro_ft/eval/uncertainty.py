"""How sure an eval is: seeded paired-bootstrap intervals on every aggregate, on the paired
difference candidate − baseline, and on each comparison of the gate.

The resample is over the examples **both sides answered** (with no baseline, the candidate's
answered examples): a failed request has no score to resample, and failures already decide
the verdict through ``max_error_rate``, so ``error_rate`` gets no interval. Each draw
re-aggregates the drawn per-example rows with each metric's own ``aggregate``, so a
corpus-level aggregate (classification's macro-F1) is resampled as it is computed, and the
two sides are drawn through the same indices (paired): ``delta.NAME`` is the difference of
the two aggregates on the same drawn examples.

The gate's comparisons get intervals too: each draw evaluates the gate on that draw's
aggregates and keeps left − right of every comparison, so any expression (``candidate.x >=
baseline.x - 0.02``, a ratio, a chain) has the uncertainty of its own difference. A
comparison whose difference interval straddles 0 is **unresolved**: on these examples it could
have gone either way. :func:`resolution_notes` says so, with the examples a resolving
interval would take, estimated from the 1/√n narrowing of a bootstrap interval.
"""

from __future__ import annotations

import math
from typing import Any

from gekro_ft.errors import GateError
from gekro_ft.eval.gate import Gate
from gekro_ft.eval.metrics import Metric, success_rate
from gekro_ft.intervals import bootstrap

EPSILON = 1e-9  # sums of per-example scores leave ~1e-16 of rounding where a bound is exactly 0


def aggregate(metrics: list[Metric], success: tuple[str, float], rows: list[dict]) -> dict[str, float]:
    """The suite's aggregates over ``rows`` (as the runner computes them), ``success_rate`` included."""
    out: dict[str, float] = {}
    for m in metrics:
        out.update(m.aggregate(rows))
    out["success_rate"] = success_rate(rows, *success)
    return out


def paired_intervals(metrics: list[Metric], success: tuple[str, float], gate: Gate,
                     candidate: list[dict | None], baseline: list[dict | None] | None, *,
                     resamples: int, seed: int, confidence: float) -> dict[str, Any] | None:
    """Intervals per side, for the difference and for each gate comparison (see the module doc);
    None when no example can be resampled. ``candidate``/``baseline`` are per-example score
    rows in example order, None where that side failed."""
    both = [i for i, row in enumerate(candidate)
            if row is not None and (baseline is None or baseline[i] is not None)]
    if not both:
        return None

    def figures(idx: list[int] | range) -> dict[str, float]:
        picked = [both[j] for j in idx]
        cand = aggregate(metrics, success, [candidate[i] for i in picked])
        out = {f"candidate.{k}": v for k, v in cand.items()}
        base = None
        if baseline is not None:
            base = aggregate(metrics, success, [baseline[i] for i in picked])
            out |= {f"baseline.{k}": v for k, v in base.items()}
            out |= {f"delta.{k}": cand[k] - base[k] for k in cand if k in base}
        try:
            verdict = gate.evaluate(cand, base, bounds_as_points=True)
        except GateError:  # a draw the gate cannot be decided on (a division by zero) counts as no draw
            return out
        return out | {f"gate.{n}": c.left - c.right for n, c in enumerate(verdict.comparisons)}

    drawn = bootstrap(len(both), figures, resamples=resamples, seed=seed, confidence=confidence)
    table: dict[str, Any] = {"candidate": {}, "baseline": {}, "delta": {}, "comparisons": {}}
    for key, iv in drawn.items():
        ref, name = key.split(".", 1)
        table["comparisons" if ref == "gate" else ref][name] = iv.to_dict()
    comparisons = [table["comparisons"][str(n)] for n in range(len(table["comparisons"]))]
    return {"n": len(both), "examples": both, "resamples": resamples, "seed": seed, "confidence": confidence,
            "candidate": table["candidate"], "baseline": table["baseline"] if baseline is not None else None,
            "delta": table["delta"] if baseline is not None else None, "comparisons": comparisons}


def bounds(intervals: dict[str, Any] | None) -> dict[str, dict[str, dict[str, float]]]:
    """What ``Gate.evaluate`` reads ``REF.NAME.lo/.hi`` from."""
    if not intervals:
        return {}
    return {ref: intervals[ref] for ref in ("candidate", "baseline", "delta") if intervals.get(ref)}


def resolution_notes(comparisons: list[dict[str, Any]], intervals: dict[str, Any] | None) -> list[str]:
    """A note for each comparison (without bounds of its own) whose left − right interval
    straddles 0: how well it is known, and about how many examples would resolve it."""
    if not intervals:
        return []
    notes = []
    n, pct = intervals["n"], f"{intervals['confidence']:.0%}"
    for comparison, iv in zip(comparisons, intervals["comparisons"]):
        # strictly on both sides of 0: a bound at 0 (up to rounding) still decides the same way
        if comparison.get("bounded") or iv is None or not (iv["lo"] < -EPSILON and iv["hi"] > EPSILON):
            continue
        distance, half = abs(iv["point"]), (iv["hi"] - iv["lo"]) / 2
        needed = (f"about {math.ceil(n * (half / distance) ** 2):,} examples would resolve a difference "
                  f"of {distance:.3g} (an estimate: intervals narrow as 1/√n)" if distance > 0
                  else "no sample size resolves a difference of exactly 0")
        notes.append(f"`{comparison['text']}` is not resolved by {n} examples: its two sides differ by "
                     f"{iv['point']:+.3g}, known to ±{half:.3g} ({pct} interval {iv['lo']:+.3g} to "
                     f"{iv['hi']:+.3g}), so it could have gone either way; {needed}. A gate on bounds "
                     f"(`delta.NAME.lo`) decides with the uncertainty included.")
    return notes
