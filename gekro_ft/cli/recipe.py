"""``gekro-ft recipe``: list, show and validate training recipes."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import out, print_json

set_option = click.option("--set", "-s", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a recipe value, e.g. train.max_steps=20 (repeatable).")


@click.group()
def recipe() -> None:
    """Training recipes: YAML with sections model, lora, data, train, tracking."""


@recipe.command("list")
def list_() -> None:
    """List the recipes found in ./recipes, $GEKRO_FT_RECIPES and the shipped ones."""
    from gekro_ft.recipe import list_recipes

    for path in list_recipes():
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        run = first.lstrip("# ").strip() if first.startswith("#") else ""
        out.print(f"{path.stem:32} {run}")


@recipe.command()
@click.argument("name")
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def show(name: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Print the resolved recipe NAME: every setting, defaults and overrides applied.

    \b
    Example:
      gekro-ft recipe show smollm2-135m-cpu --set train.max_steps=10
    """
    import yaml

    from gekro_ft.recipe import load_recipe

    resolved = load_recipe(name, list(overrides)).resolved()
    if as_json:
        print_json(resolved)
    else:
        click.echo(yaml.safe_dump(resolved, sort_keys=False), nl=False)


@recipe.command()
@click.argument("file", type=click.Path(path_type=Path))
@set_option
def validate(file: Path, overrides: tuple[str, ...]) -> None:
    """Check a recipe file; every problem is listed, each naming its key and line.

    Exit code: 0 valid, 1 problems found, 2 no such file.

    \b
    Example:
      gekro-ft recipe validate recipes/smollm2-135m-cpu.yaml
    """
    from gekro_ft.errors import RecipeError
    from gekro_ft.recipe import load_recipe

    if not file.is_file():
        raise RecipeError(str(file), ["no such file"])
    try:
        r = load_recipe(str(file), list(overrides))
    except RecipeError as e:
        for problem, line in zip(e.problems, e.lines):
            out.print(f"{e.source}: {problem}" + (f" (line {line})" if line else ""))
        raise SystemExit(1) from None
    out.print(f"{file}: OK (recipe hash {r.digest()})")
