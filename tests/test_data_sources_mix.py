"""Several training files in one recipe: validated, mixed by seed, split by prompt across files,
reported per file; a one-file recipe trains on what it trained on before."""

from __future__ import annotations

import pytest

from conftest import oa, write_jsonl
from gekro_ft.errors import RecipeError
from gekro_ft.recipe import load_recipe
from gekro_ft.train.dataset import IGNORE, file_digest, prepare_data


def curated(n=40):
    return [oa(("system", "Answer briefly."), ("user", f"Question Q{i}?"), ("assistant", f"Answer {i}."))
            for i in range(n)]


def escalations(n=30):
    """ShareGPT rows; Q0..Q9 are also in the curated file, with other answers."""
    return [{"conversations": [{"from": "system", "value": "Answer briefly."},
                               {"from": "human", "value": f"Question Q{i}?"},
                               {"from": "gpt", "value": f"Escalated answer {i}."}],
             "router": {"confidence": 0.2}} for i in range(n)]


@pytest.fixture
def files(tmp_path):
    return write_jsonl(tmp_path / "curated.jsonl", curated()), write_jsonl(tmp_path / "esc.jsonl", escalations())


def recipe_with(tmp_path, sources: str, *overrides):
    path = tmp_path / "mix.yaml"
    path.write_text(f"data:\n  eval_frac: 0.2\n  sources:\n{sources}")
    return load_recipe(path, ["model.max_seq_len=128", *overrides])


SOURCES = ("    - file: curated.jsonl\n      weight: 0.5\n"
           "    - file: esc.jsonl\n      schema: sharegpt\n      max_rows: 10\n      responses_only: false\n")


def questions(tokenizer, rows) -> list[str]:
    return [tokenizer.decode(r["input_ids"]).split("Question ")[1].split("?")[0] for r in rows]


def test_sources_are_mixed_by_seed_split_by_prompt_and_reported(tmp_path, files, tokenizer):
    recipe = recipe_with(tmp_path, SOURCES)
    assert [s.file for s in recipe.data.sources] == [str(f) for f in files]  # relative to the recipe
    data = prepare_data(recipe, tokenizer)
    again = prepare_data(recipe, tokenizer)
    assert data.train == again.train and data.eval == again.eval
    other = prepare_data(recipe_with(tmp_path, SOURCES, "train.seed=7"), tokenizer)
    assert other.train != data.train

    # no question on both sides, though two files ask Q0..Q9 with different answers
    assert not set(questions(tokenizer, data.train)) & set(questions(tokenizer, data.eval))
    cur, esc = data.sources
    assert (cur.rows, esc.rows) == (40, 30) and (cur.schema, esc.schema) == ("openai", "sharegpt")
    assert cur.sha256 == file_digest(files[0]) and esc.sha256 == file_digest(files[1])
    assert data.dataset_hash == file_digest(*files)
    # curated: half of its train side; escalations: capped at 10
    assert cur.train_rows == round(0.5 * (cur.rows - cur.eval_rows)) and esc.train_rows == 10
    assert cur.train_rows + esc.train_rows == len(data.train)
    assert cur.train_tokens + esc.train_tokens == data.train_tokens
    assert cur.eval_rows + esc.eval_rows == len(data.eval)
    # each source's own loss mask: the escalations train on their prompts too
    escalated = [r for r in data.train if "Escalated" in tokenizer.decode(r["input_ids"])]
    assert len(escalated) == 10 and all(IGNORE not in r["labels"] for r in escalated)
    assert all(IGNORE in r["labels"] for r in data.train if r not in escalated)


def test_a_weight_above_one_repeats_every_row(tmp_path, files, tokenizer):
    data = prepare_data(recipe_with(tmp_path, "    - file: curated.jsonl\n      weight: 2.0\n"), tokenizer)
    (cur,) = data.sources
    assert cur.train_rows == 2 * (cur.rows - cur.eval_rows)
    assert sorted(questions(tokenizer, data.train)) == sorted(2 * list(set(questions(tokenizer, data.train))))


def test_one_file_as_train_or_as_one_source_trains_on_the_same(tmp_path, files, tokenizer):
    one = load_recipe("smollm2-135m-cpu", [f"data.train={files[0]}", "model.max_seq_len=128"])
    as_source = recipe_with(tmp_path, "    - file: curated.jsonl\n", "data.eval_frac=0.1", "model.max_seq_len=128")
    a, b = prepare_data(one, tokenizer), prepare_data(as_source, tokenizer)
    assert (a.train, a.eval, a.dataset_hash) == (b.train, b.eval, b.dataset_hash)
    assert a.dataset_hash == file_digest(files[0]) and a.sources[0].train_rows == len(a.train)


@pytest.mark.parametrize("data,says", [
    ("  train: a.jsonl\n  sources:\n    - file: b.jsonl\n", "set data.train (one file) or data.sources"),
    ("  eval_frac: 0.1\n", "set data.train (one file) or data.sources"),
    ("  sources:\n    - file: b.jsonl\n      weight: 2\n      max_rows: 5\n", "set weight or max_rows, not both"),
    ("  sources:\n    - file: b.jsonl\n      wieght: 2\n", "wieght"),
    ("  sources: []\n", "sources"),
])
def test_a_wrong_sources_section_is_named(tmp_path, data, says):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n" + data)
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert says in str(e.value)
