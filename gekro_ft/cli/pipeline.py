"""``gekro-ft pipeline`` and ``gekro-ft demo``: every stage from one command."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out

_SET = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                    help="Override a pipeline setting, e.g. bench.requests=8 or 'train.set=[train.max_steps=10]'.")


@click.command()
@click.argument("config")
@click.option("--work", "-w", type=click.Path(file_okay=False, path_type=Path),
              help="Where every stage writes (default work/pipelines/NAME).")
@click.option("--resume", is_flag=True, help="Continue a stopped run in --work at the first stage that did not finish.")
@_SET
def pipeline(config: str, work: Path | None, resume: bool, overrides: tuple[str, ...]) -> None:
    """Data → train → eval against the baseline → promote → serve + bench → cost, as CONFIG says.

    CONFIG is a pipeline file or a name in pipelines/. Each stage is an MLflow child run
    under one parent run. Exit code: 0 done and the gate passed; 1 the gate failed
    (nothing served); 2 a stage could not run; 130 stopped by a signal (--resume continues,
    training from its checkpoint).

    \b
    Example:
      gekro-ft pipeline pipelines/tickets-qwen2.5-7b-gpu.yaml
      gekro-ft pipeline pipelines/tickets-qwen2.5-7b-gpu.yaml --resume
    """
    from gekro_ft.pipeline.config import load_pipeline
    from gekro_ft.pipeline.run import run_pipeline

    p = load_pipeline(config, list(overrides))
    outcome = run_pipeline(p, work or Path("work/pipelines") / p.name, resume=resume, say=_say)
    _conclude(outcome)


@click.command()
@click.option("--work", "-w", type=click.Path(file_okay=False, path_type=Path), default=Path("work/demo"),
              show_default=True, help="Where every stage writes; running again continues from what is there.")
@_SET
def demo(work: Path, overrides: tuple[str, ...]) -> None:
    """The whole chain on the embedded default, on a CPU: pipelines/demo.yaml.

    The example dataset, SmolLM2-135M-Instruct (bundled) trained with QLoRA on the CPU,
    evaluated against the untuned base model as a stand-in baseline, promoted, served on
    the CPU engine, benched and priced. About 10 minutes on 2 CPU cores; MLflow store in
    WORK/mlflow.db unless MLFLOW_TRACKING_URI is set.

    \b
    Example:
      gekro-ft demo
      gekro-ft demo --set 'train.set=[train.max_steps=10]' --set eval.limit=20 --set bench.requests=8
    """
    from gekro_ft.pipeline.demo import run_demo

    _conclude(run_demo(work, list(overrides), say=_say))


def _say(message: str) -> None:
    err.print(f"[bold]{message}[/]")


def _conclude(outcome) -> None:
    e, c = outcome.summary["eval"], outcome.summary["cost"]
    cand, base = e.get("candidate") or {}, e.get("baseline") or {}
    if cand and base:
        label = "the stand-in baseline" if e.get("baseline_is_stand_in") else "the baseline"
        for k in ("field_f1", "json_valid", "exact_match", "success_rate"):
            if k in cand and k in base:
                out.print(f"{k}: {base[k]:.3f} ({label}) → {cand[k]:.3f} (the adapter)")
    out.print(f"gate: {(e.get('verdict') or 'not reached').upper()}")
    if c.get("full_load_usd_per_1m_output_tokens") is not None:
        out.print(f"cost: ${c['full_load_usd_per_1m_output_tokens']:,.2f} per 1M output tokens at full load "
                  f"on {c['gpu']} ({c['tokens_per_s']:,.1f} output tokens/s measured)")
    out.print(f"summary: {outcome.summary_path}")
    raise SystemExit(outcome.exit_code)
