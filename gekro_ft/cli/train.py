"""``gekro-ft train``: one QLoRA run from a recipe."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out
from gekro_ft.cli.recipe import set_option


@click.command()
@click.argument("recipe")
@set_option
@click.option("--output-dir", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Where checkpoints and the adapter go (default work/train/RECIPE).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the output dir.")
@click.option("--dry-run", is_flag=True, help="Run preflight (data, memory, backend) and stop.")
def train(recipe: str, overrides: tuple[str, ...], output_dir: Path | None, resume: bool, dry_run: bool) -> None:
    """Train a LoRA adapter from RECIPE (a name from `gekro-ft recipe list` or a YAML file).

    \b
    Example:
      gekro-ft train smollm2-135m-cpu --set train.max_steps=20
    """
    from gekro_ft.train.run import preflight, train as run_training

    with err.status("preflight") as spinner:
        plan, tokenizer, data = preflight(recipe, list(overrides), output_dir,
                                          status=lambda s: spinner.update(f"preflight: {s}"))
    for line in plan.summary_lines():
        err.print(line, markup=False)
    if dry_run:
        out.print(f"preflight OK for {plan.recipe_name}: would write {plan.output_dir / 'adapter'}")
        return

    from gekro_ft.progress import training_progress

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
