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
    skipped = ", ".join(f"{k} {v}" for k, v in plan.skipped.items()) or "none"
    err.print(f"backend: [bold]{plan.backend}[/] ({plan.backend_reason}); device {plan.device}, {plan.dtype}")
    err.print(f"data: {plan.train_rows} train rows ({plan.train_tokens} tokens), {plan.eval_rows} eval rows; "
              f"skipped: {skipped}")
    err.print(f"memory: {plan.memory.describe()}")
    if dry_run:
        out.print(f"preflight OK for {plan.recipe_name}: would write {plan.output_dir / 'adapter'}")
        return

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("step {task.completed}/{task.total}"), BarColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("train", total=None, info="")

        def on_progress(p: dict) -> None:
            info = []
            if "loss" in p:
                info.append(f"loss {p['loss']:.3f}")
            if "eval_loss" in p:
                info.append(f"eval {p['eval_loss']:.3f}")
            if "tokens_per_s" in p:
                info.append(f"{p['tokens_per_s']:.0f} tok/s")
            fields = {"info": "  ".join(info)} if info else {}
            bar.update(task, completed=p["step"], total=p.get("max_steps") or None, **fields)

        result = run_training(plan, tokenizer, data, resume=resume, on_progress=on_progress)
    m = result.metrics
    eval_part = f", eval loss {m['eval_loss']:.4f}" if "eval_loss" in m else ""
    out.print(f"adapter: {result.adapter_dir}")
    out.print(f"train loss {m['train_loss']:.4f}{eval_part}; MLflow run {result.run_id}"
              + (f"; registered {plan.recipe.tracking.registered_model} v{result.registered_version}"
                 if result.registered_version else ""))
    from gekro_ft.tracking import tracking_uri

    out.print(f"next: mlflow ui --backend-store-uri {tracking_uri()}   (browse the run)")
