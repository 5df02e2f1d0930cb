"""Splitting: deterministic, de-duplicated, no example on both sides."""

from __future__ import annotations

import json

from conftest import DATASETS, oa, write_jsonl
from gekro_ft.data.conversation import normalized_text, prompt_text
from gekro_ft.data.rows import read_rows
from gekro_ft.data.split import split_file


def texts(path, fn=normalized_text) -> list[str]:
    return [fn(r.conv) for r in read_rows(path, None)]


def test_split_is_deterministic_and_seeded(tmp_path):
    src = DATASETS / "ticket-extraction" / "openai.jsonl"
    a = split_file(src, tmp_path / "a", 0.1, seed=1)
    b = split_file(src, tmp_path / "b", 0.1, seed=1)
    c = split_file(src, tmp_path / "c", 0.1, seed=2)
    for name in ("train.jsonl", "eval.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "eval.jsonl").read_bytes() != (tmp_path / "c" / "eval.jsonl").read_bytes()
    assert (a.rows, a.train + a.eval, a.eval) == (300, 300, 30)
    assert json.loads((tmp_path / "a" / "split.json").read_text())["eval"] == 30
    assert c.eval == 30


def test_no_example_lands_on_both_sides(tmp_path):
    rows = [oa(("user", f"question {i % 40}"), ("assistant", f"answer {i}")) for i in range(100)]
    rows += [oa(("user", "question  1\n"), ("assistant", "answer 1"))] * 3  # whitespace duplicates
    result = split_file(write_jsonl(tmp_path / "src.jsonl", rows), tmp_path / "out", 0.25, seed=0)
    assert result.duplicates == 3
    train, evals = tmp_path / "out" / "train.jsonl", tmp_path / "out" / "eval.jsonl"
    assert not set(texts(train)) & set(texts(evals))
    # the same question with another answer is the same prompt: it stays on one side
    assert not set(texts(train, prompt_text)) & set(texts(evals, prompt_text))
    assert result.train + result.eval == 100
    assert len(set(texts(evals, prompt_text))) == 10  # 25% of 40 distinct prompts


def test_unreadable_rows_are_skipped_and_counted(tmp_path):
    rows = [oa(("user", f"q{i}"), ("assistant", "a")) for i in range(10)] + ["{oops", oa(("user", 1))]
    result = split_file(write_jsonl(tmp_path / "src.jsonl", rows), tmp_path / "out", 0.2)
    assert (result.unreadable, result.train, result.eval) == (2, 8, 2)


def test_rows_are_written_as_they_were(tmp_path):
    rows = [{"instruction": f"i{i}", "input": "", "output": "o", "id": i} for i in range(10)]
    split_file(write_jsonl(tmp_path / "src.jsonl", rows), tmp_path / "out", 0.5)
    written = [json.loads(line) for p in ("train", "eval") for line in (tmp_path / "out" / f"{p}.jsonl").read_text().splitlines()]
    assert sorted(written, key=lambda r: r["id"]) == rows
