"""``gekro-ft route``: the hybrid router (local adapter first, frontier on doubt) and its calibration."""

from __future__ import annotations

from pathlib import Path

import click

from gekro_ft.cli.output import err, out, print_json


@click.group()
def route() -> None:
    """Route requests between the local adapter and a frontier API, and calibrate the policy.

    \b
    Examples:
      gekro-ft route serve tickets
      gekro-ft route calibrate ticket-extraction --local http://127.0.0.1:8000/v1 \\
          --local-model tickets --frontier openai:gpt-4.1-mini --out work/route
    """


@route.command("serve")
@click.argument("profile")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a profile key (repeatable).")
@click.option("--prices", type=click.Path(dir_okay=False), help="A price table adding to the shipped one.")
def serve(profile: str, overrides: tuple[str, ...], prices: str | None) -> None:
    """Run the router of PROFILE (a file or a name in serve/route/) until Ctrl-C or SIGTERM.

    Clients send OpenAI chat requests; each answer says who answered in the
    X-Gekro-Upstream header and the body's gekro_route field. Escalations are appended
    to the profile's escalation_log (OpenAI chat JSONL, ready for `gekro-ft data validate`).

    \b
    Example:
      gekro-ft route serve tickets --set port=8100
    """
    from gekro_ft.route.profile import load_route_profile
    from gekro_ft.route.run import run_router

    loaded = load_route_profile(profile, overrides)
    raise SystemExit(run_router(loaded, prices, on_ready=lambda url: err.print(f"routing on {url}")))
