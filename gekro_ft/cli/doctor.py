"""``gekro-ft doctor``: the chat template and stop token from training to serving."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out, print_json


@click.command()
@click.argument("adapter", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--merged", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A merged export of ADAPTER (gekro-ft export --merged) to check too.")
@click.option("--gguf", type=click.Path(exists=True, path_type=Path),
              help="A GGUF export (a .gguf file or a directory holding one) to check too.")
@click.option("--url", help="A running OpenAI-compatible server to ask one short question.")
@click.option("--model", help="With --url: the model name to ask for (default: the base model's name).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(adapter: Path, merged: Path | None, gguf: Path | None, url: str | None, model: str | None,
           as_json: bool) -> None:
    """Compare the chat template and stop token ADAPTER was trained with against its directory,
    its exports and a server; exit 0 when all agree, 1 naming each difference.

    \b
    Example:
      gekro-ft doctor work/train/smollm2-135m-cpu/adapter --merged work/merged --url http://127.0.0.1:8000
    """
    from gekro_ft.doctor import doctor as run_doctor

    report = run_doctor(adapter, merged=merged, gguf=gguf, url=url, model=model)
    if as_json:
        print_json(report.to_dict())
    else:
        for note in report.notes:
            err.print(f"note: {note}")
        for d in report.differences:
            out.print(f"[red]{d.where}[/]: {d.what}: {d.detail}", soft_wrap=True)
        n = len(report.differences)
        verdict = "[green]OK[/]" if report.ok else f"[red]{n} difference{'' if n == 1 else 's'}[/]"
        out.print(f"{verdict}: checked {', '.join(report.checked)} against the template and eos token "
                  f"{report.trained.eos_token!r} of training", soft_wrap=True)
    raise SystemExit(0 if report.ok else 1)
