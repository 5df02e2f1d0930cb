"""``gekro-ft init``: a starter recipe, eval suite and pipeline for your own task."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import out


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite starter files that are already there.")
def init(directory: Path, force: bool) -> None:
    """Copy a starter set out of the package into DIRECTORY: a recipe, an eval suite with its
    data, a pipeline file and the example dataset, in the project's layout. Each runs as it
    is; swap in your own data and edit them.

    \b
    Example:
      gekro-ft init my-task && cd my-task
      gekro-ft train smollm2-135m-cpu --set train.max_steps=20
      gekro-ft pipeline pipelines/demo.yaml
    """
    from gekro_ft.starter import init_project

    starter = init_project(directory, force=force)
    for path in starter.files:
        out.print(str(path))
    out.print(f"\nnext, in {starter.root}:\n"
              f"  gekro-ft recipe validate {starter.recipe.relative_to(starter.root)}\n"
              f"  gekro-ft train {starter.recipe.relative_to(starter.root)}\n"
              f"  gekro-ft pipeline {starter.pipeline.relative_to(starter.root)}")
