"""The one reader of config files (gekro_ft/config.py read_yaml) and its guards: a YAML alias
bomb, a recursive alias, deep nesting, a huge or non-UTF-8 file are refused with the kind's
error naming the file, for every kind (recipe, suite, profile, pipeline, price table).

The alias bomb runs in a child process under a memory limit and a timeout, so a regression
fails the test instead of exhausting the machine."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from gekro_ft.config import MAX_CONFIG_VALUES, read_yaml
from gekro_ft.errors import RecipeError

MEMORY_LIMIT = 1 << 30  # address space: the bomb once took 5.5 GB
TIMEOUT_S = 120  # a refusal takes a second or two; the bomb once ran past 300 s


def bomb(levels: int = 9, fan: int = 9) -> str:
    """'Billion laughs': each level a list of ``fan`` aliases of the one before, fan**levels values
    in well under 1 KB."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * fan) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_limited(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                              cwd=cwd, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {TIMEOUT_S} s: the alias bomb is being expanded")


def test_the_bomb_is_small_and_large():
    assert len(bomb().encode()) < 1024 and 9 ** 9 > 1000 * MAX_CONFIG_VALUES


@pytest.mark.parametrize("command, code", [("show", 2), ("validate", 1)])  # validate: 1 = problems found
def test_recipe_show_and_validate_refuse_an_alias_bomb_in_bounded_memory_and_time(tmp_path, command, code):
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb())
    r = run_limited("-m", "gekro_ft", "recipe", command, str(path), cwd=tmp_path)
    assert r.returncode == code, r.stderr[-2000:]
    said = (r.stdout + r.stderr).strip()
    assert len(said.splitlines()) == 1 and "Traceback" not in said and "MemoryError" not in said
    assert str(path) in said and f"expand it past {MAX_CONFIG_VALUES:,} values" in said
    if command == "show":
        assert said.startswith(f"Error (recipe): {path}: ")


def test_every_config_kind_refuses_an_alias_bomb_with_its_own_error(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb())
    code = f"""
from gekro_ft.errors import GekroError
from gekro_ft.recipe import load_recipe
from gekro_ft.eval.suite import load_suite
from gekro_ft.serve.profile import load_profile
from gekro_ft.pipeline.config import load_pipeline
from gekro_ft.cost.prices import load_prices
for load in (load_recipe, load_suite, load_profile, load_pipeline, load_prices):
    try:
        load({str(path)!r})
        print("accepted")
    except GekroError as e:
        print(type(e).__name__, "|", e)
"""
    r = run_limited("-c", code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["RecipeError", "SuiteError", "ProfileError",
                                                        "PipelineConfigError", "PriceError"]
    for line in lines:
        assert str(path) in line and f"expand it past {MAX_CONFIG_VALUES:,} values" in line


def _read(tmp_path: Path, text: str | bytes):
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return read_yaml(path, lambda problem: RecipeError(str(path), [problem]))


def test_anchors_and_merge_keys_within_the_bound_still_work(tmp_path):
    file = _read(tmp_path, "base: &b {r: 8, alpha: 16}\nlora: {<<: *b, alpha: 32}\nmany: [" +
                 ", ".join(["*b"] * 1000) + "]\n")
    assert file.doc["lora"] == {"r": 8, "alpha": 32} and len(file.doc["many"]) == 1000
    assert file.lines[("lora", "alpha")] == 2
    assert _read(tmp_path, "").doc == {} and _read(tmp_path, "# only a comment\n").doc == {}


@pytest.mark.parametrize("text, problem", [
    ("a: &a [1, *a]\n", "holds an alias to itself"),
    ("a: &a {b: *a}\n", "holds an alias to itself"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    (b"a: \xff\xfe\n", "not UTF-8 text"),
    ("# " + "x" * (1 << 20) + "\n", "larger than 1024 KiB"),
    (bomb(levels=3, fan=47), f"expand it past {MAX_CONFIG_VALUES:,} values"),  # 47**3 > 100,000
])
def test_hostile_files_are_refused_naming_the_file(tmp_path, text, problem):
    with pytest.raises(RecipeError) as e:
        _read(tmp_path, text)
    assert problem in str(e.value) and str(e.value).startswith(str(tmp_path / "c.yaml"))


def test_a_missing_price_table_is_named(tmp_path):
    from gekro_ft.cost.prices import load_prices
    from gekro_ft.errors import PriceError

    with pytest.raises(PriceError, match="missing.yaml does not exist"):
        load_prices(tmp_path / "missing.yaml")
