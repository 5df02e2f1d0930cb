"""What the whole corpus would cost, and how long it would take, here and on each API:
a sample run through the local model (and through the APIs whose keys are set), extrapolated.

The sample (the first ``sample`` rows) runs as a real batch job; from it come the tokens
per row and the local throughput. The same rows then go to each priced API whose price-table
entry says where to ``ask`` it and whose key variable is set, through the eval's endpoint
provider and its recording (:mod:`gekro_ft.eval.recordings`): an answer recorded before is
replayed without a request, so a rerun costs nothing, and a recording that holds the whole
sample is replayed even with no key set. For a corpus of ``total`` rows:

- tokens: input = total × input tokens per row; output = total × output tokens per row.
  The local figures are counted by the local model's tokenizer; an API's are the ones the
  API reported for the sample rows it answered (``tokens_from: measured``), else assumed
  from the local sample (``tokens_from: local sample``; an API's tokenizer and its answers'
  lengths differ, so these are rougher);
- local wall clock = total ÷ (rows answered ÷ the sample's wall seconds);
- local cost = $ per 1M output tokens at that throughput (:func:`gekro_ft.cost.model.usd_per_1m_output`,
  the machine's $/h from the price table) × output tokens ÷ 10⁶, which is $/h × wall hours;
- an API's cost = :meth:`ApiPrice.bill` of its tokens, at the standard and the batch rates;
- an API's wall clock (standard tier) is bounded by its rate limits for the usage tier:
  minutes = max(rows ÷ requests per minute, (input + output) ÷ tokens per minute,
  output ÷ output tokens per minute where the provider has that limit); the batch tier
  answers each submitted batch within its completion window (24 h), its queue limits are
  not in the price table, so no wall clock is claimed for it;
- × local = the API's cost ÷ the local cost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import Counter
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from gekro_ft import __version__
from gekro_ft.batch.inputs import BatchRow, count_rows, detect_kind, read_batch_rows
from gekro_ft.batch.run import BatchSettings, Progress, run_batch
from gekro_ft.errors import BatchError

SCHEMA_VERSION = 1
DEFAULT_MACHINE = "m7i-large-cpu"
DEFAULT_TIER = "tier-1"


def api_wall_s(rows: float, input_tokens: float, output_tokens: float, limit: Any) -> float:
    """Seconds an API needs for the job at its per-minute limits (the tightest one binds)."""
    minutes = [rows / limit.requests_per_min, (input_tokens + output_tokens) / limit.tokens_per_min]
    if limit.output_tokens_per_min:
        minutes.append(output_tokens / limit.output_tokens_per_min)
    return max(minutes) * 60


def extrapolate(sample: dict[str, Any], total: int, table: Any, machine: str, tier: str,
                apis: list[str] | None = None, api_samples: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every figure of the estimate from the sample's measured figures (the local one, and each
    API's in ``api_samples`` whose ``tokens_from`` is ``measured``) and the price table."""
    from gekro_ft.cost.model import usd_per_1m_output
    from gekro_ft.cost.prices import gpu_hourly

    rows, wall = sample["answered"], sample["wall_s"]
    if not rows or wall <= 0 or not sample["output_tokens"]:
        raise BatchError("the sample produced no answers to measure (see its errors file)")
    in_row, out_row = sample["input_tokens"] / rows, sample["output_tokens"] / rows
    in_total, out_total = total * in_row, total * out_row
    hourly, price_note = gpu_hourly(table, machine)
    tokens_per_s = sample["output_tokens"] / wall
    local_wall = total / (rows / wall)
    local_cost = usd_per_1m_output(hourly, tokens_per_s) * out_total / 1e6
    providers = [{"provider": f"local ({machine})", "tier": "self-hosted", "cost_usd": local_cost,
                  "x_local": 1.0, "wall_s": local_wall, "wall_note": "measured throughput, extrapolated",
                  "tokens_from": "measured", "input_tokens_per_row": in_row, "output_tokens_per_row": out_row}]
    for name in apis or sorted(table.api):
        price = table.api_price(name)
        limit = price.rate_limits.get(tier)
        asked = (api_samples or {}).get(name) or {}
        if asked.get("tokens_from") == "measured":  # the API's own counts for the rows it answered
            tokens = {"tokens_from": "measured", "input_tokens_per_row": asked["input_tokens"] / asked["answered"],
                      "output_tokens_per_row": asked["output_tokens"] / asked["answered"]}
        else:
            tokens = {"tokens_from": "local sample", "input_tokens_per_row": in_row, "output_tokens_per_row": out_row}
        api_in, api_out = total * tokens["input_tokens_per_row"], total * tokens["output_tokens_per_row"]
        standard = price.bill(api_in, api_out)
        providers.append({"provider": name, "tier": "standard", "cost_usd": standard, "x_local": standard / local_cost,
                          "wall_s": api_wall_s(total, api_in, api_out, limit) if limit else None,
                          "wall_note": f"rate limits, {tier}" if limit else f"no {tier} rate limits in the price table",
                          **tokens})
        if price.has_batch:
            batch = price.bill(api_in, api_out, batch=True)
            providers.append({"provider": name, "tier": "batch", "cost_usd": batch, "x_local": batch / local_cost,
                              "wall_s": None, "wall_note": "each batch within the 24 h completion window", **tokens})
    return {"rows": total, "input_tokens_per_row": in_row, "output_tokens_per_row": out_row,
            "input_tokens": in_total, "output_tokens": out_total,
            "local": {"machine": machine, "usd_per_hour": hourly, "price_note": price_note,
                      "output_tokens_per_s": tokens_per_s, "rows_per_s": rows / wall},
            "tier": tier, "providers": providers}


def api_providers(table: Any, names: list[str], s: BatchSettings, recordings: Path) -> dict[str, Any]:
    """The eval's endpoint provider for each named API with an ``ask`` in the price table (its
    recording in ``recordings/NAME/``). A key that may not travel to its address (plain http to
    another machine) fails here, before anything runs."""
    from gekro_ft.eval.providers import make_provider
    from gekro_ft.eval.suite import Endpoint
    from gekro_ft.keys import check_transport

    endpoint = Endpoint(api_key_env=None, concurrency=min(s.concurrency, 256), max_retries=min(s.max_retries, 10))
    found = {}
    for name in names:
        ask = table.api_price(name).ask
        if ask:
            # a folder per entry: two providers serving a model of the same name never share answers
            folder = recordings / "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
            found[name] = provider = make_provider(ask, None, endpoint, folder)
            if provider.key_env and os.environ.get(provider.key_env):
                check_transport(provider.base_url, provider.key_env)
    return found


def _generation(row: BatchRow, s: BatchSettings) -> Any:
    """What the API is asked to generate for ``row``: what the local model was asked (the row's
    own max_tokens, temperature and stop, else the job's defaults)."""
    from pydantic import ValidationError

    from gekro_ft.eval.suite import Generation

    body = row.body or {}
    stop = body.get("stop")
    asked = {"max_tokens": body.get("max_tokens", s.max_tokens), "temperature": body.get("temperature", s.temperature),
             "stop": [stop] if isinstance(stop, str) else stop or [], "seed": None}
    try:
        return Generation.model_validate(asked)
    except ValidationError:  # a row the local engine refused too; asked with the job's defaults
        return Generation(max_tokens=s.max_tokens, temperature=s.temperature, seed=None)


def ask_api(provider: Any, rows: list[BatchRow], s: BatchSettings, progress: Progress) -> dict[str, Any]:
    """The sample's rows sent to one API (answers recorded, or replayed from its recording):
    what it answered and the tokens it reported, or why its tokens are the local sample's."""
    from gekro_ft.errors import ProviderError
    from gekro_ft.keys import public_url

    groups: dict[str, tuple[Any, list[BatchRow]]] = {}
    for row in rows:  # one call per distinct generation setting (an OpenAI batch row may carry its own)
        gen = _generation(row, s)
        groups.setdefault(gen.model_dump_json(), (gen, []))[1].append(row)
    doc: dict[str, Any] = {"ask": provider.label, "base_url": public_url(provider.base_url),
                           "api_key_env": provider.key_env, "recording": str(provider.recording.path),
                           "rows": len(rows)}
    if not (provider.key_env and os.environ.get(provider.key_env)) and not len(provider.recording):
        return {**doc, "tokens_from": "local sample", "requests_sent": 0,
                "why": f"{provider.key_env or 'its key variable'} is not set and nothing is recorded"}
    answers = []
    with progress(f"sample on {provider.label}", len(rows)) as advance:
        step = (lambda n: advance(n, 0)) if advance else None
        try:
            for gen, group in groups.values():
                answers += provider.generate_messages([r.body["messages"] for r in group], gen, step)
        except ProviderError as e:  # no key, and the recording does not hold the whole sample
            return {**doc, "tokens_from": "local sample", "why": str(e), "requests_sent": provider.requests_sent}
    counted = [a for a in answers if a.error is None and a.input_tokens is not None and a.output_tokens is not None]
    failed = [a for a in answers if a.error is not None]
    doc |= {"answered": len(counted), "failed": len(failed),
            "errors_by_kind": dict(Counter(a.error_kind or "error" for a in failed)),
            "from_recording": sum(a.cached for a in answers), "requests_sent": provider.requests_sent,
            "input_tokens": sum(a.input_tokens for a in counted), "output_tokens": sum(a.output_tokens for a in counted)}
    if counted:
        return {**doc, "tokens_from": "measured", "why": None}
    why = failed[0].error if failed else "the API reported no token usage"
    return {**doc, "tokens_from": "local sample", "why": f"no answer with token counts: {why}"}


def estimate_batch(s: BatchSettings, sample: int = 50, total: int | None = None, *, out_dir: Path,
                   prices: Path | None = None, machine: str = DEFAULT_MACHINE, tier: str = DEFAULT_TIER,
                   apis: list[str] | None = None, ask_apis: bool = True, recordings: Path | None = None,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Run the first ``sample`` rows, then (``ask_apis``) send them to each API whose key is set,
    recorded in ``recordings`` (default ``out_dir/recordings``), extrapolate to ``total`` rows
    (default: all the input's), write estimate.json/.md/.html with its plot to ``out_dir``;
    returns the document."""
    from gekro_ft.cost.prices import load_prices

    table = load_prices(prices)
    table.gpu_price(machine)  # a wrong name fails before the sample runs
    for name in apis or []:
        table.api_price(name)
    recordings = Path(recordings) if recordings else Path(out_dir) / "recordings"
    providers = api_providers(table, apis or sorted(table.api), s, recordings) if ask_apis else {}
    progress = progress or (lambda label, total: contextlib.nullcontext())
    kind = s.input_kind or detect_kind(s.input)
    total = total or count_rows(s.input, kind, s.schema)
    sample_out = Path(out_dir) / "sample.jsonl"
    # measured now, never resumed: an earlier sample's answers would make this one look instant
    for stale in (sample_out, sample_out.with_name("sample.errors.jsonl")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(Path(out_dir) / "sample.report", ignore_errors=True)
    started = time.time()
    run = run_batch(replace(s, output=sample_out, limit=sample, input_kind=kind,
                            report_dir=Path(out_dir) / "sample.report"), progress)
    measured = {k: run["this_run"][k] for k in ("answered", "failed", "wall_s", "input_tokens", "output_tokens")}
    rows = [r for r in islice(read_batch_rows(s.input, kind, s.schema), sample) if r.error is None]
    api_samples = {name: ask_api(provider, rows, s, progress) for name, provider in providers.items()}
    doc = {"schema_version": SCHEMA_VERSION, "kind": "batch-estimate",
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
           "gekro_ft_version": __version__, "model": run["model"], "engine": run["engine"],
           "input": run["input"] | {"rows": total}, "sample": {"rows": sample, **measured,
                                                              "answers": str(sample_out)},
           "api_samples": api_samples,
           "prices": table.sources, **extrapolate(measured, total, table, machine, tier, apis, api_samples)}
    from gekro_ft.batch.report import write_estimate_report
    from gekro_ft.batch.tracking import maybe_log

    paths = write_estimate_report(doc, out_dir)
    doc["mlflow"] = maybe_log("estimate", doc, list(paths.values()))
    if doc["mlflow"]:
        write_estimate_report(doc, out_dir)
    return doc
