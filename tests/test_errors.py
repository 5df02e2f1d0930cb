"""The one error table: every exception type says its own kind and exits with its own code."""

from __future__ import annotations

import inspect

import click
import pytest
from click.testing import CliRunner

from gekro_ft import errors
from gekro_ft.cli.errors import ERROR_TABLE, GekroGroup


def _instance(t: type[errors.GekroError]) -> errors.GekroError:
    """An instance of ``t`` built from its own signature, whatever its parameters are named."""
    args = {"source": "some.yaml", "problems": ["a.b: unknown key"], "path": "in.jsonl", "message": "went wrong"}
    params = [p for p in inspect.signature(t.__init__).parameters.values()
              if p.name != "self" and p.default is inspect.Parameter.empty]
    return t(*[args[p.name] for p in params])


def test_every_error_type_lives_in_errors_and_is_in_the_table():
    own = {t for t in vars(errors).values() if isinstance(t, type) and issubclass(t, errors.GekroError)}
    assert own == {t for t, _, _ in ERROR_TABLE}
    for t, code, kind in ERROR_TABLE:
        assert (code, kind) == (t.exit_code, t.kind)
        # most specific first: no type is shadowed by a base listed before it
        earlier = [u for u, _, _ in ERROR_TABLE[:ERROR_TABLE.index((t, code, kind))]]
        assert not any(issubclass(t, u) for u in earlier), t


def test_each_kind_is_its_own_word():
    """A subclass says what it is, not its base's word (SuiteError once said "recipe")."""
    for t, _, kind in ERROR_TABLE:
        base = t.__mro__[1]
        if base is not errors.Interrupted and base is not Exception:
            assert kind != base.kind, t


@pytest.mark.parametrize("t", [t for t, _, _ in ERROR_TABLE], ids=lambda t: t.__name__)
def test_the_cli_prints_the_kind_and_exits_with_the_code(t):
    @click.group(cls=GekroGroup)
    def main():
        pass

    @main.command()
    def boom():
        raise _instance(t)

    result = CliRunner().invoke(main, ["boom"])
    assert result.exit_code == t.exit_code
    assert result.output.startswith(f"Error ({t.kind}): ")
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_config_errors_show_the_line_of_each_problem():
    e = errors.RecipeError("r.yaml", ["lora.r: too small", "data: required"], lines=[3, None])
    assert str(e) == "r.yaml: lora.r: too small (line 3); data: required"
    assert e.problems == ["lora.r: too small", "data: required"]


def test_a_missing_suite_says_it_is_a_suite(cli):
    result = cli("eval", "nonexistent-suite", "--candidate", "base:smollm2-135m-instruct")
    assert result.exit_code == 2
    assert result.output.startswith("Error (eval suite): nonexistent-suite: no eval suite of that name (known: ")


def test_ctrl_c_exits_130_with_one_line():
    """Click alone turns KeyboardInterrupt into "Aborted!" and exit 1; 130 says "stopped by a signal"."""
    @click.group(cls=GekroGroup)
    def main():
        pass

    @main.command()
    def work():
        raise KeyboardInterrupt

    result = CliRunner().invoke(main, ["work"])
    assert result.exit_code == 130
    assert result.output == "Error (interrupted): stopped by SIGINT\n"
