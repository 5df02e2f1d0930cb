"""Checks that need a tokenizer and chat template, on the real SmolLM2-135M-Instruct tokenizer."""

from __future__ import annotations

import pytest

from conftest import GOOD, oa, write_jsonl
from gekro_ft.data.conversation import Conversation, Turn
from gekro_ft.data.render import length_problems, render
from gekro_ft.data.validate import validate_file

LONG = oa(("user", "Tell me about the sea. " * 20), ("assistant", "The sea is large and deep. " * 10))


def codes(report) -> set[str]:
    return {f.code for f in report.findings}


def test_loss_mask_covers_exactly_the_answer_and_its_end_of_turn(tokenizer):
    conv = Conversation(system="Be brief.", turns=[Turn("user", "What is 2+2?"), Turn("assistant", "4, of course."),
                                                  Turn("user", "And 3+3?"), Turn("assistant", "6.")])
    r = render(tokenizer, conv)
    trained = tokenizer.decode([t for t, loss in zip(r.input_ids, r.loss) if loss])
    assert trained == "4, of course.<|im_end|>\n6.<|im_end|>\n"
    assert r.text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert r.problems == []


def test_weight_zero_turns_carry_no_loss(tokenizer):
    conv = Conversation(turns=[Turn("user", "a"), Turn("assistant", "skip me", weight=0),
                               Turn("user", "b"), Turn("assistant", "learn me")])
    r = render(tokenizer, conv)
    assert tokenizer.decode([t for t, loss in zip(r.input_ids, r.loss) if loss]) == "learn me<|im_end|>\n"


def test_truncated_answer(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "x.jsonl", [LONG])
    n_tokens = len(render(tokenizer, _conv(path)).input_ids)
    short = validate_file(path, "openai", tokenizer=tokenizer, max_seq_len=n_tokens - 20)
    (f,) = [f for f in short.findings if f.code == "truncated-answer"]
    assert f.line == 1 and f"renders to {n_tokens} tokens" in f.message
    roomy = validate_file(path, "openai", tokenizer=tokenizer, max_seq_len=n_tokens)
    assert "truncated-answer" not in codes(roomy)


def test_truncation_that_cuts_everything_says_so(tokenizer):
    r = render(tokenizer, _conv_of(LONG))
    ((code, message),) = length_problems(r, max_seq_len=10)
    assert code == "truncated-answer" and message.endswith("leaving nothing to learn")


def test_no_loss_tokens(tmp_path, tokenizer):
    bad = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0}]}
    assert "no-loss-tokens" in codes(validate_file(write_jsonl(tmp_path / "b.jsonl", [bad]), tokenizer=tokenizer))
    assert "no-loss-tokens" not in codes(validate_file(write_jsonl(tmp_path / "g.jsonl", [GOOD]), tokenizer=tokenizer))


@pytest.fixture
def template_tokenizer(tokenizer):
    """The real tokenizer with its chat template swapped per test, restored after."""
    original = tokenizer.chat_template
    yield tokenizer
    tokenizer.chat_template = original


def test_template_error(tmp_path, template_tokenizer):
    # Like Gemma's template: no system role.
    template_tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
    with_system = oa(("system", "x"), ("user", "a"), ("assistant", "b"))
    report = validate_file(write_jsonl(tmp_path / "b.jsonl", [with_system]), tokenizer=template_tokenizer)
    (f,) = [f for f in report.findings if f.code == "template-error"]
    assert "System role not supported" in f.message
    report = validate_file(write_jsonl(tmp_path / "g.jsonl", [GOOD]), tokenizer=template_tokenizer)
    assert "template-error" not in codes(report)


def test_template_mismatch_when_the_template_rewrites_answers(tmp_path, template_tokenizer):
    template_tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] | trim | upper }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
    report = validate_file(write_jsonl(tmp_path / "b.jsonl", [GOOD]), tokenizer=template_tokenizer)
    assert "template-mismatch" not in codes(report)  # "4" survives upper()
    row = oa(("user", "Name?"), ("assistant", "ada"))
    report = validate_file(write_jsonl(tmp_path / "m.jsonl", [row]), tokenizer=template_tokenizer)
    (f,) = [f for f in report.findings if f.code == "template-mismatch"]
    assert "changes the answer of turn 1" in f.message


def _conv_of(row):
    from gekro_ft.data.schemas import openai

    conv, problems = openai.read(row)
    assert not problems
    return conv


def _conv(path):
    import json

    return _conv_of(json.loads(path.read_text().splitlines()[0]))
