"""``gekro-ft promote`` and ``gekro-ft models``: the registry's versions and the champion alias."""

from __future__ import annotations

import click

from gekro_ft.cli.output import out, print_json


@click.command()
@click.argument("model_version", required=False)
@click.option("--alias", default="champion", show_default=True)
@click.option("--rollback", "rollback_name", metavar="NAME",
              help="Give the alias back to the version that held it before.")
def promote(model_version: str | None, alias: str, rollback_name: str | None) -> None:
    """Point ALIAS at MODEL_VERSION (NAME/VERSION or models:/NAME/VERSION), or roll it back.

    The registry records who promoted what and what it replaced, so --rollback knows
    the previous champion.

    \b
    Examples:
      gekro-ft promote ticket-extraction-smollm2/3
      gekro-ft promote --rollback ticket-extraction-smollm2
    """
    from gekro_ft import registry

    if rollback_name:
        if model_version:
            raise click.UsageError("give either MODEL_VERSION or --rollback NAME, not both")
        change = registry.rollback(rollback_name, alias)
    else:
        if not model_version:
            raise click.UsageError("give MODEL_VERSION (NAME/VERSION) or --rollback NAME")
        uri = model_version if model_version.startswith("models:/") else f"models:/{model_version}"
        try:
            ref = registry.parse_model_uri(uri)
        except registry.RegistryError:
            ref = None
        if ref is None or ref.version is None:  # an alias is what promote moves, not what it takes
            raise click.BadParameter(f"{model_version!r} is not NAME/VERSION", param_hint="MODEL_VERSION")
        change = registry.promote(ref.name, ref.version, alias, reason="gekro-ft promote")
    if change["changed"]:
        was = f" (was version {change['previous']})" if change["previous"] else ""
        out.print(f"{change['name']}@{alias} -> version {change['version']}{was}")
    else:
        out.print(f"{change['name']}@{alias} is already version {change['version']}")


@click.group()
def models() -> None:
    """The model registry: registered adapters, their versions, aliases and eval verdicts."""


@models.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
def list_(name: str | None, as_json: bool) -> None:
    """Versions of every registered model (or of NAME), with aliases and the eval behind them.

    \b
    Example:
      gekro-ft models list ticket-extraction-smollm2
    """
    from gekro_ft import registry

    rows = registry.list_versions(name)
    if as_json:
        print_json([r.__dict__ for r in rows])
        return
    if not rows:
        out.print("no registered models yet (train a recipe with tracking.registered_model set)")
        return
    from rich.table import Table

    table = Table("model", "version", "aliases", "created", "eval verdict", "promoted by", "run")
    for r in rows:
        table.add_row(r.name, r.version, ", ".join(r.aliases), r.created, r.verdict or "—",
                      r.promoted_by or "—", (r.run_id or "")[:12])
    out.print(table)
