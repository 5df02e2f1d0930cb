"""``gekro-ft bench``: drive an OpenAI-compatible endpoint and measure throughput and latency."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out, print_json
from gekro_ft.data.schemas import NAMES
from gekro_ft.models import DEFAULT_MODEL


class _NumberList(click.ParamType):
    """``1,4,16`` -> [1, 4, 16]."""

    def __init__(self, kind: type):
        self.kind = kind
        self.name = f"{kind.__name__}[,{kind.__name__}...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            values = [self.kind(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.kind.__name__} numbers", param, ctx)
        if not values:
            self.fail("give at least one value", param, ctx)
        return values


@click.command()
@click.option("--url", "-u", required=True, help="The server: http://HOST:PORT or http://HOST:PORT/v1.")
@click.option("--model", "-m", required=True, help="The model to ask for: a name from the server's /v1/models.")
@click.option("--prompts", "-p", type=click.Path(dir_okay=True, path_type=Path),
              help="Prompts from a dataset file in any schema `gekro-ft data` reads; each row's "
                   "conversation up to its last assistant turn.")
@click.option("--schema", type=click.Choice(NAMES), help="Schema of --prompts (default: each row's own).")
@click.option("--synthetic-input-tokens", type=click.IntRange(min=1), metavar="N",
              help="Instead of --prompts: seeded synthetic prompts of N common words, each one token "
                   "in the usual BPE vocabularies: about N tokens.")
@click.option("--endpoint", type=click.Choice(["chat", "completions"]), default="chat", show_default=True,
              help="/v1/chat/completions or /v1/completions (prompts rendered with --tokenizer's chat template).")
@click.option("--concurrency", "-c", type=_NumberList(int),
              help="Concurrency levels to sweep, e.g. 1,4,16: requests in flight, back to back. [default: 1]")
@click.option("--rate", "-r", "rates", type=_NumberList(float),
              help="Instead of --concurrency: open-loop arrival rates to sweep, requests/s, e.g. 0.5,1,2.")
@click.option("--arrival", type=click.Choice(["poisson", "constant"]), default="poisson", show_default=True,
              help="With --rate: Poisson (seeded) or evenly spaced arrivals.")
@click.option("--max-concurrency", type=click.IntRange(min=1),
              help="With --rate: at most this many requests in flight.")
@click.option("--requests", "-n", type=click.IntRange(min=1), help="Requests per level. [default: 50]")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Instead of --requests: start requests for this long per level.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="max_tokens of every request.")
@click.option("--ignore-eos", is_flag=True, help="Ask the server (vLLM) to generate all max_tokens.")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help="Requests sent first and left out of the figures.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True,
              metavar="SECONDS", help="Per request, whole stream; a request past it counts as an error.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="For synthetic prompts and Poisson arrivals.")
@click.option("--goodput", multiple=True, metavar="METRIC=MS",
              help="A latency target for goodput, repeatable: ttft_ms=500, tpot_ms=50, e2el_ms=5000 "
                   "(vLLM's ttft:500 also works).")
@click.option("--tokenizer", default=DEFAULT_MODEL, show_default=True,
              help="Counts tokens when the server sends no usage.")
@click.option("--api-key-env", metavar="VAR",
              help="Environment variable holding the server's API key, sent to --url (never over "
                   "plain http:// to another machine). [default: OPENAI_API_KEY, sent to "
                   "api.openai.com only]")
@click.option("--engine", help="Engine name for the report when /v1/models does not say (vllm, cpu...).")
@click.option("--gpu", help="The server's GPU when it is not this machine's, e.g. 'H100 80GB'.")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for bench.json, requests.jsonl, bench.md, bench.html and bench.png.")
@click.option("--json", "as_json", is_flag=True, help="Print bench.json instead of the table.")
def bench(url: str, model: str, prompts: Path | None, schema: str | None, synthetic_input_tokens: int | None,
          endpoint: str, concurrency: list[int] | None, rates: list[float] | None, arrival: str,
          max_concurrency: int | None, requests: int | None, duration: float | None, max_tokens: int,
          ignore_eos: bool, warmup: int, timeout: float, temperature: float, seed: int,
          goodput: tuple[str, ...], tokenizer: str, api_key_env: str | None, engine: str | None,
          gpu: str | None, out_dir: Path, as_json: bool) -> None:
    """Measure throughput and latency (TTFT, TPOT, ITL, E2EL, goodput) of an OpenAI-compatible
    endpoint, streaming every request; write bench.json and a report to --out.

    Logs an MLflow run (experiment gekro-ft-bench) when MLFLOW_TRACKING_URI is set.

    \b
    Examples, against `gekro-ft serve --engine cpu` running in another terminal:
      gekro-ft bench --url http://127.0.0.1:8000 --model smollm2-135m-instruct \\
        --prompts datasets/ticket-extraction/openai.jsonl \\
        --concurrency 1,4,8 --requests 16 --max-tokens 32 --goodput ttft_ms=2000 --out work/bench
      gekro-ft bench --url http://127.0.0.1:8000 --model smollm2-135m-instruct \\
        --synthetic-input-tokens 200 --rate 0.5,1 --duration 30 --max-tokens 32 --out work/bench-rate
    """
    from gekro_ft.bench.loadgen import run_bench
    from gekro_ft.bench.settings import DEFAULT_REQUESTS, BenchSettings
    from gekro_ft.bench.stats import parse_goodput

    if concurrency and rates:
        raise click.UsageError("give --concurrency (closed loop) or --rate (open loop), not both")
    if requests is not None and duration is not None:
        raise click.UsageError("give --requests or --duration, not both")
    if max_concurrency is not None and not rates:
        raise click.UsageError("--max-concurrency caps a --rate run; for a closed loop use --concurrency")
    settings = BenchSettings(
        url=url, model=model, out_dir=out_dir, prompts=prompts, schema=schema,
        synthetic_input_tokens=synthetic_input_tokens, endpoint=endpoint, concurrency=concurrency or [1],
        rates=rates, arrival=arrival, max_concurrency=max_concurrency,
        requests=requests if requests is not None or duration is not None else DEFAULT_REQUESTS,
        duration_s=duration, max_tokens=max_tokens, warmup=warmup, timeout_s=timeout,
        temperature=temperature, ignore_eos=ignore_eos, seed=seed, goodput=parse_goodput(goodput),
        tokenizer=tokenizer, api_key_env=api_key_env, engine=engine, gpu=gpu)
    settings.check()

    from gekro_ft.progress import level_progress

    with level_progress(err) as progress:
        doc = run_bench(settings, progress)
    if as_json:
        print_json(doc)
        return
    _print_table(doc)
    out.print(f"bench.json: {out_dir / 'bench.json'}   report: {out_dir / 'bench.html'}")
    if "mlflow" in doc:
        out.print(f"MLflow run {doc['mlflow']['run_id']} (experiment {doc['mlflow']['experiment']})")


def _print_table(doc: dict) -> None:
    """Two tables that fit 80 columns: throughput per level, then latency per level and metric."""
    from rich.table import Table

    rate_mode = doc["settings"]["mode"] == "rate"
    where = (lambda lv: f"{lv['rate']:g}/s") if rate_mode else (lambda lv: str(lv["concurrency"]))
    num = (lambda v: "-" if v is None else f"{v:,.2f}")
    head = "rate" if rate_mode else "concurrency"
    table = Table(head, "requests", "ok", "errors", "req/s", "out tok/s", "total tok/s", "goodput req/s",
                  title=f"{doc['settings']['model']} on {doc['engine']}")
    for lv in doc["levels"]:
        table.add_row(where(lv), str(lv["requests"]), str(lv["completed"]), str(lv["errors"]),
                      num(lv["request_throughput"]), num(lv["output_tokens_per_s"]),
                      num(lv["total_tokens_per_s"]), num(lv["goodput_rps"]))
    out.print(table)
    lat = Table(head, "ms", "mean", "p50", "p90", "p95", "p99", title="latency of completed requests")
    for lv in doc["levels"]:
        for i, name in enumerate(("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")):
            s = lv[name]
            lat.add_row(where(lv) if i == 0 else "", name.removesuffix("_ms").upper(),
                        *(num(s[k]) for k in ("mean", "p50", "p90", "p95", "p99")),
                        end_section=i == 3)
    out.print(lat)
    for lv in doc["levels"]:
        if lv["error_kinds"]:
            out.print(f"errors at {head} {where(lv)}: "
                      + ", ".join(f"{k} × {v}" for k, v in lv["error_kinds"].items()))
