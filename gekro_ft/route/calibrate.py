"""Calibrating the router on the team's own eval set.

The suite's examples go through both upstreams: the local one asked for token
log-probabilities (answers recorded, replayed on a rerun), the frontier through the eval's
own providers (``openai:MODEL``, a URL, or ``recording:FILE``; recorded and replayed as the
eval does). Each example gets its local answer's confidence scores, the suite's checks
(its ``json_valid`` / ``json_schema`` metrics) and both answers' per-example metric rows.

A policy is (checks on or off, score, threshold): an example escalates when a check fails
(checks on) or its score is below the threshold. For each score, the thresholds worth trying
are the midpoints between consecutive distinct values (anywhere between two values splits
the examples alike; the midpoint leaves new answers the widest margin), plus ``-inf`` (checks
only; ``null`` in the report, as is the score of an answer without tokens, which is ``-inf``)
and ``0`` (everything: a log-probability is never above 0). At each
point, with E the escalated examples:

- quality = the suite's aggregates over the blended rows (the frontier's row for i in E,
  the local row otherwise), so corpus-level metrics (macro-F1) blend correctly;
- cost = Σ_all local output tokens × local $/token (the local model answers first, every
  time) + Σ_{i∈E} the frontier's bill for example i (price table: ``ApiPrice.bill``);
- $ per 1M output tokens = cost ÷ the output tokens delivered (local for i∉E, frontier for
  i∈E) × 10⁶; per 1M useful output tokens = that ÷ the success rate.

Frontier-only (everything to the frontier, no local cost) and local-only are the reference
points. The chosen policy is the cheapest whose ``metric >= frontier_only.metric - margin``
(ties: the fewer escalations); the saving is (frontier-only − chosen) cost per request × the
stated monthly volume. Every figure is recomputable from the report's per-example rows.

That choice is *in sample*: the threshold was picked on the very examples it is scored on, so
its figures flatter it. The figures to decide on are *out of sample* (:func:`cross_validate`):
k folds (default 5, seeded), each fold routed by the policy chosen on the others, scored as one
blend, with seeded paired-bootstrap intervals (:mod:`gekro_ft.intervals`) on the quality, its
difference from the frontier alone, the cost and the saving. The profile written is the policy
chosen on all examples; the out-of-sample figures say what to expect of it on new traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gekro_ft.errors import RouteError
from gekro_ft.eval.metrics import JsonSchemaValid, JsonValid, Metric, aggregate_names, score
from gekro_ft.eval.recordings import Recording, request_key
from gekro_ft.eval.suite import Suite
from gekro_ft.eval.uncertainty import aggregate
from gekro_ft.intervals import CONFIDENCE, RESAMPLES, bootstrap
from gekro_ft.route import LOCAL_TIMEOUT_S
from gekro_ft.route.checks import CheckSet
from gekro_ft.route.confidence import scores as confidence_scores
from gekro_ft.route.profile import CONFIDENCE_SCORES

if TYPE_CHECKING:
    from gekro_ft.eval.runner import Progress

SCHEMA_VERSION = 1


@dataclass
class LocalAnswer:
    text: str
    input_tokens: int
    output_tokens: int
    logprobs: list[dict[str, Any]]


async def _local_answers(url: str, model: str, prompts: list[list[dict]], settings: dict[str, Any],
                         recording: Recording, concurrency: int, timeout_s: float,
                         step: Any = None) -> list[LocalAnswer]:
    """The local answers with their token log-probabilities, each recorded as it arrives; a
    failure does not stop the others, so a rerun asks only for what is still missing."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    keyed = {**settings, "logprobs": True}

    async def one(client: httpx.AsyncClient, messages: list[dict]) -> LocalAnswer:
        key = request_key(model, messages, keyed)
        rec = recording.get(key)
        if rec is None:
            async with gate:
                try:
                    r = await client.post("/chat/completions", json={
                        "model": model, "messages": messages, "max_tokens": settings["max_tokens"],
                        "temperature": settings["temperature"], "stop": settings["stop"] or None,
                        "seed": settings["seed"], "logprobs": True})
                except httpx.TimeoutException:
                    raise RouteError(f"timed out after {timeout_s:g} s (raise it with --timeout)") from None
                except httpx.HTTPError as e:
                    raise RouteError(f"{type(e).__name__}") from None
            if r.status_code != 200:
                raise RouteError(f"HTTP {r.status_code}: {r.text[:200]}")
            body = r.json()
            lp = (body["choices"][0].get("logprobs") or {}).get("content")
            if lp is None:
                raise RouteError("no logprobs in the answer (serve with the CPU engine or vLLM, which return them)")
            rec = {"model": model, "text": body["choices"][0]["message"]["content"] or "",
                   "input_tokens": body["usage"]["prompt_tokens"], "output_tokens": body["usage"]["completion_tokens"],
                   "logprobs": [{"token": e["token"], "logprob": e["logprob"]} for e in lp]}
            recording.put(key, rec)
        if step is not None:
            step(1)
        return LocalAnswer(rec["text"], rec["input_tokens"], rec["output_tokens"], rec["logprobs"])

    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout_s) as client:
        done = await asyncio.gather(*(one(client, p) for p in prompts), return_exceptions=True)
    failed = [d for d in done if isinstance(d, BaseException)]
    if failed:
        unexpected = [d for d in failed if not isinstance(d, RouteError)]
        if unexpected:
            raise unexpected[0]
        raise RouteError(f"the local upstream {url} failed on {len(failed)} of {len(prompts)} examples "
                         f"(first: {failed[0]}); the {len(prompts) - len(failed)} answered are recorded in "
                         f"{recording.path}, and a rerun asks only for the rest")
    return [d for d in done if isinstance(d, LocalAnswer)]


def suite_checks(suite: Suite) -> CheckSet:
    """The suite's own JSON checks (json_valid, json_schema), as the router runs them."""
    return CheckSet([m for m in suite.metrics if isinstance(m, (JsonValid, JsonSchemaValid))], None, [])


@dataclass
class Blend:
    """Everything a policy's figures are computed from: per example, its confidence scores and
    checks, both upstreams' metric rows and token counts (``examples`` as route.json keeps them)."""

    metrics: list[Metric]
    success: tuple[str, float]
    examples: list[dict[str, Any]]
    local_rows: list[dict]
    frontier_rows: list[dict]
    local_per_token: float

    def point(self, escalated: set[int], local_runs: bool, idx: Sequence[int] | None = None,
              **label: Any) -> dict[str, Any]:
        """The figures of answering ``idx`` (default: every example; repeats count again, as a
        bootstrap draw needs) with the frontier for those in ``escalated``."""
        idx = range(len(self.examples)) if idx is None else idx
        n = len(idx)
        rows = [self.frontier_rows[i] if i in escalated else self.local_rows[i] for i in idx]
        quality = aggregate(self.metrics, self.success, rows)
        ex = self.examples
        local_usd = sum(ex[i]["local"]["output_tokens"] for i in idx) * self.local_per_token if local_runs else 0.0
        frontier_usd = sum(ex[i]["frontier"]["usd"] for i in idx if i in escalated)
        delivered = sum(ex[i]["frontier" if i in escalated else "local"]["output_tokens"] for i in idx)
        usd = local_usd + frontier_usd
        per_1m = usd / delivered * 1e6 if delivered else None
        n_escalated = sum(1 for i in idx if i in escalated)
        return {**label, "escalated": n_escalated, "escalation_rate": n_escalated / n, "quality": quality,
                "local_usd": local_usd, "frontier_usd": frontier_usd, "usd": usd, "usd_per_request": usd / n,
                "output_tokens": delivered, "usd_per_1m_output_tokens": per_1m,
                "usd_per_1m_useful_output_tokens": per_1m / quality["success_rate"]
                if per_1m is not None and quality["success_rate"] else None}


def escalated_by(policy: dict[str, Any], examples: list[dict[str, Any]], idx: Sequence[int]) -> set[int]:
    """The examples of ``idx`` that ``policy`` (checks, score, threshold) sends to the frontier,
    decided as :func:`gekro_ft.route.policy.after_answer` decides a served request."""
    threshold = -math.inf if policy["threshold"] is None else policy["threshold"]
    return {i for i in idx if (policy["checks"] and examples[i]["failed_checks"])
            or (policy["score"] is not None and examples[i]["scores"][policy["score"]] < threshold)}


def sweep(blend: Blend, idx: Sequence[int] | None = None) -> dict[str, Any]:
    """Every point of the curve over ``idx`` (default: all examples) and the two reference points
    (see the module docstring)."""
    idx = list(range(len(blend.examples))) if idx is None else list(idx)
    examples = blend.examples
    curve = []
    for checks in (True, False):  # a check that escalates good answers is worth leaving out
        for name in CONFIDENCE_SCORES:
            values = sorted({examples[i]["scores"][name] for i in idx if math.isfinite(examples[i]["scores"][name])})
            # midway between neighbours: the same split of these examples as the values
            # themselves, and the widest berth for a new answer's score on either side
            for t in [-math.inf, *((a + b) / 2 for a, b in zip(values, values[1:])), 0.0]:
                # -inf (no confidence part) is stored as null: JSON has no infinity
                policy = {"checks": checks, "score": name, "threshold": None if t == -math.inf else t}
                curve.append(blend.point(escalated_by(policy, examples, idx), True, idx, **policy))
    everything = set(idx)
    return {"curve": curve,
            "frontier_only": blend.point(everything, False, idx, checks=False, score=None, threshold=None),
            "local_only": blend.point(set(), True, idx, checks=False, score=None, threshold=None)}


def choose(result: dict[str, Any], metric: str, margin: float) -> dict[str, Any] | None:
    """The cheapest point whose ``metric`` is within ``margin`` of frontier-only (fewer escalations on a tie)."""
    floor = result["frontier_only"]["quality"][metric] - margin
    ok = [p for p in result["curve"] if p["quality"][metric] >= floor - 1e-12]
    return min(ok, key=lambda p: (p["usd"], p["escalated"])) if ok else None


def folds_of(n: int, k: int, seed: int) -> list[list[int]]:
    """``k`` folds of the ``n`` examples, a seeded shuffle dealt round-robin (sizes differ by 1 at most)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n).tolist()
    return [sorted(order[f::k]) for f in range(k)]


def cross_validate(blend: Blend, metric: str, margin: float, *, k: int = 5, seed: int = 0,
                   resamples: int = RESAMPLES, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Out-of-sample figures: each fold's examples are routed by the policy chosen on the other
    folds (a fold where no policy keeps the margin sends all its examples to the frontier, what a
    careful operator would do), and the whole set of held-out decisions is then scored as one
    blend. Intervals: a seeded paired bootstrap over the examples, the router and the frontier
    alone resampled together, so the difference and the saving carry their own uncertainty."""
    n = len(blend.examples)
    if not 2 <= k <= n:
        raise RouteError(f"cross-validation needs 2 <= folds <= examples; got {k} folds for {n} examples")
    escalated: set[int] = set()
    per_fold = []
    for f, held_out in enumerate(folds_of(n, k, seed)):
        held = set(held_out)
        train = [i for i in range(n) if i not in held]
        policy = choose(sweep(blend, train), metric, margin)
        rule = {key: policy[key] for key in ("checks", "score", "threshold")} if policy else None
        sent = held if rule is None else escalated_by(rule, blend.examples, held_out)
        escalated |= sent
        per_fold.append({"fold": f, "examples": len(held_out), "policy": rule, "escalated": len(sent)})
    everything = set(range(n))

    def figures(idx: Sequence[int]) -> dict[str, float]:
        routed = blend.point(escalated, True, idx)
        alone = blend.point(everything, False, idx)
        frontier_usd = alone["usd_per_request"]
        return {metric: routed["quality"][metric], "frontier_" + metric: alone["quality"][metric],
                "delta_" + metric: routed["quality"][metric] - alone["quality"][metric],
                "usd_per_request": routed["usd_per_request"], "escalation_rate": routed["escalation_rate"],
                "saving_share": 1 - routed["usd_per_request"] / frontier_usd if frontier_usd else math.nan}

    intervals = bootstrap(n, figures, resamples=resamples, seed=seed, confidence=confidence)
    point = blend.point(escalated, True)
    return {"folds": k, "seed": seed, "per_fold": per_fold, "point": point,
            "escalated_ids": [blend.examples[i]["id"] for i in sorted(escalated)],
            "intervals": {name: iv.to_dict() for name, iv in intervals.items()},
            "within_margin": intervals["delta_" + metric].point >= -margin - 1e-12,
            "resamples": resamples, "confidence": confidence}


def calibrate(suite: Suite, *, local_url: str, local_model: str, frontier: str, frontier_model: str | None,
              frontier_price: str | None, out_dir: Path, metric: str | None = None, margin: float = 0.02,
              local_usd_per_1m_output: float, local_cost_basis: str, requests_per_month: float = 1e6,
              prices: Path | None = None, progress: Progress | None = None,
              timeout_s: float = LOCAL_TIMEOUT_S, concurrency: int | None = None, folds: int = 5,
              seed: int = 0) -> dict[str, Any]:
    """Run the suite through both upstreams, sweep, choose in sample and cross-validate out of
    sample; returns the report document. ``timeout_s`` and ``concurrency`` (default: the suite's
    endpoint concurrency) apply to the local upstream, ``folds``/``seed`` to the cross-validation
    and its bootstrap."""
    from gekro_ft.cost.prices import load_prices
    from gekro_ft.eval.providers import make_provider
    from gekro_ft.eval.runner import load_examples

    examples = load_examples(suite)
    if not examples:
        raise RouteError(f"{suite.source}: no examples to calibrate on")
    metric = metric or _gate_metric(suite)
    prompts = [e.conv.prompt_messages() for e in examples]
    settings = suite.generation.model_dump()
    recordings = Path(out_dir) / "recordings"
    progress = progress or (lambda label, total: contextlib.nullcontext())
    with progress(f"local: {local_model}", len(prompts)) as step:
        local = asyncio.run(_local_answers(local_url, local_model, prompts, settings,
                                           Recording(recordings / f"local-{_safe(local_model)}.jsonl"),
                                           concurrency or suite.endpoint.concurrency, timeout_s, step))
    provider = make_provider(frontier, frontier_model, suite.endpoint, recordings)
    with progress(f"frontier: {provider.describe()['spec']}", len(examples)) as step:
        remote = provider.generate([e.conv for e in examples], suite.generation, step)
    failed = [i for i, a in enumerate(remote) if a.error]
    if failed:
        raise RouteError(f"the frontier failed on {len(failed)} of {len(remote)} examples "
                         f"(first: {remote[failed[0]].error})")
    price_name = frontier_price or getattr(provider, "model", None) or frontier_model
    if not price_name:
        raise RouteError(f"{frontier}: name the price-table entry it is billed as (--frontier-price), "
                         "e.g. the API a reference frontier simulates")
    price = load_prices(prices).api_price(price_name)
    refs = [e.reference for e in examples]
    local_rows, _ = score(suite.metrics, [a.text for a in local], refs)
    frontier_rows, _ = score(suite.metrics, [a.text or "" for a in remote], refs)
    checks = suite_checks(suite)
    per_example = []
    for ex, la, fa in zip(examples, local, remote):
        n_in, n_out = fa.input_tokens or 0, fa.output_tokens or 0
        per_example.append({
            "id": ex.id, "failed_checks": checks.failures(la.text), "scores": confidence_scores(la.logprobs),
            "local": {"output_tokens": la.output_tokens, "input_tokens": la.input_tokens},
            "frontier": {"input_tokens": n_in, "output_tokens": n_out, "usd": price.bill(n_in, n_out)}})
    blend = Blend(suite.metrics, (suite.success.metric, suite.success.threshold), per_example,
                  local_rows, frontier_rows, local_usd_per_1m_output / 1e6)
    result = sweep(blend)
    chosen = choose(result, metric, margin)
    out_of_sample = cross_validate(blend, metric, margin, k=min(folds, len(examples)), seed=seed)
    saving = None
    if chosen is not None:
        per_request = result["frontier_only"]["usd_per_request"] - chosen["usd_per_request"]
        saving = {"usd_per_request": per_request, "requests_per_month": requests_per_month,
                  "usd_per_month": per_request * requests_per_month,
                  "share_of_frontier_bill": per_request / result["frontier_only"]["usd_per_request"]
                  if result["frontier_only"]["usd_per_request"] else None}
    keep = [metric, suite.success.metric]
    for row_set, name in ((local_rows, "local"), (frontier_rows, "frontier")):
        for ex, row in zip(per_example, row_set):
            ex[name]["metrics"] = {k: row[k] for k in keep if k in row}
    return {
        "schema_version": SCHEMA_VERSION,
        "inputs": {"suite": suite.name, "suite_file": str(suite.source), "examples": len(examples),
                   "generation": settings, "local": {"url": local_url, "model": local_model},
                   "frontier": provider.describe(), "frontier_price": {
                       "name": price_name, "input_per_m": price.input_per_m, "output_per_m": price.output_per_m,
                       "as_of": str(price.as_of), "source": price.source},
                   "local_usd_per_1m_output_tokens": local_usd_per_1m_output, "local_cost_basis": local_cost_basis,
                   "metric": metric, "margin": margin, "success": suite.success.model_dump(),
                   "metrics": [m.model_dump() for m in suite.metrics], "requests_per_month": requests_per_month,
                   "folds": out_of_sample["folds"], "seed": seed},
        "per_example": per_example,
        "out_of_sample": out_of_sample,
        "local_only": result["local_only"], "frontier_only": result["frontier_only"],
        "curve": result["curve"], "chosen": chosen, "saving": saving,
    }


def _gate_metric(suite: Suite) -> str:
    """The first aggregate the suite's gate compares the sides on (field_f1 for the ticket suite)."""
    used = suite.gate.metric_names()
    names = [n for n in aggregate_names(suite.metrics) if n in used]
    text = suite.gate.text
    return min(names, key=lambda n: text.find(n)) if names else suite.success.metric  # first as written


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def local_cost(*, gpu: str | None, tokens_per_s: float | None, bench: Path | None,
               usd_per_1m: float | None, prices: Path | None) -> tuple[float, str]:
    """The local $ per 1M output tokens and where it comes from: stated, or the cost model at full
    load from a price-table machine and a throughput (measured by a bench, else stated)."""
    from gekro_ft.cost.model import usd_per_1m_output
    from gekro_ft.cost.prices import gpu_hourly, load_prices

    if usd_per_1m is not None:
        return usd_per_1m, "stated with --local-usd-per-1m"
    if gpu is None:
        raise RouteError("price the local side: --local-gpu NAME with --bench bench.json or --local-tokens-per-s, "
                         "or --local-usd-per-1m")
    hourly, note = gpu_hourly(load_prices(prices), gpu)
    source = "stated"
    if bench is not None:
        from gekro_ft.cost.report import fastest_clean_level, read_bench

        level = fastest_clean_level(read_bench(bench)["levels"])
        if level is None:
            raise RouteError(f"{bench}: no bench level finished without errors")
        tokens_per_s, source = level["output_tokens_per_s"], f"measured by gekro-ft bench ({bench})"
    if not tokens_per_s:
        raise RouteError("give the local throughput: --bench bench.json or --local-tokens-per-s")
    return (usd_per_1m_output(hourly, tokens_per_s),
            f"{gpu} ({note}), {tokens_per_s:,.1f} output tokens/s {source}, full load")


def run_calibration(suite_name: str, *, local_url: str, local_model: str, frontier: str,
                    frontier_model: str | None, frontier_price: str | None, out_dir: Path,
                    metric: str | None, margin: float, local_gpu: str | None, local_tokens_per_s: float | None,
                    bench: Path | None, local_usd_per_1m: float | None, requests_per_month: float,
                    prices: Path | None, limit: int | None = None, progress: Progress | None = None,
                    timeout_s: float = LOCAL_TIMEOUT_S, concurrency: int | None = None, folds: int = 5,
                    seed: int = 0) -> tuple[dict[str, Any], dict[str, Path]]:
    """Calibrate on a suite (its first ``limit`` examples) and write the report and the chosen
    profile into ``out_dir``."""
    from gekro_ft.eval.suite import load_suite
    from gekro_ft.route.report import write_calibration

    suite = load_suite(suite_name)
    if limit is not None:
        suite = suite.model_copy(update={"limit": limit})
    if metric is not None and metric not in [*aggregate_names(suite.metrics), "success_rate"]:
        raise RouteError(f"--metric {metric!r} is not an aggregate of {suite.name}'s metrics "
                         f"({', '.join(aggregate_names(suite.metrics))})")
    per_1m, basis = local_cost(gpu=local_gpu, tokens_per_s=local_tokens_per_s, bench=bench,
                               usd_per_1m=local_usd_per_1m, prices=prices)
    doc = calibrate(suite, local_url=local_url, local_model=local_model, frontier=frontier,
                    frontier_model=frontier_model, frontier_price=frontier_price, out_dir=out_dir, metric=metric,
                    margin=margin, local_usd_per_1m_output=per_1m, local_cost_basis=basis,
                    requests_per_month=requests_per_month, prices=prices, progress=progress,
                    timeout_s=timeout_s, concurrency=concurrency, folds=folds, seed=seed)
    checks = {}
    for m in (suite_checks(suite).metrics if doc["chosen"] and doc["chosen"]["checks"] else []):
        if isinstance(m, JsonValid):
            checks["json_valid"] = True
        else:
            checks["schema"] = m.schema_ if isinstance(m.schema_, dict) else str(suite.base_dir / m.schema_)
    # a recording stands in for an API during calibration; the profile serves the API it priced
    frontier_url = (frontier if frontier.startswith(("openai:", "http", "reference:"))
                    else f"openai:{doc['inputs']['frontier_price']['name']}")
    paths = write_calibration(doc, out_dir, checks=checks, frontier_url=frontier_url, frontier_model=frontier_model)
    return doc, paths
