"""``gekro-ft data``: detect, validate, convert, split, stats, render."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, file_progress, out, print_json
from gekro_ft.data.schemas import NAMES

SCHEMA = click.Choice(NAMES)
FILE = click.Path(exists=False, dir_okay=True, path_type=Path)

model_option = click.option(
    "--model", "-m", envvar="GEKRO_FT_MODEL", metavar="MODEL",
    help="Tokenizer and chat template to check against: smollm2-135m-instruct (bundled), "
         "a local directory, or a Hugging Face id in the local cache. [env GEKRO_FT_MODEL]")
template_option = click.option(
    "--chat-template", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A Jinja chat template file that replaces the model's own.")
from_option = click.option("--from", "-f", "from_schema", type=SCHEMA,
                           help="Schema of the input (default: detected).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


def _tokenizer(model: str | None, chat_template: Path | None):
    if model is None:
        return None
    from gekro_ft.data.render import require_template
    from gekro_ft.models import load_tokenizer

    with err.status(f"loading the tokenizer of {model}"):
        tok = load_tokenizer(model, chat_template.read_text() if chat_template else None)
    require_template(tok, model)
    return tok


@click.group()
def data() -> None:
    """Read, check, convert and split datasets (OpenAI chat, Alpaca, ShareGPT).

    Inputs are JSONL (optionally .gz), JSON arrays, Parquet, or a `datasets`
    save_to_disk directory; outputs are JSONL.
    """


@data.command()
@json_option
def codes(as_json: bool) -> None:
    """List every finding code, its severity and what it means."""
    from gekro_ft.data.findings import CODES

    if as_json:
        print_json([{"code": c.code, "severity": c.severity.value, "summary": c.summary} for c in CODES.values()])
        return
    from rich.table import Table

    table = Table("code", "severity", "what it means")
    for c in CODES.values():
        table.add_row(c.code, c.severity.value, c.summary)
    out.print(table)


@data.command()
@click.argument("file", type=FILE)
@json_option
def detect(file: Path, as_json: bool) -> None:
    """Print the schema of FILE and how sure that is.

    \b
    Example:
      gekro-ft data detect datasets/ticket-extraction/sharegpt.jsonl
    """
    from gekro_ft.data.detect import detect_schema

    det = detect_schema(file)
    if as_json:
        print_json(det.to_dict())
    elif det.schema is None:
        out.print(f"unknown (none of {det.sampled} sampled rows matches {', '.join(NAMES)})")
    else:
        out.print(f"{det.schema} ({det.confidence:.0%} of {det.sampled} sampled rows)")
    if det.schema is None:
        raise SystemExit(1)


@data.command()
@click.argument("file", type=FILE)
@from_option
@model_option
@click.option("--max-seq-len", type=click.IntRange(min=1), envvar="GEKRO_FT_MAX_SEQ_LEN",
              help="With --model: flag rows whose truncation to this length cuts an answer.")
@template_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0),
              help="Findings to list before the summary (--json lists all).")
@json_option
def validate(file: Path, from_schema: str | None, model: str | None, max_seq_len: int | None,
             chat_template: Path | None, limit: int, as_json: bool) -> None:
    """Check every row of FILE; exit 0 clean, 1 with errors, 2 if FILE cannot be read.

    \b
    Example:
      gekro-ft data validate train.jsonl --model smollm2-135m-instruct --max-seq-len 512
    """
    from gekro_ft.data.validate import validate_file

    tokenizer = _tokenizer(model, chat_template)
    with file_progress(file, "validating") as on_bytes:
        report = validate_file(file, from_schema, tokenizer=tokenizer, model=model,
                               max_seq_len=max_seq_len, on_bytes=on_bytes)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_validation(file, report, limit)
    raise SystemExit(1 if report.errors else 0)


def _print_validation(file: Path, report, limit: int) -> None:
    from rich.table import Table

    from gekro_ft.data.findings import CODES

    det = report.detection
    how = f"detected, {det.confidence:.0%} of {det.sampled} sampled rows" if det else "given"
    err.print(f"{file}: schema {report.schema or 'unknown'} ({how})")
    for f in report.findings[:limit]:
        where = f"{file}:{f.line}" if f.line is not None else f"{file}[{f.index}]" if f.index is not None else str(file)
        color = "red" if f.severity.value == "error" else "yellow"
        out.print(f"{where}: [{color}]{f.severity.value}[/] {f.code}: {f.message}")
    if len(report.findings) > limit:
        out.print(f"... and {len(report.findings) - limit} more findings (--json lists them all)")
    if report.findings:
        table = Table("code", "severity", "count", "what it means", title="Findings by code")
        for code, n in report.by_code().items():
            table.add_row(code, CODES[code].severity.value, str(n), CODES[code].summary)
        out.print(table)
    verdict = "[red]FAIL[/]" if report.errors else "[green]OK[/]"
    out.print(f"{verdict}: {report.rows} rows, {report.usable_rows} usable; "
              f"{report.errors} errors, {report.warnings} warnings")


@data.command()
@click.argument("source", type=FILE)
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "-t", "to_schema", type=SCHEMA, required=True, help="Schema to write.")
@from_option
@json_option
def convert(source: Path, target: Path, to_schema: str, from_schema: str | None, as_json: bool) -> None:
    """Convert SOURCE into JSONL of another schema at TARGET.

    Rows the target cannot express are refused with a finding; TARGET is written
    whole or not at all, never over SOURCE (a symlink is written through to its
    file). Exit 0 when every row was written, 1 when some were refused.

    \b
    Example:
      gekro-ft data convert chats.parquet chats.sharegpt.jsonl --to sharegpt
    """
    from gekro_ft.cli.errors import interruptible
    from gekro_ft.data.convert import convert_file

    with interruptible(), file_progress(source, "converting") as on_bytes:
        result = convert_file(source, target, to_schema, from_schema, on_bytes=on_bytes)
    if as_json:
        print_json(result.to_dict())
    else:
        for f in result.findings[:50]:
            where = f"{source}:{f.line}" if f.line is not None else f"{source}[{f.index}]"
            out.print(f"{where}: {f.severity.value} {f.code}: {f.message}")
        dropped = ", ".join(f"{k} in {v} rows" for k, v in result.dropped.items())
        out.print(f"{result.from_schema} -> {result.to_schema}: wrote {result.written} of "
                  f"{result.rows} rows to {target}; refused {result.refused}"
                  + (f"; dropped {dropped}" if dropped else ""))
    raise SystemExit(1 if result.refused else 0)


@data.command()
@click.argument("source", type=FILE)
@click.option("--eval-frac", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.1, show_default=True, help="Share of distinct examples for eval.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out-dir", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where train.jsonl, eval.jsonl and split.json go.")
@from_option
@json_option
def split(source: Path, eval_frac: float, seed: int, out_dir: Path, from_schema: str | None,
          as_json: bool) -> None:
    """Split SOURCE into train and eval: deterministic, de-duplicated, no leakage.

    \b
    Example:
      gekro-ft data split datasets/ticket-extraction/openai.jsonl --eval-frac 0.1 --seed 0 -o work/data
    """
    from gekro_ft.cli.errors import interruptible
    from gekro_ft.data.split import split_file

    with interruptible(), file_progress(source, "splitting") as on_bytes:
        result = split_file(source, out_dir, eval_frac, seed, from_schema, on_bytes=on_bytes)
    if as_json:
        print_json(result.to_dict())
    else:
        out.print(f"{result.rows} rows -> train {result.train} ({result.train_path}), "
                  f"eval {result.eval} ({result.eval_path}); removed {result.duplicates} duplicates, "
                  f"skipped {result.unreadable} unreadable")


@data.command()
@click.argument("file", type=FILE)
@from_option
@model_option
@template_option
@json_option
def stats(file: Path, from_schema: str | None, model: str | None, chat_template: Path | None,
          as_json: bool) -> None:
    """Rows, turns, roles and lengths of FILE (tokens too, with --model).

    \b
    Example:
      gekro-ft data stats datasets/ticket-extraction/openai.jsonl -m smollm2-135m-instruct
    """
    from rich.table import Table

    from gekro_ft.data.stats import dataset_stats

    tokenizer = _tokenizer(model, chat_template)
    with file_progress(file, "reading") as on_bytes:
        s = dataset_stats(file, from_schema, tokenizer=tokenizer, model=model, on_bytes=on_bytes)
    d = s.to_dict()
    if as_json:
        print_json(d)
        return
    out.print(f"{file}: {s.schema}, {s.rows} rows ({s.readable_rows} readable)")
    out.print("roles: " + ", ".join(f"{r} {n}" for r, n in s.roles.most_common()))
    table = Table("per", "min", "median", "p95", "max", "mean")
    for key in ("turns_per_row", "chars_per_row", "chars_per_answer", "tokens_per_row",
                "trained_tokens_per_row"):
        if d[key]:
            table.add_row(key.replace("_", " "), *(f"{d[key][k]:g}" for k in
                                                  ("min", "median", "p95", "max", "mean")))
    out.print(table)


@data.command()
@click.argument("file", type=FILE)
@click.option("--model", "-m", envvar="GEKRO_FT_MODEL", required=True, metavar="MODEL",
              help="Tokenizer and chat template (see `data validate --help`). [env GEKRO_FT_MODEL]")
@click.option("--row", "-r", "row_index", type=click.IntRange(min=0), default=0, show_default=True,
              help="0-based row to render.")
@from_option
@template_option
@json_option
def render(file: Path, model: str, row_index: int, from_schema: str | None,
           chat_template: Path | None, as_json: bool) -> None:
    """Show a row exactly as the model's chat template renders it, trained tokens marked.

    On a terminal the trained tokens are highlighted; elsewhere they are wrapped in
    « and ».

    \b
    Example:
      gekro-ft data render datasets/ticket-extraction/openai.jsonl -m smollm2-135m-instruct --row 3
    """
    from gekro_ft.data.render import render_row

    tokenizer = _tokenizer(model, chat_template)
    view = render_row(file, tokenizer, row_index, from_schema)
    if as_json:
        print_json(view.to_dict(tokenizer))
        return
    from rich.text import Text

    text = Text()
    marks = not out.is_terminal
    for piece, trained in view.segments():
        if trained and marks:
            text.append(f"«{piece}»")
        else:
            text.append(piece, style="bold black on green" if trained else "dim")
    out.print(text, end="")
    r = view.rendered
    err.print(f"\n{len(r.input_ids)} tokens, {r.n_loss_tokens} trained "
              f"({r.n_loss_tokens / max(len(r.input_ids), 1):.0%})")
    for code, message in r.problems:
        err.print(f"[yellow]{code}[/]: {message}")
