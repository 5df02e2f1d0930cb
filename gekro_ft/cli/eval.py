"""``gekro-ft eval``: a candidate against a baseline on an eval suite, with a CI exit code."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out, print_json
from gekro_ft.progress import count_progress


@click.command("eval")
@click.argument("suite")
@click.option("--candidate", "-c", required=True,
              help="Adapter DIR, models:/NAME@ALIAS, base:MODEL, openai:MODEL, URL or recording:FILE.")
@click.option("--candidate-model", help="Model name when --candidate is a URL, or the name the --served-at server "
              "answers to for the candidate.")
@click.option("--served-at", metavar="URL", help="Judge the candidate adapter as the server at URL answers for it "
              "(the artifact production runs, on its engine); answers are live, never recorded.")
@click.option("--baseline", "-b", help="The same forms as --candidate; omit to judge the candidate alone.")
@click.option("--baseline-model", help="Model name when --baseline is a URL.")
@click.option("--candidate-key-env", metavar="VAR", help="Environment variable holding the API key for "
              "--candidate alone, whatever its host (never over plain http:// to another machine). Default: "
              "the suite's endpoint.api_key_env, where a provider's variable such as OPENAI_API_KEY goes "
              "only to that provider.")
@click.option("--baseline-key-env", metavar="VAR", help="The same for --baseline.")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Report directory (default work/eval/SUITE).")
@click.option("--recordings", type=click.Path(file_okay=False, path_type=Path),
              help="Where endpoint answers are recorded (default recordings/SUITE beside the suite; "
                   "for a suite shipped in an installed package, in the gekro-ft cache).")
@click.option("--record-only", is_flag=True, help="Ask the endpoints again and overwrite their recordings.")
@click.option("--promote", is_flag=True, help="Move the registry alias `champion` to the candidate if the gate passes.")
@click.option("--bench", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A bench.json whose measured throughput prices the self-hosted side.")
@click.option("--prices", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Your own price table (replaces the shipped entries of the same name).")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N examples (overrides the suite's limit).")
@click.option("--gate", help="A gate expression that replaces the suite's, e.g. 'candidate.field_f1 >= 0.9'.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict and aggregates as JSON.")
def eval_(suite: str, candidate: str, candidate_model: str | None, baseline: str | None,
          baseline_model: str | None, candidate_key_env: str | None, baseline_key_env: str | None,
          out_dir: Path | None, recordings: Path | None, record_only: bool, promote: bool,
          bench: Path | None, prices: Path | None, limit: int | None, gate: str | None,
          as_json: bool, served_at: str | None) -> None:
    """Score a candidate and a baseline on SUITE (a file or a name in eval/) and decide the gate.

    Exit code: 0 the gate passed, 1 it failed, 2 it could not be decided (an unreachable
    baseline, failed requests, an empty eval set, a broken suite). Endpoint answers are
    recorded, so a rerun of the same eval makes no request.

    \b
    Example:
      gekro-ft eval ticket-extraction --candidate work/demo/train/adapter \\
          --baseline openai:gpt-4.1-mini --promote
      gekro-ft eval ticket-extraction --candidate work/demo/train/adapter \\
          --served-at http://127.0.0.1:8000/v1 --candidate-model tickets
    """
    from gekro_ft.eval.runner import run_eval
    from gekro_ft.eval.suite import load_suite, with_gate

    s = load_suite(suite)
    if gate:
        s = with_gate(s, gate)
    if limit:
        s = s.model_copy(update={"limit": limit})
    outcome = run_eval(s, candidate, baseline, out_dir=out_dir or Path("work/eval") / s.name,
                       candidate_model=candidate_model, baseline_model=baseline_model,
                       recordings_dir=recordings, record_only=record_only, promote=promote,
                       bench=bench, prices=prices, progress=count_progress,
                       candidate_key_env=candidate_key_env, baseline_key_env=baseline_key_env,
                       served_at=served_at)
    r = outcome.report
    if as_json:
        print_json({"verdict": outcome.verdict, "reason": r["gate"]["reason"],
                    "aggregates": {k: v["aggregates"] for k, v in r["sides"].items()},
                    "intervals": {k: v.get("intervals") for k, v in r["sides"].items()}, "delta": r.get("delta"),
                    "notes": r["gate"].get("notes", []),
                    "promotion": r.get("promotion"), "report": str(outcome.paths["json"])})
    else:
        from rich.table import Table

        from gekro_ft.intervals import interval_text

        paired = r.get("delta") is not None
        table = Table("metric", *r["sides"], *(["candidate − baseline (95% CI)"] if paired else []),
                      title=f"eval {s.name}: {r['suite']['examples']} examples")
        names = sorted({k for side in r["sides"].values() for k in side["aggregates"]})
        for n in names:
            d = (r.get("delta") or {}).get(n)
            table.add_row(n, *[_cell(side["aggregates"].get(n)) for side in r["sides"].values()],
                          *([interval_text(d, "+.4f") if d else "—"] if paired else []))
        out.print(table)
        for note in r["gate"].get("notes") or []:
            err.print(f"[yellow]note:[/] {note}")
        for role, side in r["sides"].items():
            if side["errors"]:
                err.print(f"[red]{role}: {side['errors']} failed requests[/] ({side['error_kinds']})")
            if side["provider"]["kind"] == "endpoint":
                err.print(f"{role}: {side['requests_sent']} requests sent, {side['from_recording']} from the recording")
        color = {"pass": "green", "fail": "red", "undecided": "yellow"}[outcome.verdict]
        out.print(f"[bold {color}]{outcome.verdict.upper()}[/]" + (f": {r['gate']['reason']}" if r["gate"]["reason"] else ""))
        promo = r.get("promotion")
        if promo:
            out.print(f"champion: {promo['name']} v{promo['version']} "
                      + ("(promoted)" if promo.get("changed") else f"(not moved: {promo.get('reason', 'already champion')})"))
        out.print(f"report: {outcome.paths['html']}")
    raise SystemExit(outcome.exit_code)


def _cell(v) -> str:
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
