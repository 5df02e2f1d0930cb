"""Recipes: every shipped one parses; bad ones name every bad key at once."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from gekro_ft.errors import RecipeError
from gekro_ft.recipe import load_recipe

SHIPPED = sorted((REPO / "recipes").rglob("*.yaml"))


def test_there_are_recipes_to_parse():
    assert {p.stem for p in SHIPPED} >= {"smollm2-135m-cpu"} and len(SHIPPED) >= 3


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_recipe_parses_and_starts_with_its_command(path):
    recipe = load_recipe(str(path))
    assert path.read_text().startswith(f"# gekro-ft train {path.stem}")
    assert (REPO / recipe.data.train).exists()
    assert len(recipe.digest()) == 16


def test_every_problem_is_reported_naming_its_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  nmae: x\n  max_seq_len: 4\ntrain:\n  batch_size: zero\nextra: 1\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(str(bad))
    assert e.value.problems == [
        "model.max_seq_len: Input should be greater than or equal to 16 (got 4)",
        "model.nmae: unknown key (did you mean 'name'?)",
        "data: required",
        "train.batch_size: Input should be a valid integer, unable to parse string as an integer (got 'zero')",
        "extra: unknown key",
    ]


def test_cross_field_checks_name_the_keys(tmp_path):
    with pytest.raises(RecipeError, match="set data.eval or data.eval_frac, not both"):
        load_recipe("smollm2-135m-cpu", ["data.eval=x.jsonl"])
    with pytest.raises(RecipeError, match="set train.epochs or train.max_steps"):
        load_recipe("smollm2-135m-cpu", ["train.epochs=null", "train.max_steps=null"])


def test_overrides_win_and_are_typed():
    r = load_recipe("smollm2-135m-cpu", ["train.max_steps=7", "lora.target_modules=[q_proj, v_proj]",
                                         "tracking.registered_model=mine"])
    assert r.train.max_steps == 7 and r.lora.target_modules == ["q_proj", "v_proj"]
    assert r.tracking.registered_model == "mine"
    assert r.digest() != load_recipe("smollm2-135m-cpu").digest()
    assert r.flat()["train.max_steps"] == 7


def test_bad_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: [unclosed\n")
    with pytest.raises(RecipeError, match=r"not valid YAML at line 3"):
        load_recipe(str(bad))


def test_recipe_cli(cli, tmp_path):
    result = cli("recipe", "list")
    assert "smollm2-135m-cpu" in result.output and "gekro-ft train smollm2-135m-cpu" in result.output
    result = cli("recipe", "show", "smollm2-135m-cpu", "--set", "train.max_steps=3", "--json")
    assert json.loads(result.output)["train"]["max_steps"] == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {train: x.jsonl}\nlora: {r: 0, alpah: 3}\n")
    result = cli("recipe", "validate", bad)
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"{bad}: lora.r: Input should be greater than or equal to 1 (got 0) (line 2)",
                                          f"{bad}: lora.alpah: unknown key (did you mean 'alpha'?) (line 2)"]
    missing = cli("recipe", "validate", tmp_path / "missing.yaml")
    assert (missing.exit_code, missing.output.strip()) == (2, f"Error (recipe): {tmp_path / 'missing.yaml'}: no such file")
    result = cli("recipe", "show", "no-such-recipe")
    assert result.exit_code == 2 and result.output.startswith("Error (recipe): no-such-recipe: no recipe of that name")


# What MLflow's registry refuses, and '@' (models:/NAME@ALIAS would be ambiguous) and > 256 characters.
REFUSED_NAMES = ["team/tickets", "tickets:v2", "100%", "tickets@prod", "..hidden", ".", "..", " ", "a\\b",
                 "x" * 257]
TAKEN_NAMES = ["ticket-extraction-smollm2", "Tickets v2", "a.b_c-d", ".hidden", "x" * 256, "тикеты"]


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_a_registered_model_name_the_registry_refuses_is_named_at_load(name):
    with pytest.raises(RecipeError, match=r"tracking\.registered_model: ") as e:
        load_recipe("smollm2-135m-cpu", [f"tracking.registered_model='{name}'"])
    assert len(e.value.problems) == 1


def test_the_registered_model_rule_matches_mlflows():
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.file_store import _validate_model_name as file_store_check
    from mlflow.utils.validation import _validate_model_name as every_store_check

    from gekro_ft.recipe import registered_model_problem

    for name in REFUSED_NAMES + TAKEN_NAMES:
        try:
            every_store_check(name)
            file_store_check(name)
            mlflow_refuses = False
        except MlflowException:
            mlflow_refuses = True
        ours = registered_model_problem(name) is not None
        # beyond MLflow here: '@', the SQL stores' 256, and '\\' (its file store's separator on Windows)
        assert ours == (mlflow_refuses or "@" in name or len(name) > 256 or "\\" in name), name
    for name in TAKEN_NAMES:
        recipe = load_recipe("smollm2-135m-cpu", [f"tracking.registered_model='{name}'"])
        assert recipe.tracking.registered_model == name
