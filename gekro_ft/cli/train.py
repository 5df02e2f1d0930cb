"""``gekro-ft train``: one QLoRA run from a recipe."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import click

from gekro_ft.cli.output import err, out
from gekro_ft.errors import Interrupted
from gekro_ft.cli.recipe import set_option


@click.command()
@click.argument("recipe")
@set_option
@click.option("--output-dir", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Where checkpoints and the adapter go (default work/train/RECIPE).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the output dir.")
@click.option("--dry-run", is_flag=True, help="Run preflight (data, memory, backend) and stop.")
@click.option("--processes", "-p", type=click.IntRange(min=1),
              help="Train in N processes under accelerate launch (DDP), one per GPU; the same as "
                   "--set train.processes=N.")
def train(recipe: str, overrides: tuple[str, ...], output_dir: Path | None, resume: bool, dry_run: bool,
          processes: int | None) -> None:
    """Train a LoRA adapter from RECIPE (a name from `gekro-ft recipe list` or a YAML file).

    \b
    Example:
      gekro-ft train smollm2-135m-cpu --set train.max_steps=20
      gekro-ft train smollm2-135m-cpu --processes 2      # DDP: gloo on CPU, NCCL on GPUs
    """
    from gekro_ft.train import launch
    from gekro_ft.train.run import preflight, train as run_training

    overrides = (*overrides, *([f"train.processes={processes}"] if processes else []))
    main = launch.is_main_process()
    with err.status("preflight") if main else nullcontext() as spinner:
        plan, tokenizer, data = preflight(recipe, list(overrides), output_dir,
                                          status=lambda s: spinner and spinner.update(f"preflight: {s}"))
    if main:
        for line in plan.summary_lines():
            err.print(line, markup=False)
    if dry_run:
        out.print(f"preflight OK for {plan.recipe_name}: would write {plan.output_dir / 'adapter'}")
        return
    t = plan.recipe.train
    if t.processes > 1 and not launch.inside_launch():
        args = ["train", recipe, "--output-dir", str(plan.output_dir), *(a for o in overrides for a in ("--set", o))]
        code = launch.run_launched(t.processes, args + (["--resume"] if resume else []),
                                   Path(t.launcher_config) if t.launcher_config else None)
        click.get_current_context().exit(code)

    from gekro_ft.progress import training_progress

    if not main:  # one of several processes: the main one reports, a stop included
        try:
            run_training(plan, tokenizer, data, resume=resume)
        except Interrupted:
            click.get_current_context().exit(Interrupted.exit_code)
        return
    with training_progress(err) as on_progress:
        result = run_training(plan, tokenizer, data, resume=resume, on_progress=on_progress)
    m = result.metrics
    eval_part = f", eval loss {m['eval_loss']:.4f}" if "eval_loss" in m else ""
    out.print(f"adapter: {result.adapter_dir}")
    out.print(f"train loss {m['train_loss']:.4f}{eval_part}; MLflow run {result.run_id}"
              + (f"; registered {plan.recipe.tracking.registered_model} v{result.registered_version}"
                 if result.registered_version else ""))
    from gekro_ft.tracking import is_server, shown_uri

    out.print(f"next: open {shown_uri()}   (browse the run)" if is_server()
              else f"next: mlflow ui --backend-store-uri {shown_uri()}   (browse the run)")
