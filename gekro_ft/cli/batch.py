"""``gekro-ft batch``: a corpus answered by an adapter (resumable), and what it would cost."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out, print_json


@click.group()
def batch() -> None:
    """Run a corpus through an adapter, resumably, and price it against every API."""


def _settings(model, input_, output, url, served_model, api_key_env, engine, input_kind, schema, suite,
              concurrency, max_tokens, report_dir=None):
    from gekro_ft.batch.run import BatchSettings

    return BatchSettings(model=model, input=input_, output=output, url=url, served_model=served_model,
                         api_key_env=api_key_env, engine=engine, input_kind=input_kind, schema=schema,
                         suite=suite, concurrency=concurrency, max_tokens=max_tokens, report_dir=report_dir)


shared = [
    click.option("--url", help="A running OpenAI-compatible endpoint (http://HOST:PORT/v1) instead of MODEL."),
    click.option("--model", "served_model", help="The model to ask at --url."),
    click.option("--api-key-env", metavar="VAR", help="Environment variable holding the key for --url."),
    click.option("--engine", type=click.Choice(["auto", "endpoint", "vllm"]), default="auto", show_default=True,
                 help="vllm: vLLM's offline engine, in vLLM's environment (found as `serve` finds it); "
                      "endpoint: the CPU engine started for MODEL (or --url); auto: vllm when a GPU build "
                      "of vLLM is found, else endpoint."),
    click.option("--input-kind", type=click.Choice(["openai-batch", "prompts", "dataset"]),
                 help="What INPUT holds (default: told from its first row)."),
    click.option("--from", "schema", type=click.Choice(["openai", "alpaca", "sharegpt"]),
                 help="The dataset schema, for --input-kind dataset (default: detected)."),
    click.option("--suite", help="An eval suite whose JSON checks (json_valid, json_schema) judge each answer."),
    click.option("--concurrency", "-c", type=click.IntRange(1, 1024), default=8, show_default=True,
                 help="Requests in flight at once (and the CPU engine's batch size)."),
    click.option("--max-tokens", type=click.IntRange(1), default=256, show_default=True,
                 help="Output tokens per answer, where a row does not say."),
]


def _with_shared(f):
    for option in reversed(shared):
        f = option(f)
    return f


def _positional(args: tuple[str, ...], url: str | None, names: tuple[str, ...]) -> list:
    """MODEL, then ``names``; MODEL is left out when --url is given."""
    want = len(names) + (0 if url else 1)
    if len(args) != want:
        usage = " ".join(names) if url else "MODEL " + " ".join(names)
        raise click.UsageError(f"expected {usage}" + (" (with --url, MODEL is --model)" if url else "")
                               + f", got {len(args)} argument(s)")
    return ([None] if url else []) + list(args)


@batch.command("run")
@click.argument("args", metavar="[MODEL] INPUT OUTPUT", nargs=-1, required=True)
@_with_shared
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where batch.json/.md/.html go (default OUTPUT's name + .report).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def run(args, url, served_model, api_key_env, engine, input_kind, schema, suite, concurrency,
        max_tokens, report_dir, as_json) -> None:
    """Answer every row of INPUT with MODEL into OUTPUT (JSONL), resuming what OUTPUT holds.

    MODEL is an adapter directory or models:/NAME@ALIAS (or give --url and --model).
    INPUT is any dataset the data stage reads (each row's prompt is the conversation up to
    its last assistant turn), plain prompts, or an OpenAI Batch API input file, whose
    answers come back in OpenAI's batch output format. Rows that fail go to
    OUTPUT.errors.jsonl with their line; Ctrl-C stops cleanly (exit 130), and the same
    command resumes.

    \b
    Example:
      gekro-ft batch run work/demo/train/adapter \\
          eval/ticket-extraction/openai.jsonl work/batch/tickets.jsonl --suite ticket-extraction
    """
    from gekro_ft.batch.run import run_batch
    from gekro_ft.cli.errors import interruptible
    from gekro_ft.progress import rows_progress

    model, input_, output = _positional(args, url, ("INPUT", "OUTPUT"))
    s = _settings(model, Path(input_), Path(output), url, served_model, api_key_env, engine, input_kind, schema, suite,
                  concurrency, max_tokens, report_dir)
    with interruptible():
        doc = run_batch(s, progress=rows_progress)
    if as_json:
        print_json(doc)
        return
    r, j = doc["this_run"], doc["job"]
    if r["skipped_done"]:
        err.print(f"skipped {r['skipped_done']} rows answered before")
    out.print(f"{r['answered']} answered, {r['failed']} failed this run in {r['wall_s']:.1f} s "
              f"({r['output_tokens_per_s'] or 0:.1f} output tokens/s); "
              f"{j['answered']} of {doc['input']['rows']} rows answered in all")
    if r["failed"]:
        err.print(f"[red]{r['failed']} rows failed[/] ({r['errors_by_code']}): {doc['output']['errors']}")
    if doc.get("checks"):
        c = doc["checks"]
        out.print("checks: " + ", ".join(f"{k} {v:.1%}" for k, v in c["share"].items()))
    out.print(f"answers: {doc['output']['path']}")
    out.print(f"report: {s.reports() / 'batch.html'}")


@batch.command("estimate")
@click.argument("args", metavar="[MODEL] INPUT", nargs=-1, required=True)
@_with_shared
@click.option("--sample", type=click.IntRange(1), default=50, show_default=True, help="Rows to run for the measurement.")
@click.option("--total", type=click.IntRange(1), help="Rows in the whole corpus (default: INPUT's rows).")
@click.option("--machine", default="m7i-large-cpu", show_default=True,
              help="The local machine's entry in the price table's gpu section (its $/h).")
@click.option("--tier", default="tier-1", show_default=True, help="The API usage tier whose rate limits apply.")
@click.option("--api", "apis", multiple=True, help="Price only these APIs (repeatable; default: every one in the table).")
@click.option("--ask-apis/--no-ask-apis", default=True, show_default=True,
              help="Send the sample to each priced API whose key is set (OPENAI_API_KEY, ANTHROPIC_API_KEY; "
                   "the price table's `ask`) and price it on the tokens it reports; answers are recorded, so "
                   "a rerun replays them without a request.")
@click.option("--recordings", type=click.Path(file_okay=False, path_type=Path),
              help="Where the APIs' answers are recorded (default OUT/recordings).")
@click.option("--prices", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Your own price table (rate limits included; replaces shipped entries of the same name).")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("work/batch/estimate"), show_default=True, help="Report directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(args, url, served_model, api_key_env, engine, input_kind, schema, suite, concurrency,
             max_tokens, sample, total, machine, tier, apis, ask_apis, recordings, prices, out_dir,
             as_json) -> None:
    """Run a sample of INPUT through MODEL and extrapolate to the corpus: cost and wall clock
    here and on each API in the price table (standard and batch tier). Each API whose key is
    set gets the same sample (recorded, replayed on a rerun) and is priced on the tokens it
    reported; the others on the local sample's tokens, and the table says which.

    \b
    Example:
      gekro-ft batch estimate work/demo/train/adapter eval/ticket-extraction/openai.jsonl \\
          --sample 20 --total 1000000
    """
    from gekro_ft.batch.estimate import estimate_batch
    from gekro_ft.batch.report import duration
    from gekro_ft.cli.errors import interruptible
    from gekro_ft.progress import rows_progress

    model, input_ = _positional(args, url, ("INPUT",))
    s = _settings(model, Path(input_), out_dir / "sample.jsonl", url, served_model, api_key_env, engine, input_kind,
                  schema, suite, concurrency, max_tokens)
    with interruptible():
        doc = estimate_batch(s, sample, total, out_dir=out_dir, prices=prices, machine=machine, tier=tier,
                             apis=list(apis) or None, ask_apis=ask_apis, recordings=recordings,
                             progress=rows_progress)
    if as_json:
        print_json(doc)
        return
    from rich.table import Table

    from gekro_ft.batch.report import tokens_from

    table = Table("provider", "tier", "output tok/row", "tokens", "cost", "× local", "wall clock",
                  title=f"{doc['rows']:,} rows")
    for p in doc["providers"]:
        table.add_row(p["provider"], p["tier"], f"{p['output_tokens_per_row']:.1f}", tokens_from(p),
                      f"${p['cost_usd']:,.2f}", f"{p['x_local']:,.1f}×", duration(p["wall_s"]))
    out.print(table)
    for name, a in (doc.get("api_samples") or {}).items():
        if a["tokens_from"] == "measured":
            err.print(f"{name}: {a['answered']} of {a['rows']} sample rows answered, {a['from_recording']} "
                      f"replayed from {a['recording']}, {a['requests_sent']} requests sent")
    out.print(f"report: {Path(out_dir) / 'estimate.html'}")
